"""apiary: a continual-learning engine for language-model agents."""

from apiary.evals.gate import GateConfig
from apiary.hive.consolidate import ConsolidateConfig, ConsolidateResult
from apiary.hive.distill import DistillConfig
from apiary.hive.hive import Hive, LearnResult
from apiary.jobs.base import Job, Task
from apiary.jobs.function import FunctionSource
from apiary.jobs.scoring import Scorer, scorer
from apiary.jobs.spec import load_job
from apiary.learners.common import FeedbackConfig
from apiary.learners.corrections import CorrectionsConfig
from apiary.learners.critiques import CritiquesConfig
from apiary.learners.grpo import GRPOConfig
from apiary.learners.practice import PracticeConfig
from apiary.learners.preferences import PreferencesConfig
from apiary.learners.rewards import RewardsConfig
from apiary.store.feedback import FeedbackError

__all__ = ["Hive", "LearnResult", "Job", "Task", "FunctionSource", "Scorer", "scorer", "load_job", "GRPOConfig", "FeedbackConfig",
           "RewardsConfig", "CorrectionsConfig", "CritiquesConfig", "PreferencesConfig", "PracticeConfig", "FeedbackError",
           "ConsolidateConfig", "ConsolidateResult", "DistillConfig", "GateConfig"]
