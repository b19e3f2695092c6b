"""The one writer thread that owns the DuckDB write connection.

Requests never touch the write connection. They enqueue event batches (Arrow tables) or write
jobs and wait on a future. The writer drains whatever is queued, appends all event batches in
one transaction with ``INSERT OR IGNORE ... RETURNING`` (the ``event_id`` primary key turns a
retried batch into a no-op), commits, and only then resolves the futures: acknowledged means
durable. A full queue raises ``QueueFullError`` at once (the API answers 503), never a silent drop.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from armor_ab.events import ARROW_SCHEMA as ROW_SCHEMA

log = logging.getLogger("armor_ab.writer")
T = TypeVar("T")

_INSERT = (
    "INSERT OR IGNORE INTO events SELECT event_id::UUID, experiment, variant, user_id, item_id, type, "
    "value, ts, received_at, properties::JSON FROM incoming"
)


def append_events(con: duckdb.DuckDBPyConnection, table: pa.Table) -> set[str]:
    """Insert rows whose event_id is new (inside the caller's transaction); returns their ids.

    ``table`` must not repeat an event_id (the primary key would refuse the whole statement).
    """
    con.register("incoming", table)
    try:
        return {row[0] for row in con.execute(_INSERT + " RETURNING event_id::VARCHAR").fetchall()}
    finally:
        con.unregister("incoming")


def append_new_events(con: duckdb.DuckDBPyConnection, table: pa.Table) -> int:
    """Like ``append_events`` but returns only how many rows were new: no id list to build.

    When that count equals the table's rows, which is the common case, every row was new and the
    caller needs nothing more; otherwise it redoes the insert with ``append_events``.
    """
    con.register("incoming", table)
    try:
        return con.execute(_INSERT).fetchone()[0]
    finally:
        con.unregister("incoming")


class QueueFullError(RuntimeError):
    """The writer is behind; the caller should retry after ``retry_after`` seconds."""

    retry_after = 1


class WriterClosedError(RuntimeError):
    """The writer has stopped and takes no more work."""


@dataclass(frozen=True)
class WriteResult:
    accepted: int
    duplicates: int


@dataclass
class _Batch:
    table: pa.Table
    future: Future


@dataclass
class _Row:
    """One fire-and-forget row (an exposure): no Arrow table, no future, for the hot path."""

    values: tuple


@dataclass
class _Job:
    fn: Callable[[duckdb.DuckDBPyConnection], Any]
    future: Future


_STOP = object()


class EventWriter:
    """Owns ``con`` on a background thread; everything that writes goes through it."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        *,
        max_queue: int = 2000,
        max_rows_per_txn: int = 20_000,
        linger_s: float = 0.005,
        row_linger_s: float = 0.2,
        on_commit: Callable[[int, int, float], None] | None = None,  # (batches, new events, seconds)
        on_rows_committed: Callable[[list[str]], None] | None = None,  # event ids of committed _Rows
        on_rows_failed: Callable[[list[str]], None] | None = None,
    ) -> None:
        self._con = con
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._max_rows = max_rows_per_txn
        # A DuckDB transaction costs milliseconds whatever its size, so a small batch waits this
        # long for company: fewer, bigger commits (the Kafka producer's linger.ms).
        self._linger = linger_s
        # Fire-and-forget rows (exposures) have nobody waiting, so they wait longer for company.
        self._row_linger = row_linger_s
        self._on_commit = on_commit
        self._on_rows_committed = on_rows_committed
        self._on_rows_failed = on_rows_failed
        self._thread = threading.Thread(target=self._run, name="armor-ab-writer", daemon=True)
        self._closed = False
        self.committed_events = 0

    # -- producer side -------------------------------------------------------------------------
    def start(self) -> EventWriter:
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def depth(self) -> int:
        """Items waiting to be written (exported as a gauge)."""
        return self._queue.qsize()

    def submit(self, table: pa.Table) -> Future[WriteResult]:
        """Queue a batch of events; the future resolves after the commit that holds them."""
        return self._put(_Batch(table, Future()))

    def log_row(self, values: tuple) -> None:
        """Queue one event row (``events`` column order, event_id as str) without waiting.

        Raises ``QueueFullError`` like ``submit``. The ``on_rows_committed`` callback reports the
        ids once committed, so the caller can tell logged from merely queued.
        """
        self._put(_Row(values))

    def call(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> Future[T]:
        """Run ``fn(con)`` on the writer thread (admin writes: experiments, keys)."""
        return self._put(_Job(fn, Future()))

    def _put(self, item: _Batch | _Job | _Row) -> Future | None:
        if self._closed:
            raise WriterClosedError("the event writer is shut down")
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            raise QueueFullError("the event writer queue is full") from None
        return getattr(item, "future", None)

    def close(self, timeout: float = 30.0) -> None:
        """Write everything already queued, then stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)

    # -- the writer thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batches: list[_Batch] = []
            row_items: list[tuple] = []
            rows = 0
            stop = False
            started = time.monotonic()
            deadline = started + (self._row_linger if isinstance(item, _Row) else self._linger)
            # Drain what is queued, lingering briefly: many requests share one transaction.
            while True:
                if isinstance(item, _Row):
                    row_items.append(item.values)
                    rows += 1
                elif isinstance(item, _Job):
                    self._flush(batches, row_items)
                    batches, row_items, rows = [], [], 0
                    self._run_job(item)
                elif item is _STOP:
                    stop = True
                    break
                else:
                    if not batches:  # someone is waiting now: do not keep them for the rows' linger
                        deadline = min(deadline, time.monotonic() + self._linger)
                    batches.append(item)
                    rows += item.table.num_rows
                if rows >= self._max_rows:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    wait = deadline - time.monotonic()
                    if wait <= 0 or not (batches or row_items):
                        break
                    try:
                        item = self._queue.get(timeout=wait)
                    except queue.Empty:
                        break
            self._flush(batches, row_items)
            if stop:
                return

    def _run_job(self, job: _Job) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            job.future.set_result(job.fn(self._con))
        except BaseException as exc:  # the caller gets the error; the writer lives on
            try:
                self._con.execute("ROLLBACK")
            except duckdb.Error:
                pass
            job.future.set_exception(exc)

    def _flush(self, batches: list[_Batch], row_items: list[tuple] | None = None) -> None:
        if not batches and not row_items:
            return
        started = time.perf_counter()
        # The same event_id twice in one transaction (two concurrent retries): first one wins.
        seen: set[str] = set()
        keep_tables = []
        row_ids: list[str] = []
        if row_items:
            unique = [r for r in row_items if r[0] not in seen and not seen.add(r[0])]
            row_ids = [r[0] for r in unique]
            keep_tables.append(pa.table(list(zip(*unique, strict=True)), schema=ROW_SCHEMA))
        keep_tables += [b.table for b in batches]
        incoming = pa.concat_tables(keep_tables)
        ids = incoming.column("event_id")
        clean = pc.count_distinct(ids).as_py() == len(ids)  # no id twice in this transaction
        if not clean:  # concurrent retries of one batch: keep each id's first row (rare)
            seen = set()
            mask = [i not in seen and not seen.add(i) for i in ids.to_pylist()]
            incoming = incoming.filter(pa.array(mask))
        inserted: set[str] | None = None
        try:
            self._con.execute("BEGIN")
            n_inserted = append_new_events(self._con, incoming)
            if n_inserted != incoming.num_rows:  # some ids were stored before: find out which
                self._con.execute("ROLLBACK")
                self._con.execute("BEGIN")
                inserted = append_events(self._con, incoming)
                n_inserted = len(inserted)
            self._con.execute("COMMIT")
        except BaseException as exc:
            log.exception("event batch write failed", extra={"batches": len(batches)})
            try:
                self._con.execute("ROLLBACK")
            except duckdb.Error:
                pass
            for b in batches:
                b.future.set_exception(exc)
            if row_ids and self._on_rows_failed:
                self._on_rows_failed(row_ids)
            return
        elapsed = time.perf_counter() - started
        self.committed_events += n_inserted
        if inserted is None and clean:  # every row was new: each batch was accepted whole
            for b in batches:
                b.future.set_result(WriteResult(accepted=b.table.num_rows, duplicates=0))
        else:
            if inserted is None:  # all new, but some rows repeated an id within this transaction
                inserted = set(incoming.column("event_id").to_pylist())
            inserted.difference_update(row_ids)  # exposure rows came first; they are nobody's batch
            for b in batches:
                accepted = 0
                for event_id in b.table.column("event_id").to_pylist():
                    if event_id in inserted:  # counted once, for the first batch that carried it
                        inserted.discard(event_id)
                        accepted += 1
                b.future.set_result(WriteResult(accepted=accepted, duplicates=b.table.num_rows - accepted))
        if row_ids and self._on_rows_committed:
            self._on_rows_committed(row_ids)
        if self._on_commit:
            self._on_commit(len(batches), n_inserted, elapsed)
