"""Kills from outside: `apiary learn`, `apiary serve` or `apiary consolidate` SIGKILLed at seeded random
moments, then checked, repaired, taken up again, and what was recorded before each kill counted after it.

One module per command says what its trials do (bench/kill_learn.py, kill_serve.py,
kill_consolidate.py); what they share is in bench/kill_trials.py. Default core: a tiny random Llama with
the bundled core's tokenizer (the trials are about the files, not the model); --core points at another.
Run: python -m apiary.bench.kills --command learn|serve|consolidate [--trials 20] [--seed 0] [--docs]
(--docs writes the command's "Kills from outside" section of docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

COMMANDS = ("learn", "serve", "consolidate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--command", choices=COMMANDS, required=True)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--core", type=Path, default=None, help="a HF directory (default: a tiny random Llama)")
    parser.add_argument("--docs", action="store_true", help="write the command's section of docs/benchmarks.md")
    args = parser.parse_args()
    if args.command == "learn":
        from apiary.bench import kill_learn as trials
    elif args.command == "serve":
        from apiary.bench import kill_serve as trials
    else:
        from apiary.bench import kill_consolidate as trials
    report = trials.run(args.trials, args.seed, args.core)
    print(json.dumps(asdict(report), indent=1))
    print(f"{args.command}: trials {report.trials}, killed mid-run {report.killed} ({report.moments}), checks without "
          f"damage {report.clean_checks}, leftovers repaired {report.leftovers_repaired}, items at the kills "
          f"{report.items_at_kills}, taken up again {report.resumed}, items lost {report.items_lost}")
    if args.docs:
        from apiary.bench.kill_trials import markdown
        from apiary.bench.report import write_section

        command = f"python -m apiary.bench.kills --command {args.command} --trials {args.trials} --seed {args.seed}"
        write_section(trials.TITLE, markdown(report, trials.TITLE, trials.describe(report), command))


if __name__ == "__main__":
    main()
