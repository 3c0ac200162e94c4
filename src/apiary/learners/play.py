"""Playing episodes in batches, keeping every token exactly as the model saw and wrote it.

The one rollout path: RL (learners.grpo), held-out evals (evals.heldout) and attempts all play
episodes here. A single-turn job's episode is one reply to the task's question, scored by the
job's scorer (jobs.base.OneReply); a game or tool task goes on until its environment ends it.

`play` runs many episodes side by side: each round, every unfinished episode is one row of a single
batched sampling call, each reply goes to that episode's environment, and the environment's answer
is appended as the next user turn. The first round reads the openings: rows that share one (a task's
group of samples) are read once and sampled several times, and the prefix common to all rows is read
once (models.prefix). Later rounds go on from the KV cache each row kept when its reply ended and
read only the new tokens (the reply's last token and the environment's turn), not the whole
conversation again (`reuse_cache=False` reads it all each round: the reference, same tokens). A transcript keeps the token ids of the whole conversation with
`model_mask` = 1 exactly on the tokens the worker wrote (each reply and its stop token); the
chat template's framing and the environment's messages are 0. The RL learner puts its loss on
those tokens only, and credits every one of the worker's turns with the episode's score.

The ids are built turn by turn (never re-tokenised from text), so training sees the very tokens
that were sampled, and each of the worker's tokens keeps the log-probability the sampler gave it
(`sampler_logprobs`), for a learner that checks how far its sampler is off its policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from apiary.jobs.base import Environment, Job, Task
from apiary.models.generate import Sample, SamplingParams, resume, sample
from apiary.models.prefix import RowCache
from apiary.models.prompt_format import environment_turn_ids, prompt_ids
from apiary.store.records import Episode

PREFILL_BUDGET = 2**25  # rows x length^2 per generate call: 32 rows of 1000 tokens, 8 of 2000


@dataclass
class Transcript:
    """One episode: the conversation, its tokens, and how it went."""

    task: Task
    messages: list[dict]  # the opening messages, then the worker's and the environment's turns in order
    prompt_ids: list[int]  # the opening prompt's tokens
    ids: list[int] = field(default_factory=list)  # every token after the opening prompt
    model_mask: list[int] = field(default_factory=list)  # 1 on the tokens the worker wrote
    sampler_logprobs: list[float] = field(default_factory=list)  # per token of `ids`: the sampler's log-prob (0 off the mask)
    turns: int = 0  # the worker's turns
    invalid: int = 0  # of which invalid moves / malformed tool calls
    score: float = 0.0
    success: bool = False
    done: bool = False  # the environment ended it (else it was cut off at the job's max_turns)
    final_message: str = ""  # what the environment said after the worker's last reply (how it ended)
    heldout_score: float = 0.0  # what a held-out eval counts (jobs.base.Turn.heldout_score)

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
         generator: torch.Generator | None = None, done: Callable[[list[int]], bool] | None = None,
         reuse_cache: bool = True) -> list[Transcript]:
    """`samples` episodes of each task (task-major), each until its environment ends it or `job.max_turns`.
    `done(reply ids so far)`, if given, ends a reply early. The caller chooses the model's mode (eval, adapter merged)."""
    envs, transcripts, openings = [], [], {}
    for task in tasks:
        for _ in range(samples):
            env: Environment = job.episode(task)
            first = env.start()
            if first not in openings:  # a task's group shares its opening: format and tokenise it once
                opening = job.opening(first)
                openings[first] = (opening, prompt_ids(tokenizer, opening))
            messages, ids = openings[first]
            envs.append(env)
            transcripts.append(Transcript(task, list(messages), ids))
    kept: dict[int, tuple[RowCache, int]] = {}  # a live episode's cache, and how many of its tokens it holds
    keep = reuse_cache and job.max_turns > 1
    for _ in range(job.max_turns):
        live = [i for i, t in enumerate(transcripts) if not t.done]
        if not live:
            break
        contexts = [transcripts[i].prompt_ids + transcripts[i].ids for i in live]
        copies = _copies(contexts) if not all(i in kept for i in live) else 1
        for start, end in _chunks(len(live), max(len(c) for c in contexts), copies):
            rows = live[start:end]
            if all(i in kept for i in rows):
                replies = resume(model, [kept[i][0] for i in rows], [c[kept[i][1]:] for i, c in zip(rows, contexts[start:end])],
                                 params, stop_ids, tokenizer.pad_token_id, generator, done)
            else:
                replies = sample(model, contexts[start:end:copies], copies, params, stop_ids, tokenizer.pad_token_id,
                                 generator, done, keep_cache=keep)
            for i, context, reply in zip(rows, contexts[start:end], replies):
                _advance(transcripts[i], envs[i], tokenizer, reply, stop_ids)
                kept.pop(i, None)
                if reply.cache is not None and not transcripts[i].done:
                    kept[i] = (reply.cache, len(context) + len(reply.tokens) - 1)
    for t in transcripts:  # a cut-off episode's last environment turn was never read by the worker
        while t.model_mask and not t.model_mask[-1]:
            t.ids.pop(), t.model_mask.pop(), t.sampler_logprobs.pop()
    return transcripts


def _copies(contexts: list[list[int]]) -> int:
    """k when the rows are consecutive runs of k identical contexts (each task's group at its opening), else 1:
    then each run is one prompt of `generate`, read once and sampled k times."""
    k = next((n for n in range(1, len(contexts)) if contexts[n] != contexts[0]), len(contexts))
    if len(contexts) % k or any(contexts[i] != contexts[i - i % k] for i in range(len(contexts))):
        return 1
    return k


def _chunks(rows: int, longest: int, copies: int) -> list[tuple[int, int]]:
    """(start, end) of groups of at most PREFILL_BUDGET / longest^2 rows (a multiple of `copies`): prefilling a
    whole conversation holds attention weights that grow with the square of its length."""
    per_call = max(copies, PREFILL_BUDGET // longest**2 // copies * copies)
    return [(i, min(i + per_call, rows)) for i in range(0, rows, per_call)]


def transcript_episode(job: Job, transcript: Transcript) -> Episode:
    """The store's record of a played episode: every turn is in `messages` + `completion` (the last reply).
    A single-turn job's episode is stored as it always was (prompt, reply, score, answer); an environment's
    episode also keeps how it went (`info`: turns, invalid moves, success, how it ended)."""
    if not job.multi_turn:
        return Episode(job=job.name, task_id=transcript.task.id, messages=transcript.context,
                       completion=transcript.completion, score=transcript.score, answer=transcript.task.answer)
    return Episode(job=job.name, task_id=transcript.task.id, messages=transcript.context, completion=transcript.completion,
                   score=transcript.score, answer=transcript.task.answer or None, info=transcript.info())


def _advance(transcript: Transcript, env, tokenizer, sampled: Sample, stop_ids: list[int]) -> None:
    reply_ids = sampled.tokens
    reply = tokenizer.decode(reply_ids, skip_special_tokens=True)
    transcript.messages.append({"role": "assistant", "content": reply})
    transcript.ids += reply_ids
    transcript.model_mask += [1] * len(reply_ids)
    transcript.sampler_logprobs += sampled.logprobs
    transcript.turns += 1
    turn = env.step(reply)
    transcript.invalid += int(turn.invalid)
    transcript.final_message, transcript.score = turn.message, turn.score  # a cut-off episode keeps its last score
    if turn.done:
        transcript.done, transcript.success = True, turn.success
        transcript.heldout_score = float(turn.success) if turn.heldout_score is None else turn.heldout_score
        return
    transcript.messages.append({"role": "user", "content": turn.message})
    framing = environment_turn_ids(tokenizer, turn.message, reply_ids, stop_ids)
    transcript.ids += framing
    transcript.model_mask += [0] * len(framing)
    transcript.sampler_logprobs += [0.0] * len(framing)
