"""Feedback records: what is refused (and leaves the store unchanged), what is flagged, bulk files,
and the simulated people used by the benchmarks."""

import json

import pytest

from apiary.evals.simulated_people import hint, reveal, simulate
from apiary.store.feedback import FeedbackError, load_jsonl, make_feedback
from apiary.store.records import Episode
from apiary.store.store import Store

ASK = [{"role": "user", "content": "Calculate 9 - 4 ="}]
OTHER = [{"role": "user", "content": "Calculate 2 + 2 ="}]


@pytest.fixture
def store(tmp_path, store_url):
    store = Store(tmp_path, store_url)
    store.add_episodes([
        Episode(job="j", task_id="a", messages=ASK, completion="13", score=0.0, answer="5", worker="w"),
        Episode(job="j", task_id="a", messages=ASK, completion="5", score=1.0, answer="5", worker="w"),
        Episode(job="j", task_id="b", messages=OTHER, completion="4", score=1.0, answer="4", worker="w"),
    ])
    return store


@pytest.mark.parametrize("make, reason", [
    (lambda: make_feedback(99, reward=0.5), "no episode 99"),
    (lambda: make_feedback(1, reward=1.5), r"reward must be a number in \[0, 1\]"),
    (lambda: make_feedback(1, reward=-0.1), r"\[0, 1\]"),
    (lambda: make_feedback(1, reward=float("nan")), r"\[0, 1\]"),
    (lambda: make_feedback(1, reward="high"), r"\[0, 1\]"),
    (lambda: make_feedback(1, correction="   "), "empty correction"),
    (lambda: make_feedback(1, critique=""), "empty critique"),
    (lambda: make_feedback(1, prefer=42), "no known other episode"),
    (lambda: make_feedback(1, prefer=1), "two different episodes"),
    (lambda: make_feedback(1, prefer=3), "different prompts"),
    (lambda: make_feedback(1), "exactly one"),
    (lambda: make_feedback(1, reward=1.0, correction="5"), "exactly one"),
])
def test_bad_feedback_is_refused_with_a_reason_and_nothing_is_written(store, make, reason):
    with pytest.raises(FeedbackError, match=reason):
        store.add_feedback([make()])
    assert store.feedback() == []


def test_one_bad_item_refuses_the_whole_batch(store):
    good = make_feedback(1, correction="5")
    with pytest.raises(FeedbackError, match="item 2: no episode 7 in this hive; nothing was recorded"):
        store.add_feedback([good, make_feedback(7, reward=0.0)])
    assert store.feedback() == []


def test_contradictions_are_kept_and_flagged(store):
    first = store.add_feedback([make_feedback(1, reward=0.0), make_feedback(1, correction="5"), make_feedback(2, prefer=1)])
    assert [f.conflict for f in first] == [None, None, None]
    later = store.add_feedback([
        make_feedback(1, reward=0.9),  # far from the earlier 0.0, and high for a corrected answer
        make_feedback(1, correction="6"),
        make_feedback(1, prefer=2),  # the opposite of 2 over 1
        make_feedback(1, critique="too high"),  # words never contradict
    ], )
    assert "contradicts reward 0" in later[0].conflict
    assert "different correction" in later[1].conflict
    assert "opposite preference" in later[2].conflict
    assert later[3].conflict is None
    assert len(store.feedback()) == 7  # nothing overwritten
    assert [f.id for f in store.feedback(kind="correction")] == [first[1].id, later[1].id]


def test_jsonl_file_names_the_bad_line_and_loads_all_or_nothing(tmp_path, store):
    path = tmp_path / "fb.jsonl"
    path.write_text('{"episode_id": 1, "correction": "5"}\n\n{"episode_id": 2, "reward": 2}\n')
    with pytest.raises(FeedbackError, match="fb.jsonl line 3: reward must be"):
        load_jsonl(path)
    path.write_text('{"episode_id": 1, "correction": "5"}\n{"episode_id": 1, "reward": 1\n')
    with pytest.raises(FeedbackError, match="line 2: not valid JSON"):
        load_jsonl(path)
    path.write_text('{"episode_id": 1, "score": 1}\n')
    with pytest.raises(FeedbackError, match="unknown field.*score"):
        load_jsonl(path)
    path.write_text('{"episode_id": 1, "critique": "too high"}\n{"episode_id": 9, "reward": 1}\n')
    with pytest.raises(FeedbackError, match="fb.jsonl line 2: no episode 9"):
        store.add_feedback(*load_jsonl(path))
    assert store.feedback() == []
    path.write_text('{"episode_id": 1, "critique": "too high", "by": "ann"}\n{"id": 2, "prefer": 1}\n')
    added = store.add_feedback(*load_jsonl(path))
    assert [(f.kind, f.by) for f in added] == [("critique", "ann"), ("preference", "user")]


def test_feedback_log_and_worker_filter(store):
    store.add_feedback([make_feedback(1, critique="too high")])
    log = store.feedback_log("w")
    assert len(log) == 1 and log[0]["learned_by_version"] is None and log[0]["text"] == "too high"
    assert store.feedback_log("someone-else") == []


def test_feedback_not_yet_learned_is_counted_by_the_database(store):
    from apiary.store.records import AdapterVersion

    store.ensure_worker("w", "j", "core", {})
    first, second = store.add_feedback([make_feedback(1, critique="too high"), make_feedback(2, reward=1.0)])
    assert store.count_feedback("w", unconsumed=True) == 2 == len(store.feedback("w", unconsumed=True))
    store.add_adapter_version(AdapterVersion(worker="w", version=1, parent=0, path="a", step=1), [], [first.id])
    assert store.count_feedback("w", unconsumed=True) == 1 and store.count_feedback("w") == 2
    assert store.count_feedback("someone-else") == 0


def _episodes(store):
    return store.episodes("w")


def test_simulated_people(store):
    episodes = _episodes(store)
    wrong = episodes[0]
    assert "5" in reveal(wrong)
    assert "added where the problem subtracts" in hint(wrong)
    assert "too high" in hint(wrong.model_copy(update={"completion": "7"}))
    assert "too low" in hint(wrong.model_copy(update={"completion": "-3"}))
    assert "starts with something other" in hint(wrong.model_copy(update={"completion": "9 - 4 = 5"}))
    assert "no number" in hint(wrong.model_copy(update={"completion": "I do not know"}))
    corrections = simulate(episodes, "correction", 10)
    assert [(f.episode_id, f.text) for f in corrections] == [(1, "5")]  # only the wrong answer is corrected
    assert sorted(f.reward for f in simulate(episodes, "reward", 10)) == [0.0, 1.0, 1.0]
    prefs = simulate(episodes, "preference", 10)
    assert [(f.episode_id, f.other_episode_id) for f in prefs] == [(2, 1)]  # the right answer over the wrong one
    with pytest.raises(ValueError, match="unknown kind"):
        simulate(episodes, "vibes", 1)
    # everything simulated is accepted by the store's rules
    for kind in ("reward", "correction", "critique", "hint", "preference"):
        assert store.add_feedback(simulate(episodes, kind, 10))


def test_feedback_records_export(tmp_path, store):
    from apiary.store.export import export

    store.add_feedback([make_feedback(1, correction="5")])
    written = export(store, tmp_path / "out", "jsonl")
    rows = [json.loads(line) for line in (tmp_path / "out" / "feedback.jsonl").read_text().splitlines()]
    assert written["feedback"]["rows"] == 1 and rows[0]["text"] == "5"
