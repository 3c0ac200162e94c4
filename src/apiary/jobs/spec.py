"""Describe a job in a small TOML file, or inline as `rg:TASK key=value ...`, `ta:GAME` (a TextArena
game, e.g. ta:GuessTheNumber-v0), `tools:calc+lookup` (the tool-use job) or `docs:PATH` (a folder of
documents, learned and asked about closed-book: jobs.documents); the multi-turn ones take
`heldout_size=N max_turns=N`, a documents job `questions=FILE max_chars=N documents=N`.

    name = "chain_sum"
    source = "reasoning_gym"          # or "jsonl" (with path = "data.jsonl") or "python"
    task = "chain_sum"                # reasoning_gym only
    instruction = "Answer with only the number."
    scorer = "numeric"                # exact | numeric | contains | line_contains | regex
    heldout_scorer = "exact"          # optional: score held-out answers differently from the training reward
    heldout_size = 100
    max_tokens = 32
    [config]                          # reasoning-gym config
    min_terms = 2

For source = "documents", `path = "workplace"` (the folder, relative to the job file) and optionally
`questions = "FILE"`, max_chars, documents, name, instruction, max_tokens.
For source = "textarena", `game = "GuessTheNumber-v0"`; source = "tools" needs nothing more. Both take
heldout_size, max_turns, max_tokens and name.
For source = "python", `make = "package.module:function"` names a function index -> (question, answer).
`check = "arithmetic"` (or "package.module:function", question -> answer or None) lets the job
verify questions nobody wrote an answer for, which the practice learner needs; reasoning-gym's
arithmetic tasks have it built in. Both import and run the named function: a job file is trusted
code, taken only from the machine's user (CLI, Python API), never from the HTTP API (README, "Limits and trust").
"""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

from apiary.jobs.base import Job
from apiary.jobs.checks import arithmetic_answer
from apiary.jobs.documents import documents_job
from apiary.jobs.function import FunctionSource
from apiary.jobs.jsonl import JobFileError, JsonlSource
from apiary.jobs.reasoning_gym import ReasoningGymSource
from apiary.jobs.scoring import scorer
from apiary.jobs.textarena import textarena_job
from apiary.jobs.tools import tools_job

NUMBER_INSTRUCTION = "Answer with only the number."
KEYS = {"name", "source", "task", "config", "instruction", "system", "scorer", "heldout_scorer", "heldout_size", "max_tokens", "path", "make",
        "check", "game", "max_turns", "questions", "max_chars", "documents"}
TOOLS_SPEC = "tools:calc+lookup"  # the inline spec of the tool-use job
MULTI_TURN_OPTIONS = {"heldout_size", "max_turns"}
ARITHMETIC_TASKS = {"chain_sum", "products", "basic_arithmetic"}  # reasoning-gym tasks arithmetic_answer can verify


def load_job(spec: str | Path, overrides: list[str] | None = None) -> Job:
    """A job from a TOML file path or an inline `rg:TASK` spec, with `key=value` config overrides."""
    job = _load(str(spec), overrides or [])
    job.origin = {"spec": str(spec), "overrides": list(overrides or [])}
    return job


def _load(text: str, overrides: list[str]) -> Job:
    if text.startswith("rg:"):
        return reasoning_gym_job(text[3:], parse_overrides(overrides))
    if text.startswith("ta:"):
        return textarena_job(text[3:], **_multi_turn_options(parse_overrides(overrides), text))
    if text.startswith("docs:"):
        return documents_job(text[5:], parse_overrides(overrides))
    if text == TOOLS_SPEC:
        return tools_job(**_multi_turn_options(parse_overrides(overrides), text))
    path = Path(text)
    if not path.is_file():
        raise JobFileError(f"{path}: no such job file (or use an inline spec such as rg:chain_sum)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise JobFileError(f"{path}: malformed TOML: {err}") from err
    data.setdefault("config", {}).update(parse_overrides(overrides))
    return job_from_dict(data, base_dir=path.parent, origin=str(path))


def reasoning_gym_job(task: str, config: dict, name: str | None = None) -> Job:
    source = ReasoningGymSource(task, config, heldout_size=int(config.pop("heldout_size", 100)))
    return _numeric_or_exact(name or task, source)


def job_from_dict(data: dict, base_dir: Path = Path("."), origin: str = "job") -> Job:
    unknown = set(data) - KEYS
    if unknown:
        raise JobFileError(f"{origin}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(KEYS))}")
    kind = data.get("source", "reasoning_gym")
    heldout = _count(data, "heldout_size", 100, origin)
    if kind == "reasoning_gym":
        if "task" not in data:
            raise JobFileError(f"{origin}: a reasoning_gym job needs 'task'")
        source = ReasoningGymSource(data["task"], dict(data.get("config", {})), heldout_size=heldout)
    elif kind == "jsonl":
        if "path" not in data:
            raise JobFileError(f"{origin}: a jsonl job needs 'path'")
        source = JsonlSource((base_dir / data["path"]).resolve(), heldout_size=heldout)
    elif kind == "python":
        source = FunctionSource(_import(data.get("make", ""), origin), heldout_size=heldout)
    elif kind in ("textarena", "tools"):
        return _multi_turn_from_dict(kind, data, origin)
    elif kind == "documents":
        return _documents_from_dict(data, base_dir, origin)
    else:
        raise JobFileError(f"{origin}: unknown source {kind!r}; use reasoning_gym, jsonl, python, textarena, tools "
                           "or documents")
    name = data.get("name") or data.get("task") or Path(origin).stem
    if "scorer" not in data and kind == "reasoning_gym":
        job = _numeric_or_exact(name, source)
    else:
        job = Job(name=name, source=source, scorer=_scorer(data.get("scorer", "exact"), "scorer", origin))
    job.instruction = data.get("instruction", job.instruction)
    job.system = data.get("system")
    job.max_tokens = _count(data, "max_tokens", job.max_tokens, origin)
    if "heldout_scorer" in data:
        job.heldout_scorer = _scorer(data["heldout_scorer"], "heldout_scorer", origin)
    if "check" in data:
        job.solve = arithmetic_answer if data["check"] == "arithmetic" else _import(data["check"], origin)
    return job


def _count(data: dict, key: str, default: int, origin: str) -> int:
    """A whole number >= 1 from the job file; anything else is an error naming the file and the key."""
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise JobFileError(f"{origin}: {key} must be a whole number >= 1, got {value!r}")
    return value


def _scorer(name: str, key: str, origin: str):
    """The named scorer; an unknown name is an error that names the job file and the key."""
    try:
        return scorer(name)
    except ValueError as err:
        raise JobFileError(f"{origin}: {key}: {err}") from err


def _multi_turn_options(options: dict, origin: str) -> dict:
    unknown = set(options) - MULTI_TURN_OPTIONS
    if unknown:
        raise JobFileError(f"{origin}: unknown option(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(MULTI_TURN_OPTIONS))}")
    return {k: int(v) for k, v in options.items()}


def _multi_turn_from_dict(kind: str, data: dict, origin: str) -> Job:
    """source = "textarena" (with game = "GuessTheNumber-v0") or "tools"; heldout_size, max_turns, name optional."""
    allowed = {"name", "source", "game", "heldout_size", "max_turns", "max_tokens", "config"}
    unknown = set(data) - allowed
    if unknown:
        raise JobFileError(f"{origin}: key(s) {', '.join(sorted(unknown))} do not apply to a {kind} job; "
                           f"allowed: {', '.join(sorted(allowed))}")
    options = _multi_turn_options({k: data[k] for k in ("heldout_size", "max_turns") if k in data}
                                  | dict(data.get("config", {})), origin)
    if kind == "textarena":
        if "game" not in data:
            raise JobFileError(f"{origin}: a textarena job needs 'game' (for example game = \"GuessTheNumber-v0\")")
        job = textarena_job(data["game"], name=data.get("name"), **options)
    else:
        job = tools_job(name=data.get("name", "tools"), **options)
    job.max_tokens = _count(data, "max_tokens", job.max_tokens, origin)
    return job


def _documents_from_dict(data: dict, base_dir: Path, origin: str) -> Job:
    """source = "documents" with path = FOLDER (relative to the job file); questions, max_chars, documents optional."""
    allowed = {"name", "source", "path", "questions", "max_chars", "documents", "instruction", "max_tokens", "config"}
    unknown = set(data) - allowed
    if unknown:
        raise JobFileError(f"{origin}: key(s) {', '.join(sorted(unknown))} do not apply to a documents job; "
                           f"allowed: {', '.join(sorted(allowed))}")
    if "path" not in data:
        raise JobFileError(f"{origin}: a documents job needs 'path' (the folder of documents)")
    options = {k: data[k] for k in ("max_chars", "documents") if k in data} | dict(data.get("config", {}))
    if "questions" in data:
        options["questions"] = str((base_dir / data["questions"]).resolve())
    job = documents_job((base_dir / data["path"]).resolve(), options, name=data.get("name"))
    job.instruction = data.get("instruction", job.instruction)
    job.max_tokens = _count(data, "max_tokens", job.max_tokens, origin)
    return job


def parse_overrides(pairs: list[str]) -> dict:
    """`key=value` strings to a dict; values are read as TOML (numbers, booleans) or else strings."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"expected key=value, got {pair!r}")
        try:
            out[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = value
    return out


def _numeric_or_exact(name: str, source) -> Job:
    """reasoning-gym jobs: numeric answers ask for only the number and read the first number."""
    held = source.heldout()
    if held and all(_is_number(t.answer) for t in held):
        solve = arithmetic_answer if source.task in ARITHMETIC_TASKS else None
        return Job(name=name, source=source, scorer=scorer("numeric"), instruction=NUMBER_INSTRUCTION, solve=solve)
    return Job(name=name, source=source, scorer=scorer("exact"), instruction="Answer with only the final answer.")


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _import(target: str, origin: str):
    module, _, attr = target.partition(":")
    if not module or not attr:
        raise JobFileError(f"{origin}: 'make' and 'check' must look like 'package.module:function', got {target!r}")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise JobFileError(f"{origin}: cannot import {target!r}: {err}") from err
