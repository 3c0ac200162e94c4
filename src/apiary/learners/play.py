"""Playing multi-turn episodes in batches, keeping every token exactly as the model saw and wrote it.

`play` runs many episodes side by side: each round, every unfinished episode's whole conversation
so far is one row of a single batched `generate` call (the opening prompt common to all rows is
read once), each reply goes to that episode's environment, and the environment's answer is
appended as the next user turn. A transcript keeps the token ids of the whole conversation with
`model_mask` = 1 exactly on the tokens the worker wrote (each reply and its stop token); the
chat template's framing and the environment's messages are 0. The RL learner puts its loss on
those tokens only, and credits every one of the worker's turns with the episode's score.

The ids are built turn by turn (never re-tokenised from text), so training sees the very tokens
that were sampled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from apiary.jobs.base import Job, Task
from apiary.models.generate import SamplingParams, generate
from apiary.models.prompt_format import environment_turn_ids, prompt_ids

PREFILL_BUDGET = 2**25  # rows x length^2 per generate call: 32 rows of 1000 tokens, 8 of 2000


@dataclass
class Transcript:
    """One multi-turn episode: the conversation, its tokens, and how it went."""

    task: Task
    messages: list[dict]  # the opening messages, then the worker's and the environment's turns in order
    prompt_ids: list[int]  # the opening prompt's tokens
    ids: list[int] = field(default_factory=list)  # every token after the opening prompt
    model_mask: list[int] = field(default_factory=list)  # 1 on the tokens the worker wrote
    turns: int = 0  # the worker's turns
    invalid: int = 0  # of which invalid moves / malformed tool calls
    score: float = 0.0
    success: bool = False
    done: bool = False  # the environment ended it (else it was cut off at the job's max_turns)
    final_message: str = ""  # what the environment said after the worker's last reply (how it ended)

    @property
    def completion(self) -> str:
        """The worker's last reply."""
        return next((m["content"] for m in reversed(self.messages) if m["role"] == "assistant"), "")

    @property
    def context(self) -> list[dict]:
        """Every message before the worker's last reply (an Episode's `messages`)."""
        last = max((i for i, m in enumerate(self.messages) if m["role"] == "assistant"), default=len(self.messages))
        return self.messages[:last]

    def info(self) -> dict:
        return {"turns": self.turns, "invalid": self.invalid, "success": self.success, "cut_off": not self.done,
                "final_message": self.final_message}


def play(model, tokenizer, job: Job, tasks: list[Task], samples: int, params: SamplingParams, stop_ids: list[int],
         generator: torch.Generator | None = None) -> list[Transcript]:
    """`samples` episodes of each task (task-major), each until its environment ends it or `job.max_turns`.
    The caller chooses the model's mode (eval, adapter merged)."""
    envs, transcripts = [], []
    for task in tasks:
        for _ in range(samples):
            env = job.environment(task)
            opening = job.opening(env.start())
            envs.append(env)
            transcripts.append(Transcript(task, opening, prompt_ids(tokenizer, opening)))
    for _ in range(job.max_turns):
        live = [i for i, t in enumerate(transcripts) if not t.done]
        if not live:
            break
        for rows in _chunks(live, [len(transcripts[i].prompt_ids) + len(transcripts[i].ids) for i in live]):
            replies = generate(model, [transcripts[i].prompt_ids + transcripts[i].ids for i in rows], 1, params, stop_ids,
                               tokenizer.pad_token_id, generator)
            for i, reply_ids in zip(rows, replies):
                _advance(transcripts[i], envs[i], tokenizer, reply_ids, stop_ids)
    for t in transcripts:  # a cut-off episode's last environment turn was never read by the worker
        while t.model_mask and not t.model_mask[-1]:
            t.ids.pop(), t.model_mask.pop()
    return transcripts


def _chunks(rows: list[int], lengths: list[int]) -> list[list[int]]:
    """Rows in groups of at most PREFILL_BUDGET / (longest length)^2: prefilling a whole conversation
    holds attention weights that grow with the square of its length."""
    per_call = max(1, PREFILL_BUDGET // max(lengths) ** 2)
    return [rows[i:i + per_call] for i in range(0, len(rows), per_call)]


def _advance(transcript: Transcript, env, tokenizer, reply_ids: list[int], stop_ids: list[int]) -> None:
    reply = tokenizer.decode(reply_ids, skip_special_tokens=True)
    transcript.messages.append({"role": "assistant", "content": reply})
    transcript.ids += reply_ids
    transcript.model_mask += [1] * len(reply_ids)
    transcript.turns += 1
    turn = env.step(reply)
    transcript.invalid += int(turn.invalid)
    transcript.final_message, transcript.score = turn.message, turn.score  # a cut-off episode keeps its last score
    if turn.done:
        transcript.done, transcript.success = True, turn.success
        return
    transcript.messages.append({"role": "user", "content": turn.message})
    framing = environment_turn_ids(tokenizer, turn.message, reply_ids, stop_ids)
    transcript.ids += framing
    transcript.model_mask += [0] * len(framing)
