"""Two server replicas' background learning on one hive, for the tests of the per-worker lease."""

from __future__ import annotations

import time

from apiary import Hive
from apiary.hive.feedback_learning import FeedbackLearning, LearningConfig


def learn_in_two_replicas(hive: Hive, core_dir, config: LearningConfig, seconds: float = 240) -> list[dict]:
    """Start two FeedbackLearning loops (each with a Hive of its own) on `hive`, wait for a first outcome, give the
    other replica time to (wrongly) learn the same thing again, stop both; every outcome, in order."""
    results = []
    replicas = [FeedbackLearning(lambda: Hive(hive.path, core=str(core_dir)), config, results.append) for _ in range(2)]
    for replica in replicas:
        replica.start()
    deadline = time.time() + seconds
    while not results and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(2)
    for replica in replicas:
        replica.stop()
    return results
