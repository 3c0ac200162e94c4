import json

import pytest

from apiary.jobs.base import Job, Task
from apiary.jobs.function import FunctionSource
from apiary.jobs.jsonl import JobFileError, JsonlSource
from apiary.jobs.reasoning_gym import UnknownTaskError
from apiary.jobs.scoring import Scorer, contains, exact, first_number, numeric, regex, scorer
from apiary.jobs.spec import load_job, parse_overrides


def test_first_number_reads_signs_commas_decimals():
    assert first_number("-4") == -4
    assert first_number("The answer is 1,200.") == 1200
    assert first_number("x = 3.5 or 7") == 3.5
    assert first_number("no digits") is None


def test_numeric_scorer_gives_no_credit_to_a_later_number():
    assert numeric("13", "13") == 1.0
    assert numeric("The answer is 13.", "13") == 1.0
    assert numeric("1. 6 + 7 = 13", "13") == 0.0  # the first number is 1
    assert numeric("12", "13") == 0.0


def test_other_scorers():
    assert exact("Paris.\nmore", "paris") == 1.0
    assert exact("Paris is nice", "Paris") == 0.0
    assert contains("it is PARIS", "paris") == 1.0
    assert regex("order #A123", r"#A\d+") == 1.0
    with pytest.raises(ValueError, match="unknown scorer"):
        scorer("fuzzy")


def test_reasoning_gym_heldout_is_disjoint_from_train(chain_sum_job):
    held = {t.question for t in chain_sum_job.source.heldout()}
    train = {t.question for t in chain_sum_job.source.train(0, 2000)}
    assert len(held) == 100  # chain_sum(2 terms, 1 digit) has 200 distinct problems: half are held out
    assert held.isdisjoint(train)
    assert len(train) == 100


def test_reasoning_gym_train_stream_is_deterministic(chain_sum_job):
    assert chain_sum_job.source.train(5, 10) == chain_sum_job.source.train(5, 10)
    assert chain_sum_job.scorer.name == "numeric"
    assert "Answer with only the number." in chain_sum_job.messages(chain_sum_job.source.heldout()[0])[-1]["content"]


def test_unknown_reasoning_gym_task_lists_close_names():
    with pytest.raises(UnknownTaskError, match="chain_sum"):
        load_job("rg:chain_summ")


def test_bad_reasoning_gym_config_is_explained():
    with pytest.raises(ValueError, match="bad config"):
        load_job("rg:chain_sum", ["min_terms=5", "max_terms=2"])


def test_overrides_are_typed():
    assert parse_overrides(["a=2", "b=0.5", "c=true", "d=words"]) == {"a": 2, "b": 0.5, "c": True, "d": "words"}
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["novalue"])


def test_toml_job_file(tmp_path):
    path = tmp_path / "job.toml"
    path.write_text('name = "sums"\ntask = "chain_sum"\nheldout_size = 20\nmax_tokens = 12\n'
                    '[config]\nmin_terms = 2\nmax_terms = 2\nmin_digits = 1\nmax_digits = 1\n')
    job = load_job(path)
    assert (job.name, job.max_tokens, len(job.source.heldout())) == ("sums", 12, 20)
    assert job.origin == {"spec": str(path), "overrides": []}


def test_malformed_toml_names_the_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\ntask = "chain_sum"\nheldout_size = = 3\n')
    with pytest.raises(JobFileError, match="line 3"):
        load_job(path)


def test_unknown_key_in_job_file(tmp_path):
    path = tmp_path / "job.toml"
    path.write_text('task = "chain_sum"\nheldout = 3\n')
    with pytest.raises(JobFileError, match="unknown key"):
        load_job(path)


def test_unknown_scorer_in_job_file_names_the_file(tmp_path):
    path = tmp_path / "job.toml"
    path.write_text('task = "chain_sum"\nscorer = "nummeric"\n')
    with pytest.raises(JobFileError, match=f"{path}: scorer: unknown scorer 'nummeric'"):
        load_job(path)
    path.write_text('task = "chain_sum"\nheldout_scorer = "exakt"\n')
    with pytest.raises(JobFileError, match="job.toml: heldout_scorer: unknown scorer 'exakt'"):
        load_job(path)


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_jsonl_job_splits_by_prompt(tmp_path):
    data = tmp_path / "data.jsonl"
    write_jsonl(data, [{"prompt": f"capital of country {i}?", "answer": f"city {i}"} for i in range(40)])
    (tmp_path / "job.toml").write_text('name = "capitals"\nsource = "jsonl"\npath = "data.jsonl"\nscorer = "contains"\nheldout_size = 10\n')
    job = load_job(tmp_path / "job.toml")
    held = {t.question for t in job.source.heldout()}
    train = {t.question for t in job.source.train(0, 100)}
    assert len(held) == 10 and len(train) == 30 and held.isdisjoint(train)
    assert job.score(Task("q", "city 3"), "It is City 3.") == 1.0


def test_jsonl_job_whose_records_share_one_prompt_is_refused_when_loaded(tmp_path):
    """It once loaded, ran the "before" eval, then crashed with ZeroDivisionError: nothing was left to train on."""
    write_jsonl(tmp_path / "data.jsonl", [{"prompt": "capital of France?", "answer": a} for a in ("Paris", "paris", "PARIS")])
    (tmp_path / "job.toml").write_text('source = "jsonl"\npath = "data.jsonl"\n')
    with pytest.raises(JobFileError, match=r"data.jsonl: all 3 records share one prompt; a job needs at least 2 different"):
        load_job(tmp_path / "job.toml")


def test_malformed_jsonl_names_the_line(tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text('{"prompt": "a", "answer": "1"}\n{"prompt": "b", "answer": "2"}\n{"prompt": "c", answer: 3}\n')
    with pytest.raises(JobFileError, match=r"data.jsonl:3"):
        JsonlSource(data)
    data.write_text('{"prompt": "a", "answer": "1"}\n{"answer": "2"}\n')
    with pytest.raises(JobFileError, match=r"data.jsonl:2: needs"):
        JsonlSource(data)


def test_function_job_is_disjoint_and_scored():
    source = FunctionSource(lambda i: (f"double {i % 50}", str(2 * (i % 50))), heldout_size=10)
    job = Job("double", source, Scorer("numeric", numeric), instruction="Only the number.")
    held = {t.question for t in job.source.heldout()}
    assert len(held) == 10 and held.isdisjoint({t.question for t in job.source.train(0, 200)})
    assert job.score(job.source.heldout()[0], job.source.heldout()[0].answer) == 1.0


def test_scorer_out_of_range_is_an_error():
    job = Job("bad", FunctionSource(lambda i: (str(i), "1"), heldout_size=2), Scorer("bad", lambda c, a: 2.0))
    with pytest.raises(ValueError, match="outside"):
        job.score(Task("q", "a"), "c")


def test_numeric_scorer_decides_once_the_first_number_is_complete():
    decided = scorer("numeric").decided
    assert not decided("The answer is")
    assert not decided("The answer is 1")  # could become 12
    assert not decided("The answer is 1,")  # could become 1,200
    assert not decided("It is 3.")  # could become 3.5
    assert decided("The answer is 12 because")
    assert decided("12<")
    assert scorer("contains").decided is None
    assert scorer("exact").decided("Paris\n") and not scorer("exact").decided("Paris")


def test_function_job_with_a_small_space_keeps_half_for_training():
    source = FunctionSource(lambda i: (f"What is 2 x {i % 97}?", str(2 * (i % 97))))  # default heldout_size=100
    held = {t.question for t in source.heldout()}
    train = {t.question for t in source.train(0, 500)}
    assert len(held) == 48 and len(train) == 49 and held.isdisjoint(train)
