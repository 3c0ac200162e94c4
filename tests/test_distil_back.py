"""Learn, then distil back (learners.distil_back) on the tiny model: a phase pulls a drifted worker back
toward its core, a run alternates phases with learning, and bad settings are clear errors."""

import pytest
import torch
from safetensors.torch import load_file

from apiary import Hive
from apiary.learners.anchor import anchor_prompts
from apiary.learners.common import reverse_kl
from apiary.learners.distil_back import DistilBackConfig, DistilBackLearner
from apiary.learners.grpo import GRPOConfig
from apiary.models import adapters
from apiary.models.adapters import LoraSpec
from apiary.models.core import load_core
from apiary.models.generate import SamplingParams, generate
from apiary.models.logprobs import pair_logits
from apiary.models.prompt_format import prompt_ids
from apiary.store.artifacts import read_json

ONE_DIGIT = ["min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1"]


def _drift(model, tokenizer, pairs) -> float:
    """KL(core || worker) along fixed replies: how far the worker is from its core there."""
    with torch.no_grad():
        worker_N_V = pair_logits(model, pairs, tokenizer.pad_token_id)
        with model.disable_adapter():
            core_N_V = pair_logits(model, pairs, tokenizer.pad_token_id)
    return float(reverse_kl(core_N_V, worker_N_V))


def test_a_distillation_phase_moves_a_drifted_worker_back_toward_its_core(tiny_core_dir):
    core = load_core(tiny_core_dir)
    model = adapters.attach(core.model, LoraSpec(rank=4, alpha=8))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3)  # a worker that learned something, somewhere
    prompts = [prompt_ids(core.tokenizer, [{"role": "user", "content": t}]) for t in anchor_prompts()[:8]]
    with torch.no_grad(), model.disable_adapter():
        replies = generate(model, prompts, 1, SamplingParams(max_new_tokens=8, temperature=0.0), core.stop_token_ids,
                           core.tokenizer.pad_token_id)
    pairs = [(p, r) for p, r in zip(prompts, replies) if r]
    before = _drift(model, core.tokenizer, pairs)
    config = DistilBackConfig(learning_rate=1e-2, updates=6, prompts_per_update=4, new_tokens=8)
    learner = DistilBackLearner(model, core.tokenizer, None, config, core.stop_token_ids, torch.Generator().manual_seed(0))
    step = learner.learn([1])
    after = _drift(model, core.tokenizer, pairs)
    print(f"KL(core || worker) on anchor prompts: before the phase {before:.4f}, after {after:.4f}")
    assert before > 0.005 and after < 0.7 * before
    assert step.stats.trained_tokens > 0 and step.stats.extra["distil_back_kl"] > 0 and not step.episodes


def test_a_run_alternates_learning_with_distillation_phases(tmp_path, tiny_core_dir, monkeypatch):
    monkeypatch.setenv("APIARY_CACHE", str(tmp_path / "cache"))
    hive = Hive(tmp_path / "hive", core=str(tiny_core_dir))
    rl = GRPOConfig(prompts_per_step=2, samples_per_prompt=2, max_new_tokens=3, anchor_weight=0.0)
    back = DistilBackConfig(every=2, updates=1, prompts_per_update=2, new_tokens=3)
    runs = {}
    for worker, learners in [("plain", ["rl"]), ("cycled", ["rl", "distil_back"])]:
        configs = {"rl": rl} | ({"distil_back": back} if "distil_back" in learners else {})
        result = hive.learn("rg:chain_sum", worker, steps=5, learners=learners, configs=configs, overrides=ONE_DIGIT,
                            checkpoint_every=5, release="ungated", show_progress=False)
        runs[worker] = (result, read_json(hive.store.checkpoint_dir(worker) / "state.json"))
    (plain, plain_state), (cycled, cycled_state) = runs["plain"], runs["cycled"]
    # phases after steps 2 and 4, and one closing the run (step 5 was not one): a step of its own, with no episodes
    assert plain.steps == 5 and cycled.steps == 6 and plain.episodes == cycled.episodes == 20
    assert cycled_state["batches"]["distil_back"] == 6 and plain_state["batches"]["distil_back"] == 0
    assert cycled_state["step"] == 6  # the closing phase is in the saved version
    assert cycled.learners == ["rl", "distil_back"]
    weights = [load_file(str(hive.store.adapter_dir(w, 1) / "adapter_model.safetensors")) for w in ("plain", "cycled")]
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])  # the phases changed the adapter


def test_distil_back_alone_and_bad_settings_are_clear_errors(tmp_path, tiny_core_dir):
    hive = Hive(tmp_path / "hive", core=str(tiny_core_dir))
    with pytest.raises(ValueError, match="pair it with a learner that learns the job"):
        hive.learn("rg:chain_sum", "w", steps=1, learners=["distil_back"], show_progress=False)
    for bad in [{"every": 0}, {"updates": 0}, {"learning_rate": -1.0}, {"temperature": -0.5}, {"kinds": ("chat",)}]:
        with pytest.raises(ValueError, match="distil_back|anchor prompt kinds"):
            DistilBackConfig(**bad)


def test_a_feedback_run_with_distil_back_ends_with_a_phase_before_the_gate(tmp_path, tiny_core_dir, monkeypatch):
    """`apiary serve --distil-back`: the corrections run out at whatever step; the version the gate measures has just
    been distilled back toward the core."""
    monkeypatch.setenv("APIARY_CACHE", str(tmp_path / "cache"))
    from apiary.evals.gate import GateConfig
    from apiary.hive.feedback_learning import learn_and_gate

    hive = Hive(tmp_path / "hive", core=str(tiny_core_dir))
    for episode in hive.attempt("rg:chain_sum", "arith", n=4, overrides=ONE_DIGIT):
        hive.feedback(episode.id, correction=episode.answer)
    outcome = learn_and_gate(hive.store, hive.evaluator, hive.worker("arith"), ["corrections", "distil_back"], GateConfig())
    state = read_json(hive.store.checkpoint_dir("arith") / "state.json")
    every = DistilBackConfig().every
    assert outcome["learn"]["learners"] == ["corrections", "distil_back"] and outcome["gate"] is not None
    assert state["step"] == outcome["learn"]["steps"] and outcome["learn"]["feedback"] == 12  # 4 corrections, 3 epochs
    # one step of corrections (all 12 in one batch), then the closing phase: the distil_back count jumps to the next
    # multiple of `every`, so the phase runs
    assert outcome["learn"]["steps"] == 2 and state["batches"]["distil_back"] == every


def test_runs_distil_back_by_default_except_documents_runs():
    """`apiary learn` and the server add distil_back's phases to whatever learns (once), not to a documents run;
    the Python API's default run is rl with them, and rl's per-step anchor is then off."""
    from apiary.hive.mix import DEFAULT_LEARNERS, with_distil_back

    assert with_distil_back(["rl"]) == ["rl", "distil_back"]
    assert with_distil_back(["corrections", "rewards"]) == ["corrections", "rewards", "distil_back"]
    assert with_distil_back(["rl", "distil_back"]) == ["rl", "distil_back"]
    assert with_distil_back(["context_distill"]) == ["context_distill"]
    assert with_distil_back(["doc_pretrain", "self_study"]) == ["doc_pretrain", "self_study"]
    assert DEFAULT_LEARNERS == ("rl", "distil_back") and GRPOConfig().anchor_weight == 0.0
