"""Shared fixtures: a tiny randomly initialised Llama with the real SmolLM2 tokenizer, jobs, and the
stores the store's tests run against (the hive's SQLite file, and a throwaway PostgreSQL server)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from apiary.bench import pg_server
from apiary.jobs.spec import load_job
from apiary.models.core import load_core, resolve_core_dir

CHAIN_SUM = ["min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1"]


@pytest.fixture(scope="session")
def tiny_core_dir(tmp_path_factory) -> Path:
    """A 2-layer random Llama saved as a HF directory, with the bundled core's tokenizer."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_core_dir(), local_files_only=True)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config)
    out = tmp_path_factory.mktemp("tiny-core")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture
def tiny_core(tiny_core_dir):
    return load_core(tiny_core_dir)


@pytest.fixture
def team_docs(tmp_path) -> Path:
    """A documents folder of one document and one held-out question about it."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "teams.md").write_text("The Quorbel team meets in room Zanthe-3.\n")
    (docs / "questions.jsonl").write_text(json.dumps({"question": "Where does Quorbel meet?", "answer": "Zanthe-3",
                                                      "doc": "teams.md"}) + "\n")
    return docs


@pytest.fixture(scope="session")
def chain_sum_job():
    return load_job("rg:chain_sum", CHAIN_SUM)


@pytest.fixture(scope="session")
def random_adapter(tiny_core_dir):
    """Save a LoRA adapter with random (nonzero) B matrices for the tiny core: a worker that behaves differently."""
    from apiary.models import adapters
    from apiary.models.adapters import LoraSpec
    from apiary.store.artifacts import write_dir

    def save(path, seed: int) -> None:
        model = adapters.attach(load_core(tiny_core_dir).model, LoraSpec())
        torch.manual_seed(seed)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.5)
        write_dir(path, lambda staging: adapters.save(model, staging))

    return save


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL server for the session, from the machine's binaries (bench.pg_server), stopped
    afterwards. Where the machine has no PostgreSQL (or no psycopg), the tests that need it skip, saying why."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed: pip install -e '.[postgres]'")
    try:
        server = pg_server.start()
    except pg_server.PostgresUnavailable as err:
        pytest.skip(str(err))
    yield server
    server.stop()


_schemas = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request):
    """Where a test's store lives: None (the hive's own SQLite file) or a fresh, empty schema on the
    session's PostgreSQL server."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres").schema_url(f"test_{next(_schemas)}")
