"""Exact and near-duplicate held-out items in training data are found; different problems are not."""

from apiary.evals.contamination import find, normalise


def test_exact_near_and_embedded_duplicates_are_found():
    heldout = ["Calculate 4 + 5 =", "What is the capital of France?", "Solve: 7 * 8."]
    train = [
        "calculate 4+5 =",                                              # exact after normalising
        "Calculate 4 + 6 =",                                            # a different problem
        "Here is a question. What is the capital of France? Answer.",   # embedded in a longer prompt
    ]
    hits = find(train, heldout)
    assert [(h.heldout_index, h.train_index) for h in hits] == [(0, 0), (1, 2)]
    assert all(h.overlap == 1.0 for h in hits)


def test_different_numbers_are_not_contamination():
    assert find(["Calculate 4 + 6 =", "Calculate 3 + 5 ="], ["Calculate 4 + 5 ="]) == []
    assert normalise("Calculate 4+5=") == ["calculate", "4", "+", "5", "="]


def test_a_jobs_shared_wording_is_not_contamination():
    stem = "State the final answer to the following arithmetic problem:"
    heldout = [f"{stem} {a} + {b} =" for a, b in [(1, 2), (3, 4), (5, 6), (7, 8)]]
    train = [f"{stem} {a} + {b} = Answer with only the number." for a, b in [(2, 1), (4, 3), (9, 9)]]
    assert find(train, heldout) == []  # without the template rule every item would match on the stem
    train.append(f"{stem} 5 + 6 = Answer with only the number.")
    assert [(h.heldout_index, h.train_index) for h in find(train, heldout)] == [(2, 3)]
