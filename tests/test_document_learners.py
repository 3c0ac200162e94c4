"""Learning documents: context distillation moves the worker toward its core reading the document, continued
pretraining lowers the loss on the documents, and neither ever trains on a held-out question."""

import json

import pytest
import torch

from apiary.hive.training import Budget, learn
from apiary.jobs.base import Task
from apiary.learners.common import apply_update, forward_kl
from apiary.hive.worker import worker_on
from apiary.jobs.spec import load_job
from apiary.learners.context_distill import ContextDistillConfig, ContextDistillLearner
from apiary.learners.doc_pretrain import DocPretrainConfig, DocPretrainLearner
from apiary.learners.self_distill import context_kl
from apiary.models import adapters
from apiary.models.adapters import LoraSpec
from apiary.models.logprobs import pair_logits
from apiary.store.store import Store

QUESTIONS = [{"question": "Which room is the Quorbel team's?", "answer": "Zanthe-3", "doc": "teams.md"},
             {"question": "Who runs Project Halvex?", "answer": "Mirel Dostrand", "doc": "halvex.md"}]
PRACTICE = [{"question": "Where does the Quorbel team meet?", "answer": "Zanthe-3", "doc": "teams.md"},
            {"question": "Who leads Project Halvex?", "answer": "Mirel Dostrand", "doc": "halvex.md"}]


@pytest.fixture
def job(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "teams.md").write_text("The Quorbel team meets in room Zanthe-3.\n")
    (docs / "halvex.md").write_text("Project Halvex is led by Mirel Dostrand.\n")
    for name, rows in (("questions.jsonl", QUESTIONS), ("practice.jsonl", PRACTICE)):
        (docs / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    job = load_job(f"docs:{docs}")
    job.max_tokens = 6
    return job


@pytest.fixture
def model(tiny_core):
    model = adapters.attach(tiny_core.model, LoraSpec(rank=4, alpha=8))
    yield model
    adapters.detach(model)


def test_context_distillation_moves_the_student_toward_the_core_reading_the_document(model, tiny_core, job):
    tok = tiny_core.tokenizer
    learner = ContextDistillLearner(model, tok, job, ContextDistillConfig(learning_rate=1e-2, samples=4),
                                    tiny_core.stop_token_ids, torch.Generator().manual_seed(0))
    rows, _ = learner.rows(job.source.train(0, 2))
    assert all(r.teacher_prompt != r.student_prompt for r in rows)

    def gap() -> float:
        with torch.no_grad():
            return float(context_kl(model, rows, tok.pad_token_id, core_teacher=True))

    before = gap()
    for _ in range(5):
        model.train()
        loss = context_kl(model, rows, tok.pad_token_id, core_teacher=True)
        learner.optimizer.zero_grad()
        loss.backward()
        learner.optimizer.step()
    assert gap() < 0.5 * before
    with torch.no_grad(), model.disable_adapter():  # the teacher is the core: learning left it as it was
        assert float(context_kl(model, rows, tok.pad_token_id)) == pytest.approx(before, rel=1e-4)


def test_a_context_distillation_step_writes_its_samples_as_scored_episodes(model, tiny_core, job):
    learner = ContextDistillLearner(model, tiny_core.tokenizer, job, ContextDistillConfig(samples=2),
                                    tiny_core.stop_token_ids)
    step = learner.learn(job.source.train(0, 2))
    assert len(step.episodes) == 4 and {e.origin for e in step.episodes} == {"context_distill"}
    assert all(e.score is not None and e.answer in ("Zanthe-3", "Mirel Dostrand") for e in step.episodes)
    assert step.stats.trained_samples > 0 and step.stats.loss >= 0


def test_continued_pretraining_lowers_the_loss_on_the_documents(model, tiny_core, job):
    learner = DocPretrainLearner(model, tiny_core.tokenizer, job, DocPretrainConfig(learning_rate=1e-2),
                                 tiny_core.stop_token_ids)
    documents = job.source.all_documents()
    with torch.no_grad():
        before = float(learner.loss(documents))
    for _ in range(5):
        learner.learn(documents)
    with torch.no_grad():
        assert float(learner.loss(documents)) < before - 0.1


def test_the_document_learners_refuse_a_job_that_is_not_a_folder_of_documents(model, tiny_core, chain_sum_job):
    for learner, config in ((ContextDistillLearner, ContextDistillConfig()), (DocPretrainLearner, DocPretrainConfig())):
        with pytest.raises(ValueError, match="a documents job is needed"):
            learner(model, tiny_core.tokenizer, chain_sum_job, config, tiny_core.stop_token_ids)


def test_a_learning_run_on_documents_never_trains_on_a_held_out_question(tmp_path, tiny_core, job):
    store = Store(tmp_path / "hive")
    configs = {"context_distill": ContextDistillConfig(batch_size=2, samples=1, max_new_tokens=3),
               "doc_pretrain": DocPretrainConfig(batch_size=2)}
    model, run = learn(store, worker_on(store, "clerk", job, tiny_core), Budget(steps=3), lora=LoraSpec(rank=2, alpha=4),
                       show_progress=False, learners=["context_distill", "doc_pretrain"], configs=configs)
    adapters.detach(model)
    assert run.steps == 3 and run.learners == ["context_distill", "doc_pretrain"]
    trained = [json.dumps(e.messages) + e.completion for e in store.episodes("clerk")]
    assert len(trained) == 6 + 6  # context_distill's samples, and the documents doc_pretrain read
    assert sum(e.origin == "doc_pretrain" and e.info["document"] in ("teams.md", "halvex.md")
               for e in store.episodes("clerk")) == 6
    assert not any(q["question"] in text for q in QUESTIONS for text in trained)
    assert {e.id for e in store.episodes("clerk")} <= set(store.trained_on("clerk", run.version))


def test_self_study_keeps_only_supported_questions_that_are_not_held_out():
    from apiary.learners.self_study import supported

    document = "Project Halvex is led by Mirel Dostrand."
    assert supported("Who leads Halvex?", "Mirel Dostrand.", document, set())
    assert not supported("Who leads Halvex?", "Orla Venn", document, set())  # the document does not say so
    assert not supported("Who leads Halvex", "Mirel Dostrand", document, set())  # not a question
    assert not supported("Who runs Project Halvex?", "Mirel Dostrand", document, {"Who runs Project Halvex?"})
    assert not supported("Who leads Halvex?", "", document, set())


def test_a_self_study_run_learns_from_its_own_questions_only(tmp_path, tiny_core, job, monkeypatch):
    """The tiny random model writes no real questions, so one written question is put in its mouth: the run
    trains on it and on nothing held out."""
    from apiary.jobs.base import Task
    from apiary.learners.self_study import SelfStudyConfig, SelfStudyLearner

    written = Task(question="Who leads Project Halvex?", answer="Mirel Dostrand", metadata={"doc": "halvex.md"})
    monkeypatch.setattr(SelfStudyLearner, "write_questions", lambda self, documents: [written])
    store = Store(tmp_path / "hive")
    model, run = learn(store, worker_on(store, "clerk", job, tiny_core), Budget(steps=1), lora=LoraSpec(rank=2, alpha=4),
                       show_progress=False, learners=["self_study"], configs={"self_study": SelfStudyConfig(samples=2)})
    adapters.detach(model)
    episodes = store.episodes("clerk")
    assert run.steps == 1 and len(episodes) == 2 and {e.origin for e in episodes} == {"self_study"}
    assert all(e.messages[-1]["content"].startswith("Who leads Project Halvex?") for e in episodes)


def test_self_study_writes_questions_with_the_tiny_model_without_failing(model, tiny_core, job):
    from apiary.learners.self_study import SelfStudyConfig, SelfStudyLearner

    learner = SelfStudyLearner(model, tiny_core.tokenizer, job, SelfStudyConfig(), tiny_core.stop_token_ids)
    step = learner.learn(job.source.all_documents())
    assert step.stats.extra["questions_kept"] >= 0
    # writing the questions is sampling: it counts toward a --minutes budget even when none is kept (it once did
    # not, and a 5-minute self_study run went on for 25)
    assert step.stats.generate_seconds > 0


def test_recall_moves_the_worker_without_the_document_toward_the_core_reading_it(model, tiny_core, job):
    from apiary.learners.recall import RecallConfig, RecallLearner
    from apiary.learners.self_distill import DistillRow

    tok = tiny_core.tokenizer
    learner = RecallLearner(model, tok, job, RecallConfig(learning_rate=1e-2, samples=2), tiny_core.stop_token_ids,
                            torch.Generator().manual_seed(0))
    tasks = job.source.train(0, 2)
    answers = learner.teacher_answers(tasks)  # the tiny model's answers hold no real answer: learn them all here
    rows = [DistillRow(s, t, c) for task, cs in zip(tasks, answers) for c in cs if c
            for s, t in [learner.prompts(task)]]
    assert rows and all(r.teacher_prompt != r.student_prompt for r in rows)

    def gap() -> float:
        with torch.no_grad():
            return float(learner.loss(rows))

    before = gap()
    for _ in range(5):
        model.train()
        apply_update(model, learner.optimizer, learner.loss(rows), 1.0)
    assert gap() < 0.5 * before
    with torch.no_grad(), model.disable_adapter():  # the teacher is the core: learning left it as it was
        student = pair_logits(model, [(r.student_prompt, r.completion) for r in rows], tok.pad_token_id)
        teacher = pair_logits(model, [(r.teacher_prompt, r.completion) for r in rows], tok.pad_token_id)
        assert float(forward_kl(student, teacher)) == pytest.approx(before, rel=1e-4)


def test_recall_learns_only_the_core_answers_that_hold_the_answer(model, tiny_core, job, monkeypatch):
    from apiary.learners.recall import RecallConfig, RecallLearner

    tok = tiny_core.tokenizer
    learner = RecallLearner(model, tok, job, RecallConfig(samples=2), tiny_core.stop_token_ids)
    tasks = job.source.train(0, 2)
    said = {"Zanthe-3": ["Room Zanthe-3.", "Room Zorbel-9."], "Mirel Dostrand": ["Orla Venn.", "I do not know."]}
    monkeypatch.setattr(RecallLearner, "teacher_answers", lambda self, ts: [
        [tok(text, add_special_tokens=False).input_ids for text in said[t.answer]] for t in ts])
    step = learner.learn(tasks)
    assert [(e.completion, e.score, e.origin) for e in step.episodes] == [("Room Zanthe-3.", 1.0, "recall")]
    assert step.stats.trained_samples == 1 and step.stats.reward_mean == pytest.approx(0.25) and step.stats.loss > 0
    plain = Task(question="What does teams.md say?", answer="", metadata={"doc": "teams.md"})
    assert learner.kept(plain, "The team meets somewhere.") and not learner.kept(plain, "  ")


def test_forward_kl_is_zero_for_equal_distributions_and_reaches_the_student_only():
    student = torch.randn(3, 7, requires_grad=True)
    teacher = torch.randn(3, 7, requires_grad=True)
    assert float(forward_kl(teacher.detach(), teacher.detach())) == pytest.approx(0.0, abs=1e-6)
    loss = forward_kl(student, teacher)
    assert float(loss) > 0
    loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0 and teacher.grad is None


def test_recall_with_an_anchor_also_pulls_toward_the_core_on_general_prompts(model, tiny_core, job, monkeypatch):
    from apiary.learners.recall import RecallConfig, RecallLearner

    tok = tiny_core.tokenizer
    learner = RecallLearner(model, tok, job, RecallConfig(samples=1, anchor_weight=1.0, anchor_prompts_per_step=2,
                                                          anchor_new_tokens=4), tiny_core.stop_token_ids)
    monkeypatch.setattr(RecallLearner, "teacher_answers", lambda self, ts: [
        [tok("Room Zanthe-3.", add_special_tokens=False).input_ids] for _ in ts])
    step = learner.learn(job.source.train(0, 2))
    assert step.stats.trained_samples == 1 and step.stats.extra["anchor_kl"] >= 0
    with pytest.raises(ValueError, match="anchor_weight"):
        RecallConfig(anchor_weight=-1)
