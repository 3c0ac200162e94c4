"""Per-giver agreement: the flag rule on synthetic counts, the verifier's and the peers' checks on synthetic
store rows, a flagged giver's feedback held back from learning, and the report listing it."""

import math

import pytest

from apiary.evals.gate import binomial_tail
from apiary.evals.givers import FlagRule, flagged_givers, giver_agreement, verifier, worker_givers
from apiary.hive.feedback_learning import ready_workers
from apiary.hive.mix import fill_queues
from apiary.hive.report import write_report
from apiary.jobs.scoring import scorer
from apiary.learners.corrections import CorrectionsConfig
from apiary.learners.rewards import RewardsConfig
from apiary.store.feedback import make_feedback
from apiary.store.records import Episode
from apiary.store.store import Store

RULE = FlagRule()
HONEST, POISONER = ("alice", "bob"), "mallory"


def test_binomial_tail_golden_numbers():
    assert binomial_tail(0, 10, 0.3) == 1.0
    assert binomial_tail(1, 1, 0.5) == pytest.approx(0.5)
    assert binomial_tail(3, 3, 0.5) == pytest.approx(0.125)
    assert binomial_tail(2, 4, 0.5) == pytest.approx(11 / 16)
    assert binomial_tail(5, 100, 0.01) == pytest.approx(1 - sum(math.comb(100, i) * 0.01 ** i * 0.99 ** (100 - i)
                                                                 for i in range(5)))


def test_a_30_percent_wrong_giver_among_honest_ones_is_flagged():
    # mallory: 18 of 60 wrong; alice and bob together: 3 slips in 120
    assert RULE.flags(60, 18, 120, 3)


def test_an_honest_giver_beside_a_poisoner_is_not_flagged():
    # alice: 2 slips in 60; the others pooled (bob honest, mallory poisoned): 19 of 120
    assert not RULE.flags(60, 2, 120, 19)
    assert not RULE.flags(60, 5, 120, 4)  # 8% against 3%: worse, but not far beyond


def test_a_giver_with_too_few_checked_items_is_not_flagged():
    assert not RULE.flags(10, 5, 120, 0)
    assert not RULE.flags(RULE.min_items - 1, RULE.min_items - 1, 120, 0)


def test_a_sole_giver_is_never_flagged():
    assert not RULE.flags(100, 60, 0, 0)  # nobody to be far beyond
    assert not RULE.flags(100, 60, RULE.min_items - 1, 0)


def _episodes(n: int, answers: bool = True) -> list[Episode]:
    """n chain-sum-like attempts on worker w: even ones wrong ("0", scored 0), odd ones right."""
    return [Episode(id=i + 1, job="j", task_id=f"t{i}", messages=[{"role": "user", "content": f"Calculate {i} + 1 ="}],
                    completion="0" if i % 2 == 0 else str(i + 1), score=(float(i % 2) if answers else None),
                    answer=str(i + 1) if answers else None, worker="w", origin="attempt")
            for i in range(n)]


def _feedback(episodes: list[Episode], by: str, poison: float = 0.0) -> list:
    """A correction for each wrong answer, a reward for each right one; the first `poison` share of every ten
    items wrong (a wrong correction, an inverted reward)."""
    items = []
    for i, e in enumerate(episodes):
        bad = (i % 10) < round(10 * poison)
        right = e.completion == str(i + 1)
        if right:
            items.append(make_feedback(e.id, reward=0.0 if bad else 1.0, by=by))
        else:
            items.append(make_feedback(e.id, correction=str(i + 2) if bad else str(i + 1), by=by))
    return items


def _everyone(episodes):
    return [f for by in HONEST for f in _feedback(episodes, by)] + _feedback(episodes, POISONER, 0.3)


def test_the_verifier_and_the_peers_flag_the_poisoner_and_only_them():
    episodes = _episodes(60)
    givers = {g.by: g for g in giver_agreement(_everyone(episodes), {e.id: e for e in episodes}, scorer("numeric"))}
    mallory = givers[POISONER]
    assert (mallory.checked, mallory.disagreed) == (60, 18)
    assert (mallory.peer_checked, mallory.peer_disagreed) == (60, 18)
    assert mallory.flagged and "verifier disagrees with 18 of 60" in mallory.reason and "other givers" in mallory.reason
    for by in HONEST:
        assert (givers[by].checked, givers[by].disagreed, givers[by].flagged) == (60, 0, False)
        assert givers[by].peer_disagreed == 0  # one peer each way on mallory's wrong items: a tie checks nothing


def test_without_a_verifier_only_the_peers_check():
    episodes = _episodes(60, answers=False)  # served replies nobody knows the answer of
    givers = {g.by: g for g in giver_agreement(_everyone(episodes), {e.id: e for e in episodes}, None)}
    assert all(g.checked == 0 for g in givers.values())
    assert givers[POISONER].flagged and givers[POISONER].reason.startswith("other givers disagree with 18 of 60")
    assert not any(givers[by].flagged for by in HONEST)


def test_two_givers_alone_cannot_tell_which_of_them_is_wrong():
    episodes = _episodes(40, answers=False)
    feedback = _feedback(episodes, "alice") + _feedback(episodes, POISONER, 0.3)
    givers = giver_agreement(feedback, {e.id: e for e in episodes}, None)
    assert [(g.peer_checked, g.peer_disagreed, g.flagged) for g in givers] == [(40, 12, False), (40, 12, False)]


def test_preferences_are_checked_by_the_scores_of_both_episodes():
    ask = [{"role": "user", "content": "q"}]
    right = Episode(id=1, job="j", task_id="a", messages=ask, completion="5", score=1.0, answer="5")
    wrong = Episode(id=2, job="j", task_id="a", messages=ask, completion="4", score=0.0, answer="5")
    good, bad = make_feedback(1, prefer=2, by="a"), make_feedback(2, prefer=1, by="b")
    givers = {g.by: g for g in giver_agreement([good, bad], {1: right, 2: wrong}, scorer("numeric"))}
    assert (givers["a"].checked, givers["a"].disagreed) == (1, 0)
    assert (givers["b"].checked, givers["b"].disagreed) == (1, 1)


def _store(tmp_path, max_turns: int = 1, url: str | None = None) -> Store:
    store = Store(tmp_path / "hive", url)
    store.ensure_worker("w", "j", "core", {"name": "j", "scorer": "numeric", "max_turns": max_turns})
    episodes = _episodes(60)
    store.add_episodes([e.model_copy(update={"id": None}) for e in episodes])
    store.add_feedback(_everyone(episodes))
    return store


def test_the_verifier_is_the_jobs_scorer_as_the_store_records_it(tmp_path):
    store = _store(tmp_path)
    assert verifier(store.worker("w")).name == "numeric"
    assert [g.by for g in flagged_givers(store, "w", verifier(store.worker("w")))] == [POISONER]
    store.ensure_worker("game", "g", "core", {"name": "g", "scorer": "numeric", "max_turns": 8})
    store.ensure_worker("custom", "c", "core", {"name": "c", "scorer": "my_python_scorer"})
    assert verifier(store.worker("game")) is None and verifier(store.worker("custom")) is None


def test_fill_queues_holds_back_a_flagged_givers_feedback(tmp_path):
    store = _store(tmp_path)
    by = {f.id: f.by for f in store.feedback("w")}
    configs = {"corrections": CorrectionsConfig(epochs=1), "rewards": RewardsConfig(epochs=1)}
    queued = fill_queues(store, "w", configs, seed=0, held_back={POISONER}).queues
    assert {by[i] for q in queued.values() for i in q} == set(HONEST)
    assert sum(len(q) for q in queued.values()) == 120
    kept = {"corrections": CorrectionsConfig(epochs=1, skip_flagged=False, skip_conflicts=False)}
    assert POISONER in {by[i] for i in fill_queues(store, "w", kept, seed=0, held_back={POISONER}).queues["corrections"]}


def test_the_server_does_not_start_learning_for_a_flagged_givers_feedback_alone(tmp_path):
    store = _store(tmp_path)
    mine = [g for g in worker_givers(store, "w", verifier(store.worker("w")))]
    assert [g.flagged for g in mine] == [False, False, True]
    unflagged_unconflicted = [f for f in store.feedback("w", unconsumed=True) if not f.conflict and f.by != POISONER]
    assert ready_workers(store, len(unflagged_unconflicted))  # enough without mallory
    assert ready_workers(store, len(unflagged_unconflicted) + 1) == []  # mallory's unconflicted items do not count


def test_report_lists_every_giver_and_the_flagged_one_with_its_figures(tmp_path):
    store = _store(tmp_path)
    figures = write_report(store, tmp_path / "report")
    assert [g["by"] for g in figures["givers"]["w"] if g["flagged"]] == [POISONER]
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Feedback givers" in text
    assert "| w | alice | 60 | 0 of 60 (0%) | 0 of 42 (0%) |  |" in text
    assert "| w | mallory | 60 | 18 of 60 (30%) | 18 of 60 (30%) | **held back**: the job's verifier disagrees" in text


def test_a_learning_run_leaves_a_flagged_givers_feedback_out_and_records_why(tmp_path, tiny_core, chain_sum_job):
    from apiary.hive.training import Budget, learn
    from apiary.hive.worker import worker_on
    from apiary.models import adapters
    from apiary.models.adapters import LoraSpec

    store = Store(tmp_path / "hive")
    store.ensure_worker("w", chain_sum_job.name, tiny_core.name, chain_sum_job.describe())
    episodes = _episodes(60)
    store.add_episodes([e.model_copy(update={"id": None}) for e in episodes])
    store.add_feedback(_everyone(episodes))
    model, run = learn(store, worker_on(store, "w", chain_sum_job, tiny_core), Budget(), lora=LoraSpec(rank=2, alpha=4),
                       show_progress=False, learners=["corrections"],
                       configs={"corrections": CorrectionsConfig(batch_size=64, epochs=1)})
    adapters.detach(model)
    assert [g["by"] for g in run.held_back] == [POISONER] and "verifier disagrees" in run.held_back[0]["reason"]
    assert [g["by"] for g in store.table_rows("runs")[-1]["config"]["held_back"]] == [POISONER]  # the run's record
    learned = store.feedback_by_id(store.feedback_learned("w", run.version)).values()
    assert {f.by for f in learned} == set(HONEST) and all(f.kind == "correction" for f in learned)
    assert {f.by for f in store.feedback("w", "correction", unconsumed=True)} == {POISONER}


@pytest.mark.parametrize("batch_rows", [1, 7, 10_000])
def test_givers_read_in_batches_count_what_one_whole_read_counts(tmp_path, store_url, batch_rows):
    store = _store(tmp_path, url=store_url)  # rewards and corrections by three givers on each of 60 episodes
    ask = [{"role": "user", "content": "q"}]
    a, b = store.add_episodes([Episode(job="j", task_id="p", messages=ask, completion=c, score=s, answer="5", worker="w",
                                       origin="attempt") for c, s in (("5", 1.0), ("4", 0.0))])
    store.add_feedback([make_feedback(a, prefer=b, by="alice"), make_feedback(b, prefer=a, by=POISONER),
                        make_feedback(a, prefer=b, by="bob")])  # one pair, named from both of its ends
    feedback, check = store.feedback("w"), verifier(store.worker("w"))
    whole = giver_agreement(feedback, store.episodes_by_id([f.episode_id for f in feedback] + [a, b]), check)
    assert whole[2].by == POISONER and whole[2].peer_checked == 61  # the pair's preference was checked by its peers
    assert [g.figures() for g in worker_givers(store, "w", check, batch_rows=batch_rows)] == [g.figures() for g in whole]
