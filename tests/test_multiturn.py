"""Multi-turn jobs: a scripted fake game and a tiny model; TextArena seeding; the tool job's errors."""

from __future__ import annotations

import json
import random

import pytest
import torch

from apiary.evals.heldout import evaluate
from apiary.hive.training import Budget, learn
from apiary.hive.worker import worker_on
from apiary.jobs.base import Job, Turn
from apiary.jobs.multiturn import ENVIRONMENT_SCORER, SeededSource
from apiary.jobs.spec import load_job
from apiary.jobs.textarena import TextArenaEpisode
from apiary.jobs.tools import ROOMS, ToolEpisode, tools_job
from apiary.learners.grpo import GRPOConfig, GRPOLearner, masked_logprobs, micro_batches, policy_loss
from apiary.learners.play import play
from apiary.models import adapters
from apiary.models.adapters import LoraSpec
from apiary.models.generate import SamplingParams
from apiary.store.export import export
from apiary.store.store import Store


class CountingGame:
    """Reply three times; a reply with a digit in it is a valid move. The seed sets the opening line."""

    def __init__(self, seed: int):
        self.seed, self.moves = seed, 0

    def start(self) -> str:
        return f"Game {self.seed}: say a number, three times."

    def step(self, reply: str) -> Turn:
        if not any(c.isdigit() for c in reply):
            return Turn(message="error: no number in that reply", invalid=True)
        self.moves += 1
        if self.moves == 3:
            return Turn(message="", done=True, score=1.0, success=True)
        return Turn(message=f"ok, {3 - self.moves} to go")


def counting_job(heldout: int = 3, max_turns: int = 4) -> Job:
    return Job(name="counting", source=SeededSource("counting", heldout), scorer=ENVIRONMENT_SCORER, max_tokens=5,
               environment=lambda task: CountingGame(task.metadata["seed"]), max_turns=max_turns)


def _segments(mask: list[int]) -> list[tuple[int, int, int]]:
    """(value, start, end) runs of a 0/1 mask."""
    runs, start = [], 0
    for i in range(1, len(mask) + 1):
        if i == len(mask) or mask[i] != mask[start]:
            runs.append((mask[start], start, i))
            start = i
    return runs


def _play(core, job, samples=2, seed=0, temperature=1.0):
    return play(core.model, core.tokenizer, job, job.source.train(0, 2), samples,
                SamplingParams(max_new_tokens=job.max_tokens, temperature=temperature), core.stop_token_ids,
                torch.Generator().manual_seed(seed))


def test_turn_mask_covers_exactly_the_workers_tokens(tiny_core):
    job = counting_job()
    for t in _play(tiny_core, job):
        replies = [m["content"] for m in t.messages if m["role"] == "assistant"]
        assert t.turns == len(replies) and len(t.ids) == len(t.model_mask)
        worker_runs = [(s, e) for v, s, e in _segments(t.model_mask) if v == 1]
        assert len(worker_runs) == len(replies)  # one run of loss-bearing tokens per turn, nothing else
        for (start, end), reply in zip(worker_runs, replies):
            assert core_decode(tiny_core, t.ids[start:end]) == reply
        for v, start, end in _segments(t.model_mask):
            if v == 0:  # framing and the environment's words: never the worker's
                text = tiny_core.tokenizer.decode(t.ids[start:end])
                assert "<|im_start|>user" in text and "<|im_start|>assistant" in text
        env_messages = [m["content"] for m in t.messages[1:] if m["role"] == "user"]
        assert all(m in tiny_core.tokenizer.decode(t.ids) for m in env_messages)


def core_decode(core, ids):
    return core.tokenizer.decode(ids, skip_special_tokens=True)


def test_loss_reaches_every_worker_turn_and_no_environment_token(tiny_core):
    job = counting_job()
    transcripts = [t for t in _play(tiny_core, job, samples=2) if t.turns >= 2][:2]
    assert transcripts, "the fake game should take the tiny model more than one turn"
    model = adapters.attach(tiny_core.model, LoraSpec())
    logprobs_C_L, mask_C_L = masked_logprobs(model, transcripts, tiny_core.tokenizer.pad_token_id)
    logprobs_C_L.retain_grad()
    policy_loss(logprobs_C_L, mask_C_L, torch.tensor([1.0, -1.0][:len(transcripts)])).backward()
    for row, t in enumerate(transcripts):
        grad = logprobs_C_L.grad[row, :len(t.ids)]
        touched = (grad != 0).int().tolist()
        assert touched == t.model_mask  # every worker token of every turn, and nothing else
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "lora" in n)
    adapters.detach(model)


def test_learner_step_updates_from_whole_episodes(tiny_core):
    job = counting_job()
    model = adapters.attach(tiny_core.model, LoraSpec())
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    learner = GRPOLearner(model, tiny_core.tokenizer, job, GRPOConfig(prompts_per_step=2, samples_per_prompt=4, learning_rate=1e-2),
                          tiny_core.stop_token_ids, torch.Generator().manual_seed(1))
    step = learner.learn(job.source.train(0, 2))
    assert len(step.episodes) == 8 and all(e.info["turns"] >= 1 for e in step.episodes)
    if step.stats.trained_samples:  # some group had different scores: the adapter moved
        assert any(not torch.equal(before[n], p) for n, p in model.named_parameters() if p.requires_grad)
        assert step.stats.trained_tokens > 0
    adapters.detach(model)


def test_same_seed_same_episode(tiny_core):
    job = counting_job()
    a, b = _play(tiny_core, job, seed=7), _play(tiny_core, job, seed=7)
    assert [t.ids for t in a] == [t.ids for t in b] and [t.score for t in a] == [t.score for t in b]


def test_textarena_seeding_is_per_game_and_leaves_global_random_alone():
    random.seed(123)
    expected = [random.random() for _ in range(3)]
    random.seed(123)
    first, second = TextArenaEpisode("GuessTheNumber-v0", 5), TextArenaEpisode("GuessTheNumber-v0", 5)
    assert random.random() == expected[0]  # making two games drew nothing from the global stream
    # interleave the two games: each still answers exactly like the other
    for guess in ("[10]", "[3]", "[15]"):
        assert first.step(guess) == second.step(guess)
    assert random.random() == expected[1]
    other = TextArenaEpisode("GuessTheNumber-v0", 6)
    replies = [other.step(f"[{n}]").message for n in range(1, 8)]
    again = TextArenaEpisode("GuessTheNumber-v0", 6)
    assert [again.step(f"[{n}]").message for n in range(1, 8)] == replies


def test_textarena_invalid_moves_are_turns_and_end_the_game_at_the_second():
    game = TextArenaEpisode("GuessTheNumber-v0", 1)
    assert "Guess The Number" in game.start()
    turn = game.step("no brackets here")
    assert turn.invalid and not turn.done and "invalid move" in turn.message.lower()
    turn = game.step("still none")
    assert turn.invalid and turn.done and turn.score == 0.0 and not turn.success


def test_tool_calls_malformed_ones_come_back_as_messages():
    job = tools_job(heldout_size=4)
    task = next(t for t in job.source.train(0, 20) if "room number" in t.question)
    name = task.question.split("room number of ")[1].split(" plus")[0]
    env = ToolEpisode(task)
    for bad in ("I think it is 5", "calc: 2 +", "calc: __import__('os').getcwd()", "calc: 1/0", "lookup: Nobody", "calc:"):
        turn = env.step(bad)
        assert turn.invalid and not turn.done and turn.message.startswith("error:")
    looked = env.step(f"lookup: {name}")
    assert looked.message == str(ROOMS[name]) and not looked.invalid and not looked.done
    assert env.step("calc: 12 * (3 + 4)").message == "84"
    right = env.step(f"answer: {task.answer}")
    assert right.done and right.success and right.score == 1.0
    wrong = ToolEpisode(task).step("answer: 0")
    assert wrong.done and not wrong.success and wrong.score == pytest.approx(0.2)  # well-formed, wrong: partial credit only
    assert ToolEpisode(task).step("no idea").score == 0.0


def test_heldout_seeds_never_train():
    for job in (load_job("ta:GuessTheNumber-v0", ["heldout_size=20"]), tools_job(heldout_size=30)):
        held = {t.question for t in job.source.heldout()}
        assert held and not held & {t.question for t in job.source.train(0, 500)}


def test_stored_episodes_round_trip_with_every_turn(tiny_core, tmp_path):
    store = Store(tmp_path / "hive")
    job = counting_job()
    _, summary = learn(store, worker_on(store, "counter", job, tiny_core), Budget(steps=1),
                       GRPOConfig(prompts_per_step=2, samples_per_prompt=2), show_progress=False)
    episodes = store.episodes("counter")
    assert len(episodes) == summary.episodes == 4
    for e in episodes:
        turns = [m for m in e.messages if m["role"] == "assistant"] + [{"role": "assistant", "content": e.completion}]
        assert len(turns) == e.info["turns"] and e.messages[0]["content"].startswith("Game ")
        said = [m["content"] for m in e.messages if m["role"] == "user"] + [e.info["final_message"]]
        assert e.info["invalid"] == sum(m.startswith("error:") for m in said)
    rows = [json.loads(line) for line in (tmp_path / "out" / "episodes.jsonl").read_text().splitlines()] \
        if export(store, tmp_path / "out", "jsonl") else []
    assert [r["info"] for r in rows] == [e.info for e in episodes]  # JSON columns are JSON in JSONL


def test_heldout_eval_reports_long_horizon_metrics(tiny_core):
    result = evaluate(tiny_core.model, tiny_core.tokenizer, counting_job(heldout=3), tiny_core.stop_token_ids)
    summary = result.details["long_horizon"]
    assert result.n == 3 and summary["episodes"] == 3 and result.score == summary["success_rate"]
    assert 0.0 <= summary["invalid_rate"] <= 1.0 and summary["mean_turns"] >= 1
    assert sum(b["episodes"] for b in summary["score_by_length"].values()) == 3


def test_single_turn_learners_refuse_a_multi_turn_job(tiny_core, tmp_path):
    store = Store(tmp_path / "hive")
    with pytest.raises(ValueError, match="multi-turn"):
        learn(store, worker_on(store, "counter", counting_job(), tiny_core), Budget(steps=1), learners=["rl", "practice"],
              show_progress=False)


def test_cli_learns_a_textarena_game_and_reports_long_horizon_metrics(tmp_path, tiny_core_dir):
    from typer.testing import CliRunner

    from apiary.cli import app

    args = ["learn", "ta:GuessTheNumber-v0", "heldout_size=2", "max_turns=2", "--worker", "guess", "--steps", "1",
            "--prompts", "1", "--samples", "2", "--max-new-tokens", "3", "--hive", str(tmp_path), "--core",
            str(tiny_core_dir), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["heldout_items"] == 2 and report["episodes"] == 2 and report["before"] == 0.0
    assert set(report["long_horizon"]) == {"before", "after"}
    assert report["long_horizon"]["after"]["episodes"] == 2 and report["long_horizon"]["after"]["mean_turns"] <= 2
    bad = CliRunner().invoke(app, ["learn", "ta:GuessNumber-v0", "--worker", "g", "--steps", "1", "--hive", str(tmp_path),
                                   "--core", str(tiny_core_dir), "--json"])
    assert bad.exit_code == 2 and "did you mean GuessTheNumber-v0" in json.loads(bad.stdout)["error"]


def test_multi_turn_jobs_from_toml(tmp_path):
    (tmp_path / "guess.toml").write_text('source = "textarena"\ngame = "GuessTheNumber-v0"\nheldout_size = 5\nname = "g"\n')
    job = load_job(tmp_path / "guess.toml")
    assert job.name == "g" and job.multi_turn and len(job.source.heldout()) == 5
    assert "Guess The Number" in job.messages(job.source.heldout()[0])[-1]["content"]
    (tmp_path / "tools.toml").write_text('source = "tools"\nmax_turns = 3\n')
    assert load_job(tmp_path / "tools.toml").max_turns == 3
    (tmp_path / "bad.toml").write_text('source = "textarena"\n')
    with pytest.raises(ValueError, match="needs 'game'"):
        load_job(tmp_path / "bad.toml")
    (tmp_path / "worse.toml").write_text('source = "tools"\nscorer = "exact"\n')
    with pytest.raises(ValueError, match="do not apply"):
        load_job(tmp_path / "worse.toml")


def test_attempts_play_whole_episodes_that_can_get_feedback(tmp_path, tiny_core_dir):
    from apiary import Hive

    hive = Hive(tmp_path, core=str(tiny_core_dir))
    episodes = hive.attempt(counting_job(), "counter", 2, samples=2)
    assert len(episodes) == 4 and all(e.id and e.origin == "attempt" and e.info["turns"] >= 1 for e in episodes)
    hive.feedback(episodes[0].id, reward=1.0)
    assert hive.feedback_log("counter")[0]["episode_id"] == episodes[0].id


def test_micro_batches_bound_rows_times_longest_and_keep_order():
    items = [(n,) for n in (10, 10, 10, 30, 5, 40)]
    groups = micro_batches(items, 60, length=lambda item: item[0])
    assert [x for g in groups for x in g] == items
    assert all(len(g) * max(x[0] for x in g) <= 60 for g in groups)
    assert groups == [[(10,), (10,), (10,)], [(30,), (5,)], [(40,)]]
    assert micro_batches([(100,), (5,)], 60, length=lambda item: item[0]) == [[(100,)], [(5,)]]  # alone when too long


def test_micro_batches_count_the_opening_prompt(tiny_core):
    transcripts = _play(tiny_core, counting_job())[:4]
    sizes = [len(t.prompt_ids) + len(t.ids) for t in transcripts]
    items = [(t, 0.0) for t in transcripts]
    assert all(len(g) == 1 for g in micro_batches(items, 2 * min(sizes) - 1))  # no two rows fit with their prompts
    assert micro_batches(items, len(items) * max(sizes)) == [items]


def test_worker_token_logprobs_match_the_full_projection(tiny_core):
    from apiary.models.logprobs import completion_logprobs

    transcripts = _play(tiny_core, counting_job())[:3]
    pad = tiny_core.tokenizer.pad_token_id
    with torch.no_grad():
        only, mask = masked_logprobs(tiny_core.model, transcripts, pad)
        full, _ = completion_logprobs(tiny_core.model, [t.prompt_ids for t in transcripts], [t.ids for t in transcripts],
                                      [0, 1, 2], pad)
    assert torch.allclose(only, full * mask, atol=1e-5) and int(mask.sum()) == sum(sum(t.model_mask) for t in transcripts)


class UnevenGame:
    """Ends after 1 + seed % 6 replies; its messages' lengths vary by seed, so rows differ in length every turn."""

    def __init__(self, seed: int):
        self.seed, self.moves = seed, 0

    def start(self) -> str:
        return f"Game {self.seed}."

    def step(self, reply: str) -> Turn:
        self.moves += 1
        if self.moves == 1 + self.seed % 6:
            return Turn(message="", done=True, score=1.0, success=True)
        return Turn(message="go on " * (4 + (self.seed + self.moves) % 5))


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_later_turns_read_only_new_tokens_on_kept_caches_and_play_the_same_tokens(tiny_core, monkeypatch, temperature):
    """Rows of different lengths, ending at different turns: going on from each reply's kept cache gives the
    tokens, masks and sampler log-probs that reading the whole conversation every turn gives, and reads less."""
    from apiary.models import prefix

    job = Job(name="uneven", source=SeededSource("uneven", 3), scorer=ENVIRONMENT_SCORER, max_tokens=5,
              environment=lambda task: UnevenGame(task.metadata["seed"]), max_turns=6)
    read = {True: 0, False: 0}
    extend, advance = prefix.extend, prefix.PrefillJob.advance

    def counted(reuse):
        def extend_counted(model, rows, suffixes, pad_id):
            read[reuse] += sum(len(s) for s in suffixes)
            return extend(model, rows, suffixes, pad_id)

        def advance_counted(self, model, budget=0):
            read[reuse] += int(self.ids_P_S.ne(tiny_core.tokenizer.pad_token_id).sum()) + len(self.prefix)
            return advance(self, model, budget)
        return extend_counted, advance_counted

    runs = {}
    for reuse in (False, True):
        extend_counted, advance_counted = counted(reuse)
        monkeypatch.setattr("apiary.models.generate.extend", extend_counted)
        monkeypatch.setattr(prefix.PrefillJob, "advance", advance_counted)
        runs[reuse] = play(tiny_core.model, tiny_core.tokenizer, job, job.source.train(0, 4), 3,
                           SamplingParams(max_new_tokens=job.max_tokens, temperature=temperature), tiny_core.stop_token_ids,
                           torch.Generator().manual_seed(0), reuse_cache=reuse)
    assert len({t.turns for t in runs[False]}) > 1  # episodes of different lengths
    for old, new in zip(runs[False], runs[True]):
        assert (new.ids, new.model_mask, new.turns, new.done) == (old.ids, old.model_mask, old.turns, old.done)
        assert new.sampler_logprobs == pytest.approx(old.sampler_logprobs, abs=1e-4)
    if temperature > 0:  # greedy samples of one task stay identical, and the reference reads such rows once
        assert read[True] < read[False] / 2
