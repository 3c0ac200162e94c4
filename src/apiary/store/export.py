"""Export every table of a hive to Parquet or JSONL: the user owns the data, in open formats.

Tables are read and written in bounded batches (`batch_rows` rows at a time: a server-side cursor on
PostgreSQL, one Parquet row group per batch), so memory stays flat however large the store grows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Boolean, Float, Integer, select

from apiary.store.artifacts import atomic_file
from apiary.store.schema import EXPORTED, metadata
from apiary.store.store import Store

BATCH_ROWS = 10_000  # rows read, converted and written at a time (one Parquet row group)

# A chat as Parquet reads it: a list of (role, content) structs, not JSON text.
MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


def export(store: Store, out_dir: Path, fmt: str = "parquet", batch_rows: int = BATCH_ROWS) -> dict[str, dict]:
    """Write one file per table (each replaced atomically); returns {table: {"path": ..., "rows": n}}. JSONL
    keeps JSON columns as JSON values; Parquet stores `messages` as a list of (role, content) structs,
    datetimes as ISO text and other JSON columns (free-form settings and details) as JSON text."""
    if fmt not in ("parquet", "jsonl"):
        raise ValueError(f"unknown export format {fmt!r}: use parquet or jsonl")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in EXPORTED:
        path = out_dir / f"{name}.{fmt}"
        batches = table_batches(store, name, batch_rows)
        with atomic_file(path) as handle:
            rows = _jsonl(handle, batches) if fmt == "jsonl" else _parquet(handle, name, batches)
        written[name] = {"path": str(path), "rows": rows}
    return written


def table_batches(store: Store, name: str, batch_rows: int = BATCH_ROWS) -> Iterator[list[dict]]:
    """Every row of a table in key order, `batch_rows` at a time: memory stays flat however large the
    table grows (a server-side cursor on PostgreSQL; SQLite's cursor reads as it goes)."""
    table = metadata.tables[name]
    query = select(table).order_by(*table.primary_key.columns)
    with store.engine.connect() as db:
        for part in db.execution_options(yield_per=batch_rows).execute(query).partitions():
            yield [dict(r._mapping) for r in part]


def _jsonl(handle: BinaryIO, batches: Iterable[list[dict]]) -> int:
    rows = 0
    for batch in batches:
        handle.write("".join(json.dumps(_plain(r, json_as_text=False)) + "\n" for r in batch).encode())
        rows += len(batch)
    return rows


def _parquet(handle: BinaryIO, table: str, batches: Iterable[list[dict]]) -> int:
    schema = arrow_schema(table)
    rows = 0
    with pq.ParquetWriter(handle, schema) as writer:
        for batch in batches:
            writer.write_table(pa.Table.from_pylist([_plain(r, json_as_text=True) for r in batch], schema=schema))
            rows += len(batch)
    return rows


def arrow_schema(table: str) -> pa.Schema:
    """The Parquet columns of a store table, from its column types (so every batch, and an empty table,
    has the same schema)."""
    def kind(column):
        if column.name == "messages":
            return MESSAGES
        if isinstance(column.type, Boolean):
            return pa.bool_()
        if isinstance(column.type, Integer):
            return pa.int64()
        if isinstance(column.type, Float):
            return pa.float64()
        return pa.string()  # text, ISO datetimes, JSON text
    return pa.schema([(c.name, kind(c)) for c in metadata.tables[table].columns])


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
