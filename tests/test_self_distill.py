"""Self-distillation from context moves the worker toward itself-with-the-feedback, and only then."""

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from apiary.cli import app
from apiary.hive.mix import configs_with
from apiary.hive.training import Budget, learn
from apiary.hive.worker import worker_on
from apiary.jobs.base import Job
from apiary.jobs.function import FunctionSource
from apiary.jobs.scoring import Scorer
from apiary.learners.common import FeedbackItem, reverse_kl
from apiary.learners.critiques import revision_messages
from apiary.learners.grpo import GRPOConfig
from apiary.learners.self_distill import DistillRow, SelfDistillConfig, SelfDistillLearner, teacher_messages
from apiary.models.logprobs import pair_logits
from apiary.models import adapters
from apiary.models.adapters import LoraSpec
from apiary.models.generate import prompt_ids
from apiary.store.feedback import make_feedback
from apiary.store.records import Episode, Feedback
from apiary.store.store import Store

ASK = [{"role": "user", "content": "Calculate 9 - 4 ="}]
JOB = Job(name="j", source=FunctionSource(lambda i: ("q", "a"), heldout_size=1), max_tokens=6,
          scorer=Scorer("exact", lambda completion, answer: float(completion.strip() == answer)))
CONFIG = SelfDistillConfig(learning_rate=1e-2, samples=4)  # the tiny random model needs a large step to show a change
CHAIN = ["rg:chain_sum", "min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1", "heldout_size=8"]


@pytest.fixture
def model(tiny_core):
    """The tiny core with an adapter that already does something (B != 0), as a worker's would."""
    model = adapters.attach(tiny_core.model, LoraSpec(rank=4, alpha=8))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    yield model
    adapters.detach(model)


def items() -> list[FeedbackItem]:
    episode = Episode(id=1, job="j", task_id="a", messages=ASK, completion="13", score=0.0, answer="5")
    return [FeedbackItem(Feedback(id=1, episode_id=1, kind="correction", text="5"), episode),
            FeedbackItem(Feedback(id=2, episode_id=1, kind="critique", text="you added instead of subtracting"), episode)]


def adapter_weights(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters() if p.requires_grad]


def test_the_teacher_sees_the_correction_as_an_example_or_its_answer_and_the_critique():
    correction, critique = items()
    shown = teacher_messages(correction)
    assert len(shown) == 1 and shown[0]["content"].startswith("Calculate 9 - 4 =")
    assert shown[0]["content"].endswith("The correct result is 5.") and ASK[0]["content"] == "Calculate 9 - 4 ="  # not mutated
    assert teacher_messages(critique) == revision_messages(critique)


def test_learning_moves_the_student_toward_the_teacher_with_the_feedback_in_context(model, tiny_core):
    """On fixed student samples, at the default learning rate, the worker without the context comes closer to
    the worker with it as it was before learning, and to the worker with it now. (At 1e-2 the second gap closes
    too, but by the whole model drifting away from both: the reason for the small default.)"""
    tok = tiny_core.tokenizer
    learner = SelfDistillLearner(model, tok, JOB, SelfDistillConfig(samples=4), tiny_core.stop_token_ids,
                                 torch.Generator().manual_seed(0))
    fixed = [DistillRow(prompt_ids(tok, it.episode.messages), learner._teacher_prompt(it), completion)
             for it, completions in zip(items(), learner._sample([prompt_ids(tok, ASK)] * 2)) for completion in completions]

    def logits(prompt) -> torch.Tensor:
        with torch.no_grad():
            return pair_logits(model, [(getattr(r, prompt), r.completion) for r in fixed], tok.pad_token_id)

    teacher_before = logits("teacher_prompt")
    before = float(reverse_kl(logits("student_prompt"), teacher_before))
    losses = [learner.learn(items()).stats.loss for _ in range(6)]
    after = float(reverse_kl(logits("student_prompt"), logits("teacher_prompt")))
    after_to_first_teacher = float(reverse_kl(logits("student_prompt"), teacher_before))
    print(f"KL on fixed samples {before:.6f} -> {after:.6f} (to the teacher as it was: {after_to_first_teacher:.6f}); "
          f"step losses {[round(x, 6) for x in losses]}")
    assert before > 0 and after_to_first_teacher < 0.8 * before and after < before


def test_a_context_that_says_nothing_new_gives_zero_loss_and_leaves_the_adapter_as_it_was(model, tiny_core):
    tok = tiny_core.tokenizer
    learner = SelfDistillLearner(model, tok, JOB, SelfDistillConfig(learning_rate=1e-2, samples=4),
                                 tiny_core.stop_token_ids, torch.Generator().manual_seed(0))
    learner._teacher_prompt = lambda item: prompt_ids(tok, item.episode.messages)  # the teacher sees what the student sees
    before = adapter_weights(model)
    step = learner.learn(items())
    assert step.stats.trained_samples == 8 and step.stats.trained_tokens > 0
    assert step.stats.loss == pytest.approx(0.0, abs=1e-9)
    assert all(torch.equal(a, b) for a, b in zip(before, adapter_weights(model)))


def test_reverse_kl_has_the_exact_gradient_and_none_where_student_and_teacher_agree():
    student, teacher = torch.randn(6, 50, requires_grad=True), torch.randn(6, 50)
    reverse_kl(student, teacher).backward()
    plain = student.detach().clone().requires_grad_()
    log_s, log_t = torch.log_softmax(plain, -1), torch.log_softmax(teacher, -1)
    (log_s.exp() * (log_s - log_t)).sum(-1).mean().backward()
    assert torch.allclose(student.grad, plain.grad, atol=1e-7)
    same = teacher.clone().requires_grad_()
    reverse_kl(same, teacher).backward()
    assert float(reverse_kl(same, teacher)) == 0.0 and torch.count_nonzero(same.grad) == 0


def test_the_step_records_its_feedback_and_keeps_the_students_samples_as_scored_episodes(model, tiny_core):
    learner = SelfDistillLearner(model, tiny_core.tokenizer, JOB, CONFIG, tiny_core.stop_token_ids, torch.Generator())
    step = learner.learn(items())
    assert step.feedback_ids == [1, 2] and len(step.episodes) == 2 * CONFIG.samples
    assert all(e.messages == ASK and e.answer == "5" and e.score in (0.0, 1.0) for e in step.episodes)


@pytest.mark.parametrize("settings, message", [
    ({"learning_rate": -1e-4}, "learning rate must be a number >= 0"),
    ({"learning_rate": math.nan}, "learning rate must be a number >= 0"),
    ({"samples": 0}, "samples must be at least 1"),
    ({"temperature": -0.5}, "temperature must be a number >= 0"),
    ({"temperature": math.nan}, "temperature must be a number >= 0"),
    ({"max_new_tokens": 0}, "max_new_tokens must be at least 1"),
    ({"epochs": 0}, "epochs must be at least 1"),
])
def test_bad_settings_are_refused_naming_the_setting(settings, message):
    with pytest.raises(ValueError, match=message):
        SelfDistillConfig(**settings)


def test_a_multi_turn_job_is_refused(model, tiny_core):
    game = Job(name="game", source=JOB.source, scorer=JOB.scorer, environment=lambda task: None)
    with pytest.raises(ValueError, match="self_distill .*multi-turn"):
        SelfDistillLearner(model, tiny_core.tokenizer, game, CONFIG, tiny_core.stop_token_ids)


def test_the_command_line_gives_self_distill_its_own_learning_rate():
    configs = configs_with(["corrections", "self_distill"], GRPOConfig(), learning_rates={"self_distill": 3e-4})
    assert isinstance(configs["self_distill"], SelfDistillConfig)
    assert configs["self_distill"].learning_rate == 3e-4 and configs["corrections"].learning_rate == 5e-4
    assert SelfDistillConfig().learning_rate == 2e-4


def _feedback(store: Store, worker: str) -> list[int]:
    """Three corrected attempts and one criticised one at chain_sum tasks."""
    ids = store.add_episodes([Episode(job="chain_sum", task_id=str(i), messages=[{"role": "user", "content": f"{i} + 1 ="}],
                                      completion="?", score=0.0, answer=str(i + 1), worker=worker, origin="attempt")
                              for i in range(4)])
    given = [make_feedback(i, correction=str(n + 1)) for n, i in enumerate(ids[:3])] + [make_feedback(ids[3], critique="add 1")]
    return [f.id for f in store.add_feedback(given)]


def test_learn_uses_corrections_and_critiques_and_the_version_links_them(tmp_path, tiny_core, chain_sum_job):
    store = Store(tmp_path)
    store.ensure_worker("w", chain_sum_job.name, tiny_core.name, chain_sum_job.describe())
    feedback_ids = _feedback(store, "w")
    configs = {"self_distill": SelfDistillConfig(batch_size=2, epochs=1, samples=2, max_new_tokens=3)}
    model, run = learn(store, worker_on(store, "w", chain_sum_job, tiny_core), Budget(), lora=LoraSpec(rank=2, alpha=4),
                       show_progress=False, learners=["self_distill"], configs=configs)
    adapters.detach(model)
    assert run.learners == ["self_distill"] and run.feedback == 4 and run.steps == 2
    assert sorted(store.feedback_learned("w", run.version)) == sorted(feedback_ids)
    samples = [e for e in store.episodes("w") if e.origin == "self_distill"]
    assert len(samples) == 8 and {e.id for e in samples} <= set(store.trained_on("w", run.version))
    assert store.feedback("w", unconsumed=True) == []


def test_apiary_learn_runs_self_distill_from_the_command_line(tmp_path, tiny_core_dir):
    hive, runner = tmp_path / "hive", CliRunner()
    invoke = lambda *args: runner.invoke(app, [str(a) for a in args])  # noqa: E731
    episodes = json.loads(invoke("attempt", *CHAIN, "--worker", "w", "--n", "2", "--hive", hive, "--core", tiny_core_dir,
                                 "--json").stdout)
    assert invoke("feedback", episodes[0]["id"], "--correction", episodes[0]["answer"], "--hive", hive).exit_code == 0
    assert invoke("feedback", episodes[1]["id"], "--critique", "check the sum", "--hive", hive).exit_code == 0
    result = invoke("learn", *CHAIN, "--worker", "w", "--learners", "self_distill", "--lr", "self_distill=1e-4",
                    "--epochs", "1", "--release-ungated", "--hive", hive, "--core", tiny_core_dir,
                    "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["learners"] == ["self_distill", "distil_back"] and report["feedback"] == 2  # distils back by default
