"""`apiary` command line: a thin shell over `apiary.Hive`. Every command takes --hive and --json.

The model stack (torch, transformers) and the optional parts (serve, bench) are imported inside the
command that needs them, so that `apiary --help` and `apiary status` start in well under a second.
Commands live in `learning.py` (a worker's learning) and `hive.py` (the hive); importing them
registers them on the one Typer app of `shell.py`.
"""

from __future__ import annotations

import os
import sys
import warnings

from apiary.cli import hive, learning  # noqa: F401  (registers the commands)
from apiary.cli.learning import task_parts  # noqa: F401  (used by tests and the attempt table)
from apiary.cli.shell import app

__all__ = ["app", "main"]


def main() -> None:
    # read by transformers and huggingface_hub when a command imports them (quiet unless the user says otherwise)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    app()


if __name__ == "__main__":
    sys.exit(main())
