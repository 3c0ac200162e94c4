"""A JSONL file of {"prompt": ..., "answer": ...} records as a job source.

The held-out split is chosen by a stable hash of the prompt text, so it does not depend on the
order of the file, and records with the same prompt always land on the same side.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from apiary.jobs.base import Task, split_distinct


class JobFileError(ValueError):
    """A job or data file is malformed; the message names the file and line."""


def read_jsonl_tasks(path: Path) -> list[Task]:
    if not path.is_file():
        raise JobFileError(f"{path}: no such file")
    tasks = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise JobFileError(f"{path}:{number}: invalid JSON ({err.msg})") from err
        if not isinstance(record, dict):
            raise JobFileError(f"{path}:{number}: expected an object with 'prompt' and 'answer'")
        prompt, answer = record.get("prompt", record.get("question")), record.get("answer")
        if not isinstance(prompt, str) or not prompt.strip() or answer is None:
            raise JobFileError(f"{path}:{number}: needs a non-empty string 'prompt' and an 'answer'")
        meta = {k: v for k, v in record.items() if k not in ("prompt", "question", "answer")}
        tasks.append(Task(question=prompt, answer=str(answer), metadata=meta))
    if len(tasks) < 2:
        raise JobFileError(f"{path}: needs at least 2 records (a train and a held-out one), found {len(tasks)}")
    return tasks


@dataclass
class JsonlSource:
    path: Path
    heldout_size: int = 50

    def __post_init__(self) -> None:
        tasks = read_jsonl_tasks(self.path)
        distinct = len({t.question for t in tasks})
        if distinct < 2:  # records with one prompt all land on one side: nothing would be left to train on
            raise JobFileError(f"{self.path}: all {len(tasks)} records share one prompt; a job needs at least 2 "
                               "different prompts (one to learn from, one held out to measure it)")
        cap = max(1, min(self.heldout_size, distinct // 2))
        self._train, self._heldout = split_distinct(tasks, cap, salt=self.path.name)

    def heldout(self) -> list[Task]:
        return list(self._heldout)

    def train(self, start: int, count: int) -> list[Task]:
        return [self._train[(start + i) % len(self._train)] for i in range(count)]

    def describe(self) -> dict:
        return {"kind": "jsonl", "path": str(self.path), "heldout": len(self._heldout)}
