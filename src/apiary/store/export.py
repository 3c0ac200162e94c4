"""Export every table of a hive to Parquet or JSONL: the user owns the data, in open formats."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from apiary.store.artifacts import atomic_write_bytes
from apiary.store.schema import EXPORTED, metadata
from apiary.store.store import Store


# A chat as Parquet reads it: a list of (role, content) structs, not JSON text.
MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


def export(store: Store, out_dir: Path, fmt: str = "parquet") -> dict[str, dict]:
    """Write one file per table; returns {table: {"path": ..., "rows": n}}. JSONL keeps JSON columns as
    JSON values; Parquet stores `messages` as a list of (role, content) structs and other JSON columns
    (free-form settings and details) as JSON text."""
    if fmt not in ("parquet", "jsonl"):
        raise ValueError(f"unknown export format {fmt!r}: use parquet or jsonl")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in EXPORTED:
        path = out_dir / f"{name}.{fmt}"
        if fmt == "jsonl":
            rows = [_plain(r, json_as_text=False) for r in store.table_rows(name)]
            atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in rows).encode())
        else:
            rows = [_plain(r, json_as_text=True) for r in store.table_rows(name)]
            atomic_write_bytes(path, _parquet(rows, [c.name for c in metadata.tables[name].columns]))
        written[name] = {"path": str(path), "rows": len(rows)}
    return written


def _parquet(rows: list[dict], columns: list[str]) -> bytes:
    arrays = {}
    for column in columns:
        values = [r.get(column) for r in rows]
        arrays[column] = pa.array(values, MESSAGES) if column == "messages" else (pa.array(values) if rows else
                                                                                  pa.array([], pa.string()))
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(arrays), sink)
    return sink.getvalue().to_pybytes()


def _plain(row: dict, json_as_text: bool) -> dict:
    """Datetimes as ISO strings; messages as (role, content) pairs; other JSON columns as JSON text
    where the format needs flat columns (Parquet), else as they are."""
    out = {}
    for key, value in row.items():
        if key == "messages" and isinstance(value, list):
            out[key] = [{"role": m.get("role"), "content": m.get("content")} for m in value] if json_as_text else value
        elif isinstance(value, (dict, list)):
            out[key] = json.dumps(value) if json_as_text else value
        elif hasattr(value, "isoformat"):
            out[key] = value.isoformat()
        else:
            out[key] = value
    return out
