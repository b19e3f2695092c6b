"""The one writer thread that owns the DuckDB write connection (in the database process).

Requests never touch the write connection. They enqueue event batches (Arrow tables) or write
jobs and wait on a future. The writer drains whatever is queued and appends all event batches in
one transaction, leaving out every event whose ``event_id`` is stored already (a retried batch):
the dedup window (``armor_ab.store.dedup``: the newest ids, in fixed memory) tells for live
traffic, a lookup in the table for events older than the window. Every row of the transaction gets
the same ``commit_seq``, drawn from the sequence ``events_commit_seq`` inside it: one writer, so
numbers increase in commit order, and a transaction that rolls back leaves a gap, never a number
used twice (the event lake exports by it, ``armor_ab.store.lake``). It commits, and only then
resolves the futures: acknowledged means durable. A full queue raises ``QueueFullError`` at once
(the API answers 503), never a silent drop.

Faults (disk full, an I/O error, DuckDB out of memory: a commit out of memory is first tried again
twice, a report may have held the buffer pool for a moment) fail the transaction's batches with
``WriteFailedError`` (the API answers 503 with Retry-After; nothing of them was acknowledged) and
put the writer in a fault state (``fault``, reported through ``on_fault``; ``/healthz`` says
``degraded``). DuckDB invalidates the whole database after some failed writes (a checkpoint that
cannot write: "database has been invalidated because of a previous fatal error"); the writer then
closes the connection and opens the file again (``reopen``), which replays the WAL: every commit
acknowledged before is still there. While in fault, batches are still tried (one that fits
commits and is acknowledged) unless the database waits to be reopened, and the writer probes with
a backoff of 0.1 s doubling to 2 s: reopen if needed, ``SELECT 1``, and 1 MiB written and fsynced
beside the database file. Only a probe clears the fault: a small commit that squeezes into the
last free bytes of a full disk does not. No restart is needed.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from armor_ab.event_schema import COLUMN_NAMES, COMMIT_SEQ, COMMIT_SEQUENCE
from armor_ab.events import ARROW_SCHEMA as ROW_SCHEMA
from armor_ab.events import MAX_FUTURE
from armor_ab.store.dedup import NEVER, RecentIds, uuid_keys

log = logging.getLogger("armor_ab.writer")
T = TypeVar("T")

_COLUMNS = ("event_id::UUID, experiment, variant, user_id, item_id, type, value, ts, received_at, "
            "properties::JSON, source")
# ``$seq``: the transaction's commit sequence number, one constant for all its rows (``next_commit_seq``).
_INSERT = (f"INSERT INTO events ({', '.join(COLUMN_NAMES)}, {COMMIT_SEQ}) "
           f"SELECT {_COLUMNS}, $seq::BIGINT FROM incoming")
_NEXT_SEQ = f"SELECT nextval('{COMMIT_SEQUENCE}')"
# Which of ``candidates`` (event_id, i) are stored among the rows received in [$lo, $hi]: the exact
# lookup for events the dedup window cannot vouch for (armor_ab.store.dedup). The bounds on
# received_at let DuckDB skip every older row group by its zone maps.
_STORED_BEFORE = """SELECT c.i FROM candidates c SEMI JOIN (
    SELECT event_id FROM events WHERE received_at >= $lo AND received_at <= $hi
) e ON e.event_id = c.event_id::UUID"""

OOM_RETRIES = 2  # a commit out of memory is tried again after 50 and 100 ms before its batches get 503
PROBE_BYTES = 1 << 20  # four DuckDB blocks: room for a commit and more, not the last bytes of a full disk
MAX_FUTURE_US = int(MAX_FUTURE.total_seconds() * 1_000_000)
DEFAULT_DEDUP_WINDOW = 8_000_000


def _micros(table: pa.Table, column: str) -> np.ndarray:
    return table.column(column).cast(pa.int64()).to_numpy(zero_copy_only=False)


def _as_utc(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


def stored_before(con: duckdb.DuckDBPyConnection, table: pa.Table, until_us: int | None = None) -> np.ndarray:
    """A boolean per row of ``table``: is its event_id stored already (received up to ``until_us``)?

    Exact, by a scan of the rows received since the earliest ``ts - MAX_FUTURE`` of ``table``
    (a first copy is never received before that: ``armor_ab.events.MAX_FUTURE``).
    """
    found = np.zeros(table.num_rows, dtype=bool)
    if table.num_rows == 0:
        return found
    lo = int(_micros(table, "ts").min()) - MAX_FUTURE_US
    hi = until_us if until_us is not None else np.iinfo(np.int64).max // 2
    if hi < lo:
        return found
    candidates = pa.table({"event_id": table.column("event_id"), "i": pa.array(np.arange(table.num_rows))})
    con.register("candidates", candidates)
    try:
        rows = con.execute(_STORED_BEFORE, {"lo": _as_utc(lo), "hi": _as_utc(min(hi, 253402300799999999))}).fetchall()
    finally:
        con.unregister("candidates")
    found[[i for (i,) in rows]] = True
    return found


def next_commit_seq(con: duckdb.DuckDBPyConnection) -> int:
    """A new commit sequence number (inside the caller's transaction): above every number committed
    before, never handed out again (a transaction that rolls back leaves a gap)."""
    return int(con.execute(_NEXT_SEQ).fetchall()[0][0])


def insert_rows(con: duckdb.DuckDBPyConnection, table: pa.Table, seq: int | None = None) -> int:
    """Append ``table`` to ``events`` (inside the caller's transaction), no questions asked.

    Every row gets ``commit_seq = seq`` (a new number when None); returns it.
    """
    if seq is None:
        seq = next_commit_seq(con)
    con.register("incoming", table)
    try:
        con.execute(_INSERT, {"seq": seq})
    finally:
        con.unregister("incoming")
    return seq


def append_events(con: duckdb.DuckDBPyConnection, table: pa.Table, seq: int | None = None) -> set[str]:
    """Insert the rows whose event_id is not stored yet (inside the caller's transaction); returns their ids.

    For writers without the dedup window (``armor-ab events import`` on a database no server holds):
    every row is looked up in the table. ``table`` must not repeat an event_id. ``seq``: the
    transaction's commit sequence number (``next_commit_seq``), so that several calls in one
    transaction share it; a new one when None.
    """
    new = table.filter(pa.array(~stored_before(con, table)))
    insert_rows(con, new, seq)
    return set(new.column("event_id").to_pylist())


def load_window(con: duckdb.DuckDBPyConnection, window: RecentIds) -> None:
    """Fill an empty ``window`` with the ids of the newest stored events (at most its capacity)."""
    cur = con.cursor()
    try:
        total = cur.sql("SELECT count(*) FROM events WHERE received_at IS NOT NULL").fetchall()[0][0]
        cutoff, where, params = NEVER, "received_at IS NOT NULL", None
        if total > window.capacity:  # the newest ``capacity`` rows: those received after the cutoff
            cutoff = cur.sql(
                "SELECT epoch_us(received_at) FROM events WHERE received_at IS NOT NULL "
                f"ORDER BY received_at DESC LIMIT 1 OFFSET {int(window.capacity) - 1}"
            ).fetchall()[0][0]
            where, params = "received_at > $cutoff", {"cutoff": _as_utc(cutoff)}
        table = cur.sql(
            f"SELECT event_id::VARCHAR AS event_id, epoch_us(received_at) AS us FROM events WHERE {where} "
            "ORDER BY received_at", params=params
        ).to_arrow_table()
    finally:
        cur.close()
    window.load(uuid_keys(table.column("event_id")), table.column("us").to_numpy(), complete_after=cutoff)


class QueueFullError(RuntimeError):
    """The writer is behind; the caller should retry after ``retry_after`` seconds."""

    retry_after = 1


class WriterClosedError(RuntimeError):
    """The writer has stopped and takes no more work."""


class StoreFaultError(RuntimeError):
    """The database cannot do this now (disk full, an I/O error, out of memory, a database being
    reopened); ``cause`` says why. Nothing was written; retry after ``retry_after`` seconds."""

    retry_after = 2

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


class WriteFailedError(StoreFaultError):
    """A write (a batch's commit, an admin write) failed on a fault: nothing of it was acknowledged."""


# What a fault looks like: a failed commit (TransactionException), an I/O error, out of memory
# (all OperationalError), a database DuckDB invalidated (FatalException) or an internal error
# (which invalidates it too), and the operating system's own errors.
FAULTS = (duckdb.OperationalError, duckdb.FatalException, duckdb.InternalException, OSError)
_QUOTED_PATH = re.compile(r'"(/[^"]*/)([^"/]*)"')


def is_fault(exc: BaseException) -> bool:
    """Whether ``exc`` is a fault of the machine or the database (retry later), not of the request."""
    return isinstance(exc, FAULTS) and not isinstance(exc, duckdb.ConstraintException)


def needs_reopen(exc: BaseException) -> bool:
    """Whether the connection is unusable after ``exc``: DuckDB invalidated the database, or it is closed."""
    return (isinstance(exc, (duckdb.FatalException, duckdb.InternalException, duckdb.ConnectionException))
            or "invalidated" in str(exc))


def describe(exc: BaseException) -> str:
    """A fault's cause in one line, directories left out (``/healthz`` is public): its type and message."""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror  # without the file name
    else:
        text = _QUOTED_PATH.sub(r'"\2"', " ".join(str(exc).split()))
    return f"{type(exc).__name__}: {text}"[:300]


@dataclass(frozen=True)
class WriteResult:
    accepted: int
    duplicates: int


@dataclass
class _Batch:
    table: pa.Table
    future: Future


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
        max_buffered_rows: int = 100_000,
        on_commit: Callable[[int, int, float], None] | None = None,  # (batches, new events, seconds)
        on_rows_committed: Callable[[list[str]], None] | None = None,  # event ids of committed _Rows
        on_rows_failed: Callable[[list[str]], None] | None = None,
        reopen: Callable[[], duckdb.DuckDBPyConnection] | None = None,  # a fresh connection to the same file
        on_fault: Callable[[str | None], None] | None = None,  # the fault's cause, None once recovered
        retry_min_s: float = 0.1,
        retry_max_s: float = 2.0,
        dedup_window: int = DEFAULT_DEDUP_WINDOW,  # event ids kept in memory (armor_ab.store.dedup)
    ) -> None:
        self._con = con
        self._window = RecentIds(dedup_window)
        load_window(con, self._window)
        self.late_lookups = 0  # events looked up in the table: the window could not vouch for them
        self._reopen = reopen
        self._on_fault = on_fault
        self._retry_min = retry_min_s
        self._retry_max = retry_max_s
        self._backoff = retry_min_s
        self._retry_at = 0.0
        self._broken = False  # the connection must be reopened before it writes again
        self.fault: str | None = None
        self._probe_dir = _database_dir(con)
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._rows: collections.deque[tuple] = collections.deque()
        self._max_buffered_rows = max_buffered_rows
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
    def con(self) -> duckdb.DuckDBPyConnection:
        """The current connection (a new one after a reopen); reads take their cursors from it."""
        return self._con

    @property
    def depth(self) -> int:
        """Items waiting to be written: queued batches and jobs plus buffered rows (a gauge)."""
        return self._queue.qsize() + len(self._rows)

    def submit(self, table: pa.Table) -> Future[WriteResult]:
        """Queue a batch of events; the future resolves after the commit that holds them."""
        return self._put(_Batch(table, Future()))

    def log_row(self, values: tuple) -> None:
        """Buffer one event row (``events`` column order, event_id as str) without waiting.

        Rows go to their own buffer, not the queue: a queue put wakes the writer thread, and one
        wake-up (a GIL hand-off and a context switch) per page view costs more than the row's
        insert. The writer takes the buffer with its next transaction, at the latest after the
        row linger. Raises ``QueueFullError`` like ``submit``; ``on_rows_committed`` reports the
        ids once committed, so the caller can tell logged from merely buffered.
        """
        if self._closed:
            raise WriterClosedError("the event writer is shut down")
        if len(self._rows) >= self._max_buffered_rows:
            raise QueueFullError("the event writer's row buffer is full")
        self._rows.append(values)

    def call(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> Future[T]:
        """Run ``fn(con)`` on the writer thread (admin writes: experiments, keys)."""
        return self._put(_Job(fn, Future()))

    def _put(self, item: _Batch | _Job) -> Future:
        if self._closed:
            raise WriterClosedError("the event writer is shut down")
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            raise QueueFullError("the event writer queue is full") from None
        return item.future

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
            wait = self._row_linger
            if self.fault is not None:
                if time.monotonic() >= self._retry_at:
                    self._recover()
                wait = max(0.0, min(wait, self._retry_at - time.monotonic()))
            try:
                # Rows never wake this thread; it looks at their buffer at least every row linger.
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                item = None
            if item is _STOP:
                self._flush([], self._take_rows())
                return
            batches: list[_Batch] = []
            n_rows = 0
            stop = False
            deadline = time.monotonic() + self._linger
            # Drain what is queued, lingering briefly: many requests share one transaction.
            while item is not None:
                if isinstance(item, _Job):
                    self._flush(batches, self._take_rows())
                    batches, n_rows = [], 0
                    self._run_job(item)
                elif item is _STOP:
                    stop = True
                    break
                else:
                    batches.append(item)
                    n_rows += item.table.num_rows
                if n_rows >= self._max_rows:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    wait = deadline - time.monotonic()
                    if wait <= 0 or not batches:
                        break
                    try:
                        item = self._queue.get(timeout=wait)
                    except queue.Empty:
                        break
            self._flush(batches, self._take_rows())
            if stop:
                self._flush([], self._take_rows())
                return

    def _take_rows(self) -> list[tuple]:
        """Everything in the row buffer (appends from other threads are atomic under the GIL)."""
        rows = []
        pop = self._rows.popleft
        for _ in range(len(self._rows)):
            rows.append(pop())
        return rows

    # -- faults --------------------------------------------------------------------------------
    def _failed(self, exc: BaseException) -> WriteFailedError:
        """Enter (or stay in) the fault state after ``exc``; the error the callers get."""
        cause = describe(exc)
        if needs_reopen(exc):
            self._broken = True
        now = time.monotonic()
        if self.fault is None:
            log.error("database write failed; retrying with backoff", exc_info=exc, extra={"cause": cause})
            self._backoff = self._retry_min
        else:
            self._backoff = min(self._backoff * 2, self._retry_max)
        self._retry_at = now + self._backoff
        if cause != self.fault:
            self.fault = cause
            if self._on_fault:
                self._on_fault(cause)
        return WriteFailedError(cause)

    def _healthy(self) -> None:
        if self.fault is None:
            return
        log.warning("database writes recovered", extra={"cause": self.fault})
        self.fault = None
        self._backoff = self._retry_min
        if self._on_fault:
            self._on_fault(None)

    def _recover(self) -> None:
        """One probe: reopen the database if DuckDB invalidated it, then check that it answers and
        that the disk takes a block again. Clears the fault, or schedules the next probe."""
        try:
            if self._broken:
                if self._reopen is None:
                    raise WriteFailedError(self.fault or "the database connection is unusable")
                try:
                    self._con.close()  # DuckDB frees an invalidated database once every connection is closed
                except duckdb.Error:
                    pass
                self._con = self._reopen()
                self._broken = False
                log.warning("database reopened after a fault", extra={"cause": self.fault})
            self._con.execute("SELECT 1").fetchall()
            if self._probe_dir is not None:
                _probe_disk(self._probe_dir)
        except BaseException as exc:
            if isinstance(exc, WriteFailedError):
                self._retry_at = time.monotonic() + self._retry_max
            else:
                self._failed(exc)
            return
        self._healthy()

    def _refusal(self) -> WriteFailedError | None:
        """While the connection waits to be reopened, writes fail at once with the fault's cause."""
        return WriteFailedError(self.fault or "the database is being reopened") if self._broken else None

    def _run_job(self, job: _Job) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        refusal = self._refusal()
        if refusal is not None:
            job.future.set_exception(refusal)
            return
        try:
            job.future.set_result(job.fn(self._con))
        except BaseException as exc:  # the caller gets the error; the writer lives on
            try:
                self._con.execute("ROLLBACK")
            except duckdb.Error:
                pass
            job.future.set_exception(self._failed(exc) if is_fault(exc) else exc)

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
        refusal = self._refusal()
        if refusal is not None:  # nothing is tried until a probe has reopened the database
            for b in batches:
                b.future.set_exception(refusal)
            if row_ids and self._on_rows_failed:
                self._on_rows_failed(row_ids)
            return
        keys = uuid_keys(incoming.column("event_id"))
        # Repeats of events still in the window are known at once; an event too old for the window
        # to vouch for (a late retry, an import of history) is looked up in the table.
        repeat = self._window.contains(keys)
        unsure = ~repeat & ~self._window.covers(_micros(incoming, "ts"), MAX_FUTURE_US)
        try:
            for attempt in range(OOM_RETRIES + 1):
                try:
                    self._con.execute("BEGIN")
                    if unsure.any():
                        found = stored_before(self._con, incoming.filter(pa.array(unsure)), self._window.evicted_until)
                        repeat[np.flatnonzero(unsure)[found]] = True
                        self.late_lookups += int(unsure.sum())
                    new = incoming.filter(pa.array(~repeat)) if repeat.any() else incoming
                    insert_rows(self._con, new)
                    self._con.execute("COMMIT")
                    break
                except duckdb.OutOfMemoryException:  # a report held the buffer pool for a moment: try again
                    if attempt == OOM_RETRIES:
                        raise
                    try:
                        self._con.execute("ROLLBACK")
                    except duckdb.Error:
                        pass
                    time.sleep(0.05 * 2**attempt)
        except BaseException as exc:
            try:
                self._con.execute("ROLLBACK")
            except duckdb.Error:
                pass
            if is_fault(exc):  # disk full, I/O error, out of memory: 503 and retry, nothing acknowledged
                error: BaseException = self._failed(exc)
            else:
                log.exception("event batch write failed", extra={"batches": len(batches)})
                error = exc
            for b in batches:
                b.future.set_exception(error)
            if row_ids and self._on_rows_failed:
                self._on_rows_failed(row_ids)
            return
        n_inserted = new.num_rows
        if n_inserted:  # only committed ids enter the window
            self._window.add(keys[~repeat], int(_micros(new, "received_at").max()))
        elapsed = time.perf_counter() - started
        self.committed_events += n_inserted
        if clean and not repeat.any():  # every row was new: each batch was accepted whole
            for b in batches:
                b.future.set_result(WriteResult(accepted=b.table.num_rows, duplicates=0))
        else:
            inserted = set(new.column("event_id").to_pylist())
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


def _database_dir(con: duckdb.DuckDBPyConnection) -> Path | None:
    """The directory of the connection's database file (None in memory, or when it cannot be told)."""
    try:
        row = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchone()
    except Exception:  # a stand-in connection in tests, or an old DuckDB
        return None
    return Path(row[0]).parent if row and row[0] else None


def _probe_disk(directory: Path) -> None:
    """Write ``PROBE_BYTES`` beside the database, fsync them, remove them: ``OSError`` while the disk is full."""
    probe = directory / f".armor-ab-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            data = memoryview(b"\0" * PROBE_BYTES)
            while data:  # a nearly full disk takes part of a write, then refuses the rest (ENOSPC)
                data = data[os.write(fd, data):]
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        try:
            os.unlink(probe)
        except FileNotFoundError:
            pass
