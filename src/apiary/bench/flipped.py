"""Which retention items an adapter flips from right to wrong, by kind, with the replies before and after.

    python -m apiary.bench.flipped HIVE/adapters/WORKER/vN [--show 40]

The adapter is put on the bundled core; both answer the whole retention suite greedily (as the gate
does, evals/retention.py), and every item the core got right and the adapter gets wrong is listed
with both replies. Use it to see what a worker forgot, e.g. after `python -m apiary.bench.frontier
--hive DIR` kept the frontier's workers.
"""

from __future__ import annotations

import argparse
from collections import Counter

from peft import PeftModel

from apiary.evals import retention
from apiary.models.core import load_core


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("adapter", help="an adapter directory (HIVE/adapters/WORKER/vN)")
    parser.add_argument("--show", type=int, default=40, help="how many flipped items to print")
    args = parser.parse_args()
    core = load_core(None)
    suite = retention.items()
    before = retention.item_replies(core.model, core.tokenizer, core.stop_token_ids, suite)
    model = PeftModel.from_pretrained(core.model, args.adapter).merge_and_unload()
    after = retention.item_replies(model, core.tokenizer, core.stop_token_ids, suite)
    right, now = retention.score_replies(suite, before), retention.score_replies(suite, after)
    flipped = [i for i in range(len(suite)) if right[i] >= 1 and now[i] < 1]
    kinds = Counter(item["kind"] for item in suite)
    by_kind = Counter(suite[i]["kind"] for i in flipped)
    print(f"{len(flipped)} of {len(suite)} items flipped right to wrong: "
          + ", ".join(f"{kind} {by_kind[kind]} of {n}" for kind, n in kinds.most_common()))
    for i in flipped[: args.show]:
        print(f"{suite[i]['question'][:70]!r}\n    core:    {before[i][:70]!r}\n    adapter: {after[i][:70]!r}")


if __name__ == "__main__":
    main()
