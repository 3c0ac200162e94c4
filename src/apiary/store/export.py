"""Export every table of a hive to Parquet or JSONL: the user owns the data, in open formats."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from apiary.store.artifacts import atomic_write_bytes
from apiary.store.schema import EXPORTED, metadata
from apiary.store.store import Store


def export(store: Store, out_dir: Path, fmt: str = "parquet") -> dict[str, dict]:
    """Write one file per table; returns {table: {"path": ..., "rows": n}}."""
    if fmt not in ("parquet", "jsonl"):
        raise ValueError(f"unknown export format {fmt!r}: use parquet or jsonl")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in EXPORTED:
        rows = [_plain(r) for r in store.table_rows(name)]
        path = out_dir / f"{name}.{fmt}"
        if fmt == "jsonl":
            atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in rows).encode())
        else:
            columns = [c.name for c in metadata.tables[name].columns]
            table = pa.Table.from_pylist(rows) if rows else pa.table({c: pa.array([], pa.string()) for c in columns})
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink)
            atomic_write_bytes(path, sink.getvalue().to_pybytes())
        written[name] = {"path": str(path), "rows": len(rows)}
    return written


def _plain(row: dict) -> dict:
    """JSON columns as JSON text, datetimes as ISO strings: flat and readable anywhere."""
    out = {}
    for key, value in row.items():
        if isinstance(value, (dict, list)):
            out[key] = json.dumps(value)
        elif hasattr(value, "isoformat"):
            out[key] = value.isoformat()
        else:
            out[key] = value
    return out
