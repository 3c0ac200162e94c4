"""Each feedback learner moves the adapter the right way on a tiny model."""

import pytest
import torch

from apiary.jobs.base import Job
from apiary.jobs.checks import arithmetic_answer
from apiary.jobs.function import HELDOUT_BASE, FunctionSource
from apiary.jobs.scoring import Scorer
from apiary.learners.common import Example, FeedbackItem, batch_logprobs
from apiary.learners.corrections import CorrectionLearner, CorrectionsConfig
from apiary.learners.critiques import CritiqueLearner, CritiquesConfig, revision_messages
from apiary.learners.practice import PracticeConfig, PracticeLearner
from apiary.learners.preferences import PreferenceLearner, PreferencesConfig
from apiary.learners.rewards import RewardLearner, RewardsConfig, baseline_advantages
from apiary.models import adapters
from apiary.models.adapters import LoraSpec
from apiary.models.generate import prompt_ids, reply_ids
from apiary.store.feedback import make_feedback
from apiary.store.records import Episode, Feedback

ASK = [{"role": "user", "content": "Calculate 9 - 4 ="}]
LR = 1e-2
CONFIG = CritiquesConfig(learning_rate=LR, batch_size=4, tries=2)
ANY_JOB = Job(name="j", source=FunctionSource(lambda i: ("q", "a"), heldout_size=1), scorer=Scorer("any", lambda c, a: 0.0))


@pytest.fixture
def model(tiny_core):
    model = adapters.attach(tiny_core.model, LoraSpec(rank=4, alpha=8))
    yield model
    adapters.detach(model)


def episode(id, completion, score=0.0, answer="5", messages=ASK):
    return Episode(id=id, job="j", task_id="a", messages=messages, completion=completion, score=score, answer=answer)


def feedback(kind, **fields):
    return Feedback(id=fields.pop("id", 1), episode_id=fields.pop("episode_id", 1), kind=kind, **fields)


def logprob(model, tokenizer, messages, text) -> float:
    with torch.no_grad():
        lp, mask = batch_logprobs(model, [Example(prompt_ids(tokenizer, messages), reply_ids(tokenizer, text))],
                                  tokenizer.pad_token_id)
    return float((lp * mask).sum())


def test_corrections_make_the_corrected_output_more_likely(model, tiny_core):
    tok = tiny_core.tokenizer
    learner = CorrectionLearner(model, tok, ANY_JOB, CorrectionsConfig(learning_rate=LR, batch_size=4), tiny_core.stop_token_ids)
    before = logprob(model, tok, ASK, "5")
    for _ in range(3):
        step = learner.learn([FeedbackItem(feedback("correction", text="5"), episode(1, "13"))])
    assert logprob(model, tok, ASK, "5") > before + 0.5
    assert step.feedback_ids == [1] and step.stats.trained_samples == 1


def test_preferences_make_the_preferred_answer_relatively_more_likely(model, tiny_core):
    tok = tiny_core.tokenizer
    learner = PreferenceLearner(model, tok, ANY_JOB, PreferencesConfig(learning_rate=LR, beta=0.5), tiny_core.stop_token_ids)
    margin = lambda: logprob(model, tok, ASK, "5") - logprob(model, tok, ASK, "13")  # noqa: E731
    before = margin()
    item = FeedbackItem(feedback("preference", episode_id=2, other_episode_id=1), episode(2, "5", 1.0), episode(1, "13"))
    for _ in range(3):
        step = learner.learn([item])
    assert margin() > before + 0.5
    assert step.feedback_ids == [1]


def test_rewards_push_up_high_and_down_low(model, tiny_core):
    tok = tiny_core.tokenizer
    assert baseline_advantages(["a", "a", "b"], [1.0, 0.0, 0.3]) == pytest.approx([1.0, -1.0, 0.3 - 1.3 / 3])
    learner = RewardLearner(model, tok, ANY_JOB, RewardsConfig(learning_rate=LR, batch_size=4), tiny_core.stop_token_ids)
    margin = lambda: logprob(model, tok, ASK, "5") - logprob(model, tok, ASK, "13")  # noqa: E731
    before = margin()
    items = [FeedbackItem(feedback("reward", id=1, episode_id=2, reward=1.0), episode(2, "5", 1.0)),
             FeedbackItem(feedback("reward", id=2, episode_id=1, reward=0.0), episode(1, "13"))]
    for _ in range(3):
        step = learner.learn(items)
    assert margin() > before + 0.5
    assert sorted(step.feedback_ids) == [1, 2]


def test_critiques_distil_a_verified_revision_into_the_uncritiqued_prompt(model, tiny_core):
    """Any revision that differs from the original scores 1 here, so the learner must train the
    plain prompt (no critique in it) toward the revision it chose."""
    tok = tiny_core.tokenizer
    job = Job(name="j", source=FunctionSource(lambda i: ("q", "a"), heldout_size=1), max_tokens=4,
              scorer=Scorer("changed", lambda completion, answer: float(completion.strip() != "13")))
    learner = CritiqueLearner(model, tok, job, CONFIG, tiny_core.stop_token_ids, torch.Generator().manual_seed(0))
    item = FeedbackItem(feedback("critique", text="too high"), episode(1, "13"))
    assert "too high" in revision_messages(item)[-1]["content"]
    step = learner.learn([item])
    revisions = [e for e in step.episodes]
    assert len(revisions) == CONFIG.tries and all(e.messages == revision_messages(item) for e in revisions)
    chosen = max(revisions, key=lambda e: e.score).completion
    assert step.stats.trained_samples == 1 and step.feedback_ids == [1]
    before = logprob(model, tok, ASK, chosen)  # after one update; train twice more on the same revision
    learner.learn([item])
    assert logprob(model, tok, ASK, chosen) != before


def test_critique_without_a_better_answer_trains_nothing(model, tiny_core):
    tok = tiny_core.tokenizer
    job = Job(name="j", source=FunctionSource(lambda i: ("q", "a"), heldout_size=1), max_tokens=4,
              scorer=Scorer("never", lambda completion, answer: 0.0))
    learner = CritiqueLearner(model, tok, job, CONFIG, tiny_core.stop_token_ids, torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    step = learner.learn([FeedbackItem(feedback("critique", text="too high"), episode(1, "13"))])
    assert step.stats.trained_samples == 0 and len(step.episodes) == CONFIG.tries
    after = [p for p in model.parameters() if p.requires_grad]
    assert all(torch.equal(a, b) for a, b in zip(before, after))


def test_practice_keeps_only_checkable_new_problems_outside_the_heldout(model, tiny_core):
    job = Job(name="j", source=FunctionSource(lambda i: ("Calculate 2 + 2 =", "4") if i >= HELDOUT_BASE
                                              else (f"Calculate {i} + 1 =", str(i + 1)), heldout_size=1),
              scorer=Scorer("any", lambda c, a: 0.0), solve=arithmetic_answer, max_tokens=4)
    practice = PracticeConfig(learning_rate=LR, batch_size=4, tries=2)
    learner = PracticeLearner(model, tiny_core.tokenizer, job, practice, tiny_core.stop_token_ids, torch.Generator().manual_seed(0))
    failed = episode(1, "13", messages=[{"role": "user", "content": "Calculate 9 - 4 ="}])
    learner._sample = lambda chats, samples: ["Calculate 9 - 4 =", "Calculate 2+2=", "What is 7 * 6?", "no numbers here"]
    tasks = learner._write([failed] * 4)
    assert [(t.question, t.answer) for t in tasks] == [("What is 7 * 6?", "42")]
    with pytest.raises(ValueError, match="no check"):
        PracticeLearner(model, tiny_core.tokenizer, Job(name="x", source=job.source, scorer=job.scorer), practice,
                        tiny_core.stop_token_ids, torch.Generator())


@pytest.mark.real_model
def test_bundled_core_learns_from_corrections(tmp_path):
    """On the real core: products answers that echo the question ("7 * 8 = 56") are corrected; the
    worker then answers the same tasks (greedy) better, and every piece of feedback is in the lineage."""
    from apiary import Hive

    hive = Hive(tmp_path)
    spec = ["rg:products", "min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1"]
    episodes = hive.attempt(spec[0], "w", 16, overrides=spec[1:])
    wrong = [e for e in episodes if e.score < 1.0]
    assert len(wrong) >= 8  # the core echoes the question first
    hive.add_feedback([make_feedback(e.id, correction=e.answer) for e in wrong])
    result = hive.learn(spec[0], "w", learners=["corrections"], overrides=spec[1:], show_progress=False,
                        release="ungated")  # live whatever the gate says: this tests learning, not the gate
    assert result.feedback == 3 * len(wrong) and result.after > result.before
    again = hive.attempt(spec[0], "w", 16, start=0, overrides=spec[1:])
    assert sum(e.score for e in again) > sum(e.score for e in episodes)
    assert sorted(hive.store.feedback_learned("w", result.adapter_version)) == sorted(
        f["id"] for f in hive.feedback_log("w"))
