import math

import pytest
import torch

from apiary.evals import contamination, retention
from apiary.evals.retention import prompts as retention_prompts
from apiary.jobs.base import Job, Task
from apiary.jobs.function import FunctionSource
from apiary.jobs.scoring import Scorer
from apiary.learners.anchor import ANCHOR_KINDS, anchor_prompts
from apiary.learners.grpo import GRPOConfig, GRPOLearner, group_advantages, policy_loss
from apiary.models import adapters
from apiary.models.adapters import LoraSpec
from apiary.models.core import load_core, with_core_updates
from apiary.models.generate import SamplingParams, generate
from apiary.learners.common import reverse_kl
from apiary.models.logprobs import completion_logprobs, pair_logits
from apiary.models.prompt_format import prompt_ids


def test_group_advantages_are_reward_minus_group_mean():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    torch.testing.assert_close(group_advantages(rewards), torch.tensor([[0.5, -0.5, -0.5, 0.5], [0.0, 0.0, 0.0, 0.0]]))


def test_policy_loss_counts_only_completion_tokens():
    logprobs = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, 0.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    loss = policy_loss(logprobs, mask, torch.tensor([1.0, -1.0]))
    loss.backward()
    torch.testing.assert_close(loss, torch.tensor(-(1.0 * -3.0 + -1.0 * -0.5) / 2))
    torch.testing.assert_close(logprobs.grad, torch.tensor([[-0.5, -0.5, 0.0], [0.5, 0.0, 0.0]]))


def test_kl_term_is_zero_at_the_reference_and_positive_away():
    logprobs, mask = torch.tensor([[-1.0, -2.0]]), torch.ones(1, 2)
    zero_adv = torch.zeros(1)
    assert policy_loss(logprobs, mask, zero_adv, logprobs.clone(), kl_coef=1.0) == 0
    assert policy_loss(logprobs, mask, zero_adv, logprobs - 0.5, kl_coef=1.0) > 0


def first_token_job(target: str) -> Job:
    """Reward 1 when the completion starts with `target`: a signal a random tiny model can find."""
    source = FunctionSource(lambda i: (f"say {target} #{i}", target), heldout_size=4)
    return Job("say", source, Scorer("starts", lambda c, a: float(c.strip().startswith(a))), max_tokens=3)


def test_grpo_step_moves_lora_toward_rewarded_completions(tiny_core):
    torch.manual_seed(0)
    model = adapters.attach(tiny_core.model, LoraSpec(rank=4, alpha=8))
    try:
        learner = GRPOLearner(model, tiny_core.tokenizer, first_token_job("x"),
                              GRPOConfig(prompts_per_step=2, samples_per_prompt=4, learning_rate=5e-2), tiny_core.stop_token_ids)
        tasks = learner.job.source.train(0, 2)
        samples = learner.rollout(tasks)
        for i, s in enumerate(samples):  # hand out rewards: the first sample of each group wins
            s.score = 1.0 if i % 4 == 0 else 0.0
        prompts = [samples[0].prompt_ids, samples[4].prompt_ids]
        index = [i // 4 for i in range(8)]
        pad = tiny_core.tokenizer.pad_token_id
        with torch.no_grad():
            before, mask = completion_logprobs(model, prompts, [s.ids for s in samples], index, pad)
        lora_before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        advantages = group_advantages(torch.tensor([s.score for s in samples]).view(2, 4))
        learner._update([(s, float(a)) for s, a in zip(samples, advantages.view(-1))])
        changed = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, lora_before[n])]
        assert changed, "LoRA parameters did not change"
        assert all("lora_" in n for n in changed)
        with torch.no_grad():
            after, _ = completion_logprobs(model, prompts, [s.ids for s in samples], index, pad)
        gain = ((after - before) * mask).sum(1)
        assert gain[0] > 0 and gain[4] > 0  # winners got more likely
        assert gain[[1, 2, 3, 5, 6, 7]].mean() < gain[[0, 4]].mean()
    finally:
        adapters.detach(model)


def test_groups_with_equal_rewards_are_not_trained(tiny_core):
    model = adapters.attach(tiny_core.model, LoraSpec(rank=4, alpha=8))
    try:
        never = Job("never", FunctionSource(lambda i: (f"q{i}", "zzz"), heldout_size=2), Scorer("never", lambda c, a: 0.0))
        learner = GRPOLearner(model, tiny_core.tokenizer, never, GRPOConfig(prompts_per_step=2, samples_per_prompt=3), tiny_core.stop_token_ids)
        before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        samples, stats = learner.step(learner.job.source.train(0, 2))
        assert len(samples) == 6 and stats.trained_samples == 0 and stats.reward_mean == 0.0
        assert all(torch.equal(p, before[n]) for n, p in model.named_parameters() if p.requires_grad)
    finally:
        adapters.detach(model)


@pytest.mark.parametrize("setting", [{"kl_coef": -0.1}, {"kl_coef": math.nan}, {"kl_coef": math.inf},
                                     {"anchor_weight": -1.0}, {"anchor_weight": math.nan},
                                     {"anchor_prompts_per_step": 0}, {"anchor_new_tokens": 0}])
def test_bad_kl_and_anchor_settings_are_clear_errors(setting):
    name = next(iter(setting))
    with pytest.raises(ValueError, match=f"rl: {name} must be"):
        GRPOConfig(**setting)


def test_anchor_prompts_ship_with_the_learners_and_are_not_the_retention_prompts():
    anchors = anchor_prompts()
    assert len(anchors) >= 50 and not set(anchors) & set(retention_prompts())


def test_anchor_prompts_come_in_two_kinds_and_an_unknown_kind_is_refused():
    requests, short = anchor_prompts(("request",)), anchor_prompts(("short",))
    assert len(requests) >= 50 and len(short) >= 50 and anchor_prompts() == requests  # requests by default
    assert anchor_prompts(ANCHOR_KINDS) == requests + short
    with pytest.raises(ValueError, match="anchor prompt kinds must be some of request, short, not chat"):
        GRPOConfig(anchor_weight=1.0, anchor_kinds=("chat",))


def test_anchor_prompts_share_no_retention_item_so_training_on_them_is_no_leak():
    """Two anchor prompts once equalled retention items: every consolidation by distillation was then refused
    as contaminated (the gate's near-duplicate rule, evals.contamination)."""
    questions = [it["question"] for it in retention.items()]
    assert contamination.find(anchor_prompts(ANCHOR_KINDS), questions) == []


# Staying near the core, measured on the tiny model: the same seed, tasks and steps with and without the term;
# drift = the exact per-token KL(core || worker) along the core's greedy replies to fixed prompts.
STEPS = 4


def even_length_job() -> Job:
    """Reward 1 for a reply of even length: a random tiny model gets it half the time, so every group has a signal."""
    return Job("even", FunctionSource(lambda i: (f"say something #{i}", ""), heldout_size=4),
               Scorer("even", lambda c, a: float(len(c) % 2 == 0)), max_tokens=4)


def _drift(model, tokenizer, prompts: list[list[int]], replies: list[list[int]]) -> float:
    pairs = [(p, r) for p, r in zip(prompts, replies) if r]
    with torch.no_grad():
        worker_N_V = pair_logits(model, pairs, tokenizer.pad_token_id)
        with model.disable_adapter():
            core_N_V = pair_logits(model, pairs, tokenizer.pad_token_id)
    return float(reverse_kl(core_N_V, worker_N_V))  # KL(core || worker)


@pytest.fixture(scope="module")
def probes(tiny_core_dir) -> dict[str, tuple[list[list[int]], list[list[int]]]]:
    """Where drift is measured: the job's held-out prompts and general prompts, each with the core's greedy replies."""
    core = load_core(tiny_core_dir)
    greedy = SamplingParams(max_new_tokens=8, temperature=0.0)

    def probe(texts: list[str]) -> tuple[list[list[int]], list[list[int]]]:
        prompts = [prompt_ids(core.tokenizer, [{"role": "user", "content": t}]) for t in texts]
        return prompts, generate(core.model, prompts, 1, greedy, core.stop_token_ids, core.tokenizer.pad_token_id)

    return {"job": probe([t.question for t in even_length_job().source.heldout()]), "general": probe(retention_prompts()[:8])}


def learn_and_measure(core_dir, probes, learning_rate: float = 5e-2, **settings) -> dict:
    """STEPS RL steps on the even-length job from seed 0, with no KL or anchor term unless `settings` name one;
    the drift on each of the `probes`, the trained LoRA parameters, and the last step's figures."""
    settings = {"kl_coef": 0.0, "anchor_weight": 0.0} | settings
    core = load_core(core_dir)
    job = even_length_job()
    torch.manual_seed(0)
    model = adapters.attach(core.model, LoraSpec(rank=4, alpha=8))
    config = GRPOConfig(prompts_per_step=2, samples_per_prompt=4, learning_rate=learning_rate, anchor_prompts_per_step=4,
                        anchor_new_tokens=8, **settings)
    learner = GRPOLearner(model, core.tokenizer, job, config, core.stop_token_ids, torch.Generator().manual_seed(0))
    for step in range(STEPS):
        _, stats = learner.step(job.source.train(2 * step, 2))
    drift = {name: _drift(model, core.tokenizer, *probe) for name, probe in probes.items()}
    return {**drift, "lora": torch.cat([p.detach().flatten() for p in model.parameters() if p.requires_grad]), "stats": stats}


@pytest.fixture(scope="module")
def without_terms(tiny_core_dir, probes) -> dict:
    return learn_and_measure(tiny_core_dir, probes)


def test_kl_to_the_core_keeps_the_worker_closer_to_its_core_on_the_job(tiny_core_dir, probes, without_terms):
    anchored = learn_and_measure(tiny_core_dir, probes, kl_coef=20.0)
    print(f"KL(core || worker) on the job's prompts: kl_coef 0 {without_terms['job']:.4f}, 20 {anchored['job']:.4f}")
    assert not torch.equal(anchored["lora"], without_terms["lora"])  # the term changed the update
    assert without_terms["job"] > 0.005  # the RL steps did move the worker
    assert anchored["job"] < 0.8 * without_terms["job"]


def test_anchor_toward_the_core_on_general_prompts_keeps_the_worker_closer_to_its_core(tiny_core_dir, probes):
    # At the other tests' 5e-2 Adam moves every parameter by about the learning rate whatever the gradient, and the
    # anchor's effect on the tiny model was lost in the draw-to-draw noise; at 1e-2 it is monotone in the weight.
    runs = {w: learn_and_measure(tiny_core_dir, probes, learning_rate=1e-2, anchor_weight=w) for w in (0.0, 1e-9, 300.0)}
    # 1e-9: the same anchor samples (the same random draws) at a weight too small to matter: only the weight differs
    print("KL(core || worker) on general prompts: " + ", ".join(f"anchor_weight {w:g} {r['general']:.5f}" for w, r in runs.items()))
    assert not torch.equal(runs[300.0]["lora"], runs[1e-9]["lora"])
    assert runs[300.0]["general"] < 0.5 * min(runs[0.0]["general"], runs[1e-9]["general"])
    assert runs[300.0]["stats"].extra["anchor_tokens"] > 0 and runs[300.0]["stats"].extra["anchor_kl"] > 0
    assert "anchor_kl" not in runs[0.0]["stats"].extra


def test_a_worker_on_a_released_core_version_is_held_to_that_core_not_the_base(tiny_core_dir, random_adapter, tmp_path):
    """Core version 1 = base + a core adapter merged into the weights, so the worker's adapter disabled
    (what kl_coef and anchor_weight compare with) is core v1."""
    random_adapter(tmp_path / "core-v1", seed=3)
    base, v1 = load_core(tiny_core_dir), with_core_updates(load_core(tiny_core_dir), [tmp_path / "core-v1"], 1)
    ids = torch.tensor([prompt_ids(v1.tokenizer, [{"role": "user", "content": "hello"}])])
    with torch.no_grad():
        base_logits, core_logits = base.model(input_ids=ids).logits, v1.model(input_ids=ids).logits
        worker = adapters.attach(v1.model, LoraSpec(rank=4, alpha=8))
        for name, p in worker.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
        with worker.disable_adapter():
            disabled_logits = worker(input_ids=ids).logits
        worker_logits = worker(input_ids=ids).logits
    assert not torch.allclose(base_logits, core_logits, atol=1e-3)
    assert not torch.allclose(worker_logits, core_logits, atol=1e-3)
    torch.testing.assert_close(disabled_logits, core_logits)
