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


OPPOSITES = ["cold", "down", "small", "fast", "old", "wet", "high", "dark", "rich"]


def test_items_sharing_only_a_templated_jobs_wording_are_not_contamination():
    # a JSONL job "What is the opposite of the word X?": 9 corrected training prompts, 3 held-out items
    heldout = [f"What is the opposite of the word {w}?" for w in ["hot", "up", "big"]]
    train = [f"What is the opposite of the word {w}?" for w in OPPOSITES] + OPPOSITES  # prompts and corrections
    assert find(train, heldout) == []  # the 3-gram rule alone flagged all 3 on the template


def test_a_held_out_item_copied_into_a_correction_is_contamination():
    heldout = [f"What is the opposite of the word {w}?" for w in ["hot", "up", "big", "slow", "new"]]
    train = [f"What is the opposite of the word {w}?" for w in OPPOSITES]
    train.append("Remember: what is the opposite of the word up? It is down.")
    assert [(h.heldout_index, h.train_index) for h in find(train, heldout)] == [(1, len(OPPOSITES))]


def test_a_held_out_item_pasted_many_times_stays_contamination():
    heldout = ["Name the opposite of the word hot.", "Name the opposite of the word up."]
    train = ["Name the opposite of the word hot, please."] * 10 + ["Name the opposite of the word big."]
    assert [h.heldout_index for h in find(train, heldout)] == [0]


def test_chain_sum_items_sharing_the_preamble_are_flagged_only_when_the_numbers_match_too():
    stem = "State the final answer to the following arithmetic problem:"
    tail = "Answer with only the number."
    heldout = [f"{stem} {a} {op} {b} = {tail}" for a, op, b in [(8, "-", 2), (5, "+", 6), (3, "+", 3), (9, "-", 4)]]
    train = [f"{stem} {a} {op} {b} = {tail}" for a, op, b in [(5, "+", 4), (2, "-", 8), (6, "+", 5), (8, "+", 2)]]
    assert find(train, heldout) == []
    train.append(f"Try this one. {stem} 3 + 3 = {tail} Thanks!")
    assert [(h.heldout_index, h.train_index) for h in find(train, heldout)] == [(2, 4)]


def test_a_games_shared_opening_is_not_contamination_but_a_repeated_question_is():
    # GuessTheNumber: every held-out game opens with the same text; a training episode that ended on its
    # first turn has that opening as its last message (2026-12-02: 40 of 40 held-out games were flagged)
    opening = "You are playing Guess The Number. I'm thinking of a number between 1 and 20. Guess it: [n]."
    assert find([opening, "Too high. Guess again."], [opening] * 40) == []
    # a question that appears twice among 100 held-out items is still that question, not the job's wording
    heldout = [f"Calculate {a} + {b} =" for a in range(10) for b in range(10)]
    heldout[1] = heldout[0]
    assert [(h.heldout_index, h.train_index) for h in find(["Calculate 0 + 0 ="], heldout)] == [(0, 0), (1, 0)]
