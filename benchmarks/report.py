"""Shared by the benchmarks: the machine line and writing one section of docs/benchmarks.md."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

DOCS = Path(__file__).resolve().parents[1] / "docs"
HEADER = "# Benchmarks\n\nFigures as measured; misses included.\n\n"


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def write_section(title: str, section: str) -> None:
    """Replace the `## title` section of docs/benchmarks.md (or append it)."""
    path = DOCS / "benchmarks.md"
    text = path.read_text() if path.exists() else HEADER
    start = text.find(f"## {title}\n")
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[end + 1:] if end >= 0 else "")
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text)
