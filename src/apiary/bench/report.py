"""Shared by the benchmarks: the machine line, library versions, and writing one section of docs/benchmarks.md."""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path

import torch

DOCS = Path(__file__).resolve().parents[3] / "docs"  # the checkout's docs/ (benchmarks run from a checkout)
HEADER = "# Benchmarks\n\nFigures as measured; misses included.\n\n"


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def versions(names: tuple[str, ...] = ("torch", "transformers", "peft", "trl", "datasets", "llama_cpp_python")) -> dict:
    """Installed versions of apiary's libraries and the peers (None: not installed)."""
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def write_section(title: str, section: str, docs: Path = DOCS) -> None:
    """Replace the `## title` section of docs/benchmarks.md (or append it)."""
    path = docs / "benchmarks.md"
    text = path.read_text() if path.exists() else HEADER
    section = section.rstrip("\n") + "\n\n"
    start = text.find(f"## {title}\n")
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[end + 1:] if end >= 0 else "")
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text.rstrip("\n") + "\n")


def core_label(core: str | None, quick: bool) -> str:
    """What a benchmark's section calls its core: the one given, a quick run's tiny random one, or the bundled one."""
    return core or ("tiny random" if quick else "bundled SmolLM2-135M-Instruct, float32")


def table_head(title: str, command: str, about: str, columns: list[str]) -> list[str]:
    """A section's opening lines: its title, the command that measured it, the machine and what was measured
    (`about`), and the head of its table."""
    return [f"## {title}", "", f"Command: `{command}`", "", f"Machine: {machine()}. {about}", "",
            "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def publish(title: str, text: str, figures, json_name: str, docs: Path | None) -> None:
    """Print a benchmark's section; unless `docs` is None (a quick run told nowhere to write), write it into
    docs/benchmarks.md and its figures into docs/`json_name`."""
    print(text)
    if docs is not None:
        docs.mkdir(parents=True, exist_ok=True)
        (docs / json_name).write_text(json.dumps(figures, indent=1))
        write_section(title, text, docs)


def merge_json(path: Path, figures: dict) -> dict:
    """Update the JSON file at `path` with `figures` (top-level keys replaced), keeping the other keys."""
    previous = json.loads(path.read_text()) if path.exists() else {}
    merged = previous | figures
    path.write_text(json.dumps(merged, indent=1))
    return merged
