"""Bulk-loading events from JSON lines or Parquet (`armor-ab events import`) through the API's own validation.

All rows are validated before anything is written, and the write is one transaction: a bad
row anywhere means nothing from the file lands. An import is an admin's act: its rows keep their
variants (no assignment check) and any ``ts`` the model accepts, and are stored with
``source = 'import'``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from armor_ab.events import EventIn, UnknownReferenceError, check_references, to_arrow
from armor_ab.store.experiments import list_experiments
from armor_ab.store.writer import append_events, next_commit_seq

CHUNK = 50_000


class EventFileError(ValueError):
    """A row that fails validation; ``str()`` names the file, the row and the field."""

    def __init__(self, path: Path, row: int | None, field: str | None, message: str) -> None:
        where = str(path) + (f": row {row}" if row is not None else "") + (f": field '{field}'" if field else "")
        super().__init__(f"{where}: {message}")
        self.path, self.row, self.field, self.message = path, row, field, message


@dataclass(frozen=True)
class ImportResult:
    rows: int
    accepted: int
    duplicates: int


def _rows(path: Path):
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            raise EventFileError(path, None, None, f"cannot read Parquet: {exc}") from None
        for i, row in enumerate(table.to_pylist(), start=1):
            yield i, row
    elif suffix in (".jsonl", ".ndjson", ".json"):
        try:
            fh = path.open(encoding="utf-8")
        except OSError as exc:
            raise EventFileError(path, None, None, f"cannot read file: {exc.strerror or exc}") from None
        with fh:
            for i, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    yield i, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise EventFileError(path, i, None, f"invalid JSON: {exc.msg}") from None
    else:
        raise EventFileError(path, None, None, "expected a .jsonl/.ndjson or .parquet file")


def _validate(path: Path) -> list[EventIn]:
    events: list[EventIn] = []
    seen: set = set()
    for row_no, row in _rows(path):
        if isinstance(row, dict) and isinstance(row.get("ts"), datetime) and row["ts"].tzinfo is None:
            row["ts"] = row["ts"].replace(tzinfo=UTC)  # Parquet timestamps without zone are UTC
        try:
            event = EventIn.model_validate(row)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or None
            raise EventFileError(path, row_no, field, err["msg"]) from None
        if event.event_id in seen:  # a repeated id inside one file is a retry: keep the first
            continue
        seen.add(event.event_id)
        events.append(event)
    return events


def import_events(con: duckdb.DuckDBPyConnection, path: Path) -> ImportResult:
    """Validate every row of ``path``, then append the new ones in a single transaction."""
    path = Path(path)
    events = _validate(path)
    variants = {rec.key: frozenset(v.key for v in rec.spec.variants) for rec in list_experiments(con)}
    try:
        check_references(events, variants)
    except UnknownReferenceError as exc:
        raise EventFileError(path, exc.index + 1, exc.field.split(".")[-1], exc.message) from None
    received = datetime.now(UTC)
    accepted = 0
    con.execute("BEGIN")
    try:
        seq = next_commit_seq(con)  # one commit sequence number for the whole import (one transaction)
        for start in range(0, len(events), CHUNK):
            accepted += len(append_events(con, to_arrow(events[start : start + CHUNK], received, source="import"), seq))
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return ImportResult(rows=len(events), accepted=accepted, duplicates=len(events) - accepted)
