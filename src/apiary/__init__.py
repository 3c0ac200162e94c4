"""apiary: a continual-learning engine for language-model agents.

The public names below load on first use (PEP 562), so that `import apiary.cli` and
`apiary --help` do not pull in torch and transformers: `from apiary import Hive` works as before.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# name -> module that defines it; read by __getattr__ on first use
_PUBLIC = {
    "Hive": "apiary.hive.hive", "LearnResult": "apiary.hive.hive", "LearnPlan": "apiary.hive.cluster",
    "WorkersFailed": "apiary.hive.cluster", "TasksFailed": "apiary.hive.cluster_tasks",
    "Job": "apiary.jobs.base", "Task": "apiary.jobs.base", "FunctionSource": "apiary.jobs.function",
    "Scorer": "apiary.jobs.scoring", "scorer": "apiary.jobs.scoring", "load_job": "apiary.jobs.spec",
    "GRPOConfig": "apiary.learners.grpo", "FeedbackConfig": "apiary.learners.common",
    "RewardsConfig": "apiary.learners.rewards", "CorrectionsConfig": "apiary.learners.corrections",
    "CritiquesConfig": "apiary.learners.critiques", "PreferencesConfig": "apiary.learners.preferences",
    "PracticeConfig": "apiary.learners.practice", "SelfDistillConfig": "apiary.learners.self_distill",
    "FeedbackError": "apiary.store.feedback", "ConsolidateConfig": "apiary.hive.consolidate",
    "ConsolidateResult": "apiary.hive.consolidate", "DistillConfig": "apiary.hive.distill", "GateConfig": "apiary.evals.gate",
}
__all__ = list(_PUBLIC)

if TYPE_CHECKING:  # for type checkers and editors: the same names, imported eagerly
    from apiary.evals.gate import GateConfig
    from apiary.hive.consolidate import ConsolidateConfig, ConsolidateResult
    from apiary.hive.distill import DistillConfig
    from apiary.hive.cluster import LearnPlan, WorkersFailed
    from apiary.hive.cluster_tasks import TasksFailed
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
    from apiary.learners.self_distill import SelfDistillConfig
    from apiary.store.feedback import FeedbackError


def __getattr__(name: str):
    """Import a public name's module when the name is first used."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'apiary' has no attribute {name!r}")
    return vars(importlib.import_module(_PUBLIC[name]))[name]
