"""The retention suite: item scoring, cached base replies, and KL(base || model)."""

import re
from collections import Counter

import pytest
import torch

from apiary.evals import build_retention, retention, retention_candidates
from apiary.models import adapters
from apiary.models.adapters import LoraSpec


def test_item_scoring_rules():
    assert retention.item_score("Paris.", "Paris") == 1.0
    assert retention.item_score("The capital is paris", "Paris") == 1.0
    assert retention.item_score("Parisian food\nParis", "Paris") == 0.0  # first line only, whole word
    assert retention.item_score("Not really", "no") == 0.0
    assert retention.item_score("12 months", "12") == 1.0 and retention.item_score("1 or 12", "12") == 0.0
    assert retention.item_score("3 + 3 = 6", "6", "What is 3 + 3?") == 1.0  # numbers from the question are fine
    assert retention.item_score("The answer is 1.\nThe answer is 12", "12") == 0.0  # first line only


def test_each_checker_judges_its_kind_of_answer():
    assert retention.item_score("BANANA", "BANANA", checker="exact_case") == 1.0
    assert retention.item_score("Banana", "BANANA", checker="exact_case") == 0.0
    assert retention.item_score("Table.", "table", checker="only") == 1.0
    assert retention.item_score("The word is table", "table", checker="only") == 0.0
    assert retention.item_score('The first letter of "table" is "t".', "t", checker="letter") == 1.0
    assert retention.item_score("It is a T.", "t", checker="letter") == 1.0  # the article "a" is not a letter answer
    assert retention.item_score("Either t or b.", "t", checker="letter") == 0.0
    after_b = "What letter comes after B in the alphabet?"
    assert retention.item_score('The letter after "B" is "C".', "C", after_b, "letter") == 1.0  # the question's letter is fine
    assert retention.item_score("The letter after B is D.", "C", after_b, "letter") == 0.0
    assert retention.item_score("Twenty-one", "twenty one", checker="word") == 1.0
    assert retention.item_score("It has 8 legs", "8", "How many legs does a spider have?", "number") == 1.0
    assert retention.item_score("The season after summer is fall.", "autumn|fall", checker="word") == 1.0
    assert retention.item_score("The season after summer is winter.", "autumn|fall", checker="word") == 0.0
    assert retention.item_score("A rooster says cock-a-doodle-doo!", "crow|cock-a-doodle-doo", checker="word") == 1.0
    with pytest.raises(ValueError, match="unknown retention checker"):
        retention.item_score("x", "x", checker="regex")


def test_choice_checker_wants_the_answer_named_first_of_the_two_options():
    question = "Which is bigger, an elephant or a mouse?"
    assert retention.item_score("The elephant is bigger than the mouse.", "elephant", question, "choice") == 1.0
    assert retention.item_score("An elephant.", "elephant", question, "choice") == 1.0
    assert retention.item_score("A mouse is smaller than an elephant.", "elephant", question, "choice") == 0.0
    assert retention.item_score("Neither of them.", "elephant", question, "choice") == 0.0
    numbers = "Which number is bigger, seven or three?"
    assert retention.item_score("Seven is bigger than three.", "seven", numbers, "choice") == 1.0
    assert retention.item_score("Three is smaller than seven.", "seven", numbers, "choice") == 0.0


def test_shipped_suite_is_present():
    assert len(retention.prompts()) >= 30
    shipped = retention.items()
    questions = {c["question"] for c in retention.items("candidates.jsonl") + retention.items("candidates_first.jsonl")}
    assert len(shipped) >= 30 and all(item["question"] in questions for item in shipped)
    assert all(it.get("checker") is None or it["checker"] in retention.CHECKERS for it in shipped)
    first = retention.items(retention.FIRST_SUITE)
    assert len(first) == 135 and all(item in retention.items("candidates_first.jsonl") for item in first)


def test_candidates_are_the_generators_five_kinds_none_phrased_like_a_job():
    candidates = retention.items("candidates.jsonl")
    assert candidates == build_retention.all_candidates()  # the file is what the generator writes
    assert len(candidates) >= 1500 and len({c["question"] for c in candidates}) == len(candidates)
    kinds = Counter(c["kind"] for c in candidates)
    assert set(kinds) == {"fact", "word", "arithmetic", "format", "free"}
    assert min(kinds.values()) >= 0.05 * len(candidates)  # no kind is a sliver of the pool
    assert all(c.get("checker", "word") in retention.CHECKERS for c in candidates)
    job_like = re.compile(r"\d\s*(?:[-+*/x]|times|plus|minus)\s*\d|\b(?:sum|product|gcd|divisor)\b", re.IGNORECASE)
    assert not any(job_like.search(c["question"]) for c in candidates)
    assert all(c["answer"] and not c["answer"].startswith("|") and "||" not in c["answer"] for c in candidates)


def test_choice_items_name_two_options_and_the_answer_is_one_of_them():
    for c in retention_candidates.candidates():
        if c["checker"] == "choice":
            assert retention.item_score(f"{c['answer'].split('|')[0]}.", c["answer"], c["question"], "choice") == 1.0


def test_item_replies_are_generated_in_batches_one_per_item(tiny_core):
    suite = retention.items()[:12]
    replies = [retention.item_replies(tiny_core.model, tiny_core.tokenizer, tiny_core.stop_token_ids, suite, batch)
               for batch in (12, 5)]
    assert len(replies[0]) == 12 and len(replies[1]) == 12


def test_references_are_computed_once_and_cached(tmp_path, tiny_core, monkeypatch):
    first = retention.references(tiny_core, tmp_path)
    assert len(first) == len(retention.prompts())
    monkeypatch.setattr(retention, "_greedy", lambda *a, **k: pytest.fail("recomputed"))
    assert retention.references(tiny_core, tmp_path) == [list(r) for r in first]


def test_retention_kl_is_zero_at_the_base_and_grows_as_the_adapter_moves(tmp_path, tiny_core):
    replies = retention.references(tiny_core, tmp_path)
    model = adapters.attach(tiny_core.model, LoraSpec(rank=4, alpha=8))
    try:
        assert retention.retention_kl(model, None, tiny_core.tokenizer, replies) == pytest.approx(0.0, abs=1e-6)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.add_(0.05 * torch.randn_like(p))
        small = retention.retention_kl(model, None, tiny_core.tokenizer, replies)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.mul_(10)
        assert 0 < small < retention.retention_kl(model, None, tiny_core.tokenizer, replies)
    finally:
        adapters.detach(model)


@pytest.mark.real_model
def test_the_bundled_core_answers_the_shipped_items_right():
    """The suite holds items the base answers right: one batch of them, as the gate scores them."""
    from apiary.models.core import load_core

    core = load_core()
    suite = retention.items()[:retention.BATCH]
    scores = retention.item_scores(core.model, core.tokenizer, core.stop_token_ids, suite)
    assert sum(scores) >= 0.95 * len(suite)


def test_a_candidate_answers_the_items_the_same_with_its_adapter_merged(tiny_core):
    """measure_retention scores a candidate's items with its adapter merged: same greedy replies and scores."""
    suite = retention.items()[:24]
    model = adapters.attach(tiny_core.model, LoraSpec(rank=4, alpha=8))
    try:
        torch.manual_seed(0)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.5)  # a candidate that answers unlike the core
        plain = retention.item_replies(model, tiny_core.tokenizer, tiny_core.stop_token_ids, suite)
        with adapters.merged(model):
            fused = retention.item_replies(model, tiny_core.tokenizer, tiny_core.stop_token_ids, suite)
        with model.disable_adapter():
            core_only = retention.item_replies(model, tiny_core.tokenizer, tiny_core.stop_token_ids, suite)
        assert fused == plain and plain != core_only
        assert retention.score_replies(suite, fused) == retention.score_replies(suite, plain)
    finally:
        adapters.detach(model)
