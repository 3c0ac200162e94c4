"""Learning speed against TRL: apiary's GRPO learn loop and TRL's `GRPOTrainer`, one run, one budget.

Both sides: the same core, the same job and scorer (TRL gets it as its reward function), a LoRA of
the same rank, alpha and target modules, the same learning rate, prompts per step, samples per prompt,
completion-length cap, temperature and number of optimizer steps, on the same CPU in the same process.
The advantage is reward minus the group mean on both sides (TRL: `scale_rewards="none"`, `beta=0`);
TRL's loss is otherwise its default. Held-out accuracy is measured every `eval_every` steps with
the same greedy evaluator; evaluation time is excluded from both clocks. apiary's clock includes its
store writes and checkpoints; TRL's includes building its trainer (attaching the LoRA).
"""

from __future__ import annotations

import copy
import math
import tempfile
import time
from dataclasses import dataclass

import torch

from apiary.evals.heldout import evaluate
from apiary.hive.training import Budget, learn
from apiary.hive.worker import worker_on
from apiary.jobs.base import Job
from apiary.learners.grpo import GRPOConfig
from apiary.models import adapters
from apiary.models.adapters import TARGETS, LoraSpec
from apiary.models.core import Core
from apiary.store.store import Store


@dataclass
class Race:
    steps: int = 18
    eval_every: int = 3
    target: float = 0.8


class Clock:
    """Wall time since start, less the time spent evaluating; a held-out curve against it."""

    def __init__(self, evaluate_fn):
        self.evaluate_fn, self.curve, self.eval_seconds = evaluate_fn, [], 0.0
        self.started = time.perf_counter()

    def learn_seconds(self) -> float:
        return time.perf_counter() - self.started - self.eval_seconds

    def point(self, step: int, model) -> None:
        seconds = self.learn_seconds()
        began = time.perf_counter()
        score = self.evaluate_fn(model)
        self.eval_seconds += time.perf_counter() - began
        self.curve.append({"step": step, "learn_seconds": seconds, "heldout": score})
        print(f"  step {step:3d}  learn {seconds:6.1f} s  held-out {score:.3f}", flush=True)


def _evaluator(core: Core, job: Job):
    return lambda model: evaluate(model, core.tokenizer, job, core.stop_token_ids).score


def apiary_side(core: Core, job: Job, config: GRPOConfig, race: Race) -> dict:
    """The real `learn` loop (store, checkpoints and all) for `race.steps` steps."""
    clock = Clock(_evaluator(core, job))
    clock.curve.append({"step": 0, "learn_seconds": 0.0, "heldout": clock.evaluate_fn(core.model)})
    clock.eval_seconds = 0.0
    clock.started = time.perf_counter()

    def on_step(step, stats, model):
        if step % race.eval_every == 0 or step == race.steps:
            clock.point(step, model)

    with tempfile.TemporaryDirectory() as hive:
        store = Store(hive)
        model, run = learn(store, worker_on(store, "race", job, core), Budget(steps=race.steps), config, on_step=on_step,
                           show_progress=False)
        wall = clock.learn_seconds()
        adapters.detach(model)
    return {"curve": clock.curve, "wall_seconds": wall, "steps": run.steps,
            "generate_tokens_per_s": run.generated_tokens / max(run.generate_seconds, 1e-9),
            "train_tokens_per_s": run.trained_tokens / max(run.train_seconds, 1e-9),
            "generate_seconds": run.generate_seconds, "train_seconds": run.train_seconds,
            "generated_tokens": run.generated_tokens, "trained_tokens": run.trained_tokens}


def trl_side(core: Core, job: Job, config: GRPOConfig, race: Race, lora: LoraSpec | None = None, seed: int = 0) -> dict:
    """TRL's GRPOTrainer with a PEFT LoRA on a fresh copy of the same core, same budget."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOTrainer

    lora = lora or LoraSpec()
    prompts = config.prompts_per_step
    tasks = job.source.train(seed, race.steps * prompts)
    dataset = Dataset.from_list([{"prompt": job.messages(t), "task": i} for i, t in enumerate(tasks)])

    def reward(completions, task, **_) -> list[float]:
        return [job.score(tasks[i], c[-1]["content"] if isinstance(c, list) else c) for c, i in zip(completions, task)]

    model = copy.deepcopy(core.model)
    model.generation_config.eos_token_id = core.stop_token_ids
    args = _trl_args(config, job, race, seed)
    peft_config = LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=TARGETS,
                             bias="none", task_type="CAUSAL_LM")
    clock = Clock(_evaluator(core, job))
    clock.curve.append({"step": 0, "learn_seconds": 0.0, "heldout": clock.evaluate_fn(model)})
    clock.eval_seconds, timing = 0.0, {"generate_seconds": 0.0, "generated_tokens": 0, "trained_tokens": 0}

    class Timed(GRPOTrainer):  # the peer's own trainer; only its generation is timed
        def _generate(self, batch):
            began = time.perf_counter()
            out = super()._generate(batch)
            timing["generate_seconds"] += time.perf_counter() - began
            timing["generated_tokens"] += sum(len(ids) for ids in out[1])
            return out

        def _compute_loss(self, model, inputs):
            timing["trained_tokens"] += int(inputs["completion_mask"].sum())
            return super()._compute_loss(model, inputs)

    class Evals(TrainerCallback):
        def on_step_end(self, _args, state, _control, model=None, **__):
            if state.global_step % race.eval_every == 0 or state.global_step == race.steps:
                clock.point(state.global_step, model)
                model.train()

    clock.started = time.perf_counter()
    trainer = Timed(model=model, reward_funcs=reward, args=args, train_dataset=dataset, processing_class=core.tokenizer,
                    peft_config=peft_config, callbacks=[Evals()])
    trainer.train()
    wall = clock.learn_seconds()
    train_seconds = wall - timing["generate_seconds"]
    return {"curve": clock.curve, "wall_seconds": wall, "steps": trainer.state.global_step,
            "generate_tokens_per_s": timing["generated_tokens"] / max(timing["generate_seconds"], 1e-9),
            "train_tokens_per_s": timing["trained_tokens"] / max(train_seconds, 1e-9),
            "generate_seconds": timing["generate_seconds"], "train_seconds": train_seconds,
            "generated_tokens": timing["generated_tokens"], "trained_tokens": timing["trained_tokens"]}


def _trl_args(config: GRPOConfig, job: Job, race: Race, seed: int):
    """TRL's GRPOConfig with apiary's settings: same batch, group, length, optimiser, no KL, no reward scaling."""
    from trl import GRPOConfig as TRLConfig

    prompts, group = config.prompts_per_step, config.samples_per_prompt
    return TRLConfig(
        output_dir=tempfile.mkdtemp(prefix="apiary-trl-"), use_cpu=True, report_to="none", save_strategy="no",
        logging_steps=1, disable_tqdm=True, seed=seed, max_steps=race.steps, per_device_train_batch_size=prompts * group,
        gradient_accumulation_steps=1, num_generations=group, max_completion_length=config.max_new_tokens or job.max_tokens,
        learning_rate=config.learning_rate, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        max_grad_norm=config.max_grad_norm, temperature=config.temperature, top_p=1.0, top_k=0, beta=0.0,
        scale_rewards="none", num_iterations=1, bf16=False, fp16=False, dataloader_num_workers=0,
    )


def first_reaching(curve: list[dict], level: float) -> float | None:
    return next((p["learn_seconds"] for p in curve if p["heldout"] >= level - 1e-9), None)


def score_at(curve: list[dict], seconds: float) -> float:
    """The held-out score last measured at or before `seconds` of learning."""
    return [p["heldout"] for p in curve if p["learn_seconds"] <= seconds + 1e-9][-1]


def compare(ours: dict, peer: dict, target: float, heldout_items: int) -> dict:
    """Time to the target (or, if either side missed it, to the best level both reached), and the ratio;
    whether that level is within two standard errors of the shared starting score (then the ratio
    times noise), and the wall-time ratio of the same number of steps."""
    best = {side: max(p["heldout"] for p in r["curve"]) for side, r in (("apiary", ours), ("trl", peer))}
    level = target if min(best.values()) >= target else min(best.values())
    times = {side: first_reaching(r["curve"], level) for side, r in (("apiary", ours), ("trl", peer))}
    equal = min(ours["wall_seconds"], peer["wall_seconds"])
    start = ours["curve"][0]["heldout"]  # both sides start from the same core
    ratio = times["apiary"] / times["trl"] if level > start and times["trl"] and times["apiary"] is not None else None
    noise = 2 * math.sqrt(max(start * (1 - start), 1e-12) / max(heldout_items, 1))  # two standard errors at the start
    return {"level": level, "target_reached_by_both": level == target, "best": best, "seconds_to_level": times,
            "time_ratio_vs_trl": ratio, "level_within_noise": level - start < noise, "noise": noise,
            "same_steps_wall_ratio": ours["wall_seconds"] / peer["wall_seconds"], "equal_wall_seconds": equal,
            "heldout_at_equal_wall": {"apiary": score_at(ours["curve"], equal), "trl": score_at(peer["curve"], equal)}}


def run(core: Core, job: Job, config: GRPOConfig, race: Race) -> dict:
    try:
        import trl
    except ImportError as err:
        raise ValueError("the trl part needs the peers installed: pip install -e '.[bench]'") from err

    print(f"apiary GRPO, {race.steps} steps", flush=True)
    torch.manual_seed(0)
    ours = apiary_side(core, job, config, race)
    print(f"TRL {trl.__version__} GRPOTrainer, {race.steps} steps", flush=True)
    torch.manual_seed(0)
    peer = trl_side(core, job, config, race)
    return {"job": job.describe(), "config": config.__dict__, "race": race.__dict__, "trl_version": trl.__version__,
            "heldout_items": len(job.source.heldout()), "apiary": ours, "trl": peer,
            **compare(ours, peer, race.target, len(job.source.heldout()))}
