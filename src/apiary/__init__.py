"""apiary: a continual-learning engine for language-model agents."""

from apiary.hive.hive import Hive, LearnResult
from apiary.jobs.base import Job, Task
from apiary.jobs.function import FunctionSource
from apiary.jobs.scoring import Scorer, scorer
from apiary.jobs.spec import load_job
from apiary.learners.grpo import GRPOConfig

__all__ = ["Hive", "LearnResult", "Job", "Task", "FunctionSource", "Scorer", "scorer", "load_job", "GRPOConfig"]
