"""The database process: one child process owns the DuckDB file; the API talks to it over a socket.

Why a process and not a thread: DuckDB's insert of a batch needs the GIL at every hand-over of
Arrow data, and the API's event loop holds the GIL while it parses requests. On one interpreter the
two serialise (an insert runs about 4x slower next to a busy Python thread); in two processes they
run on two cores. It also keeps DuckDB's memory (buffer pool, the ``event_id`` index, which grows
with the log) out of the API process.

The child runs the same ``EventWriter`` as before, so the rules do not change: one writer thread,
group commits, an answer only after the commit that holds the rows. Reads run on a small pool of
cursors beside it. Reports run on their own two threads, each on a cursor with its own memory and
time budget (``report_memory_limit``: DuckDB's per-connection ``operator_memory_limit``, so a
report's hash tables and sorts spill to disk past it instead of taking the buffer pool the writer
needs; ``report_timeout_s``: a timer interrupts the cursor). A report over budget raises
``ReadBudgetError`` (``report_timeout``, or ``report_too_large`` when DuckDB runs out of memory
anyway). Messages are pickled tuples on a Unix socket (``multiprocessing.connection``
framing):

====================  ===============================================================
API -> database       database -> API
====================  ===============================================================
``batch id rows``     ``ok id (accepted, duplicates)`` after the commit, or ``err id exc``
``rows rows``         ``committed ids`` / ``failed ids`` (fire-and-forget exposures)
``write id fn a kw``  ``ok id (result, snapshot)``: ``fn(con, *a, **kw)`` on the writer thread
``read id fn a kw``   ``ok id result``: ``fn(cursor, *a, **kw)`` on a read thread
``report id fn a kw`` ``ok id result``: the same on a report thread, within the report budget
``stop``              ``stats committed depth`` after each commit, ``ready snapshot`` at start (with the catalog)
                      ``fault cause`` when writes start failing, ``fault None`` once recovered
====================  ===============================================================

Functions travel by reference, so they must be importable module-level functions. If the API
process dies (even by SIGKILL), the child sees the socket close, writes what it has queued, closes
the database and exits; a restarted API waits for the file lock that exit releases.

A write that fails on a fault (disk full, an I/O error) is answered ``WriteFailedError``; the
writer reopens the database if DuckDB invalidated it and probes until writes work again (see
``armor_ab.store.writer``), with no restart.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import logging
import pickle
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import duckdb

from armor_ab.store.writer import (
    QueueFullError,
    StoreFaultError,
    WriterClosedError,
    WriteResult,
    describe,
    is_fault,
    needs_reopen,
)

log = logging.getLogger("armor_ab.store")

ROWS_FLUSH_S = 0.02  # exposure rows are shipped to the database process in bundles this often
READY_TIMEOUT_S = 60.0
REPORT_THREADS = 2  # reports computed at once; with their memory budget, what reports can take
MEMORY_SAMPLE_S = 5.0  # how often the database process reports DuckDB's memory to the API
_MEMORY = re.compile(r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.IGNORECASE)
# The child's entry point. Like multiprocessing's spawn, it starts from this process's sys.path (the
# first argument), so it imports the same armor_ab (the installed one, whatever the working directory
# holds) and the same modules of the functions sent to it by reference. The environment is left as is.
# The leading comment names the process in `ps` and `top`.
_CHILD_MAIN = ("# armor_ab.store.process: the database process\n"
               "import json, sys; sys.path[:] = json.loads(sys.argv.pop(1)); "
               "from armor_ab.store.process import main; main()")


class StoreError(RuntimeError):
    """The database process failed in a way the caller cannot fix (it is gone, or did not start)."""


class RemoteError(RuntimeError):
    """An error raised in the database process whose type could not travel back as is."""


class ReadBudgetError(RuntimeError):
    """A report went over its budget: ``code`` is ``report_timeout`` or ``report_too_large``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message


MIN_DEDUP_WINDOW = 1_000  # ids; below this the window cannot tell even one batch's retry


def check_dedup_window(value: int, name: str = "dedup window") -> int:
    """``value`` if it is a usable dedup window size (event ids), else ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_DEDUP_WINDOW <= value <= 1_000_000_000:
        raise ValueError(f"{name} must be a whole number of event ids from {MIN_DEDUP_WINDOW:,} to 1,000,000,000, "
                         f"not {value!r}")
    return value


def check_memory_limit(value: str, name: str = "memory limit") -> str:
    """``value`` if DuckDB reads it as a memory size (e.g. ``256MB``, ``1GiB``); else ``ValueError``."""
    if not _MEMORY.match(value.strip()):
        raise ValueError(f"{name} must be a size such as 256MB or 1GB, not {value!r}")
    return value.strip()


@dataclass(frozen=True)
class Snapshot:
    """The small tables the API keeps in memory, read in one go after every admin write.

    ``catalog`` (the ``CatalogItem``s in catalog order) is read once, in the snapshot sent when the
    database process is ready, and is None in the ones after writes: the catalog changes only
    through ``armor-ab catalog import``, which needs the database file, so never under a running
    server, and re-reading every item after each admin write would cost more than the write.
    """

    experiments: list
    keys: dict[str, tuple[str, str]]
    content: dict[tuple[str, str, str], dict]
    content_status: dict[tuple[str, str, str], str]
    catalog: list | None = None
    # The digest of each page in ``content`` (the page served): every exposure of ``…/content`` records it.
    content_digests: dict[tuple[str, str, str], str] = field(default_factory=dict)


def read_snapshot(con: duckdb.DuckDBPyConnection, *, catalog: bool = False) -> Snapshot:
    from armor_ab.store.catalog import list_items
    from armor_ab.store.content import served_pages, statuses
    from armor_ab.store.experiments import list_experiments
    from armor_ab.store.keys import active_key_hashes

    pages, digests = served_pages(con)
    return Snapshot(list_experiments(con), active_key_hashes(con), pages, statuses(con),
                    list_items(con) if catalog else None, digests)


def query(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[tuple]:
    """Rows of one SQL statement: the generic read (``store.read(query, sql)``)."""
    return con.execute(sql, params or []).fetchall()


# -- the API side ----------------------------------------------------------------------------------


class StoreClient:
    """The API's handle on the database process: submit batches, log rows, run reads and writes."""

    def __init__(
        self,
        db_path: Path,
        *,
        memory_limit: str = "1GB",
        writer_queue: int = 20_000,
        dedup_window: int = 8_000_000,
        read_concurrency: int = 4,
        report_memory_limit: str = "256MB",
        report_timeout_s: float = 60.0,
        max_buffered_rows: int = 100_000,
        lock_wait_s: float = 10.0,
        preload: tuple[str, ...] = (),
        on_commit: Callable[[int, float, int], None] | None = None,  # (new events, seconds, late lookups)
        on_memory: Callable[[dict[str, int]], None] | None = None,  # DuckDB's memory by tag, every few seconds
        on_rows_committed: Callable[[list[str]], None] | None = None,
        on_rows_failed: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.db_path = Path(db_path)
        check_memory_limit(memory_limit)
        check_memory_limit(report_memory_limit, "report memory limit")
        if not report_timeout_s > 0:
            raise ValueError(f"report timeout must be positive, not {report_timeout_s!r}")
        check_dedup_window(dedup_window)
        self._on_commit = on_commit
        self._on_memory = on_memory
        self.late_lookups = 0
        self.db_memory: dict[str, int] = {}
        self._on_rows_committed = on_rows_committed
        self._on_rows_failed = on_rows_failed
        self._max_buffered_rows = max_buffered_rows
        self._futures: dict[int, Future] = {}
        self._ids = itertools.count()
        self._send_lock = threading.Lock()
        self._rows: collections.deque[tuple] = collections.deque()
        self._closed = False
        self._dead: str | None = None
        self._fault: str | None = None
        self._remote_depth = 0
        self.committed_events = 0
        parent, child = socket.socketpair()
        cmd = [
            sys.executable, "-c", _CHILD_MAIN, json.dumps(sys.path), "--fd", str(child.fileno()),
            "--db", str(self.db_path), "--memory-limit", memory_limit, "--writer-queue", str(writer_queue),
            "--dedup-window", str(dedup_window),
            "--read-concurrency", str(read_concurrency), "--lock-wait", str(lock_wait_s),
            "--report-memory-limit", report_memory_limit, "--report-timeout", repr(float(report_timeout_s)),
            *(arg for module in preload for arg in ("--preload", module)),
        ]
        self._proc = subprocess.Popen(cmd, pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL)
        child.close()
        self._conn = Connection(parent.detach())
        self.snapshot = self._wait_ready()
        self._receiver = threading.Thread(target=self._receive, name="armor-ab-store-recv", daemon=True)
        self._receiver.start()
        self._wake = threading.Event()
        self._flusher = threading.Thread(target=self._flush_rows_loop, name="armor-ab-store-rows", daemon=True)
        self._flusher.start()

    def _wait_ready(self) -> Snapshot:
        if not self._conn.poll(READY_TIMEOUT_S):
            self._proc.kill()
            raise StoreError(f"the database process for {self.db_path} did not start within {READY_TIMEOUT_S:.0f} s")
        try:
            kind, payload = self._conn.recv()
        except EOFError:
            self._proc.wait(10)
            raise StoreError(f"the database process for {self.db_path} exited with {self._proc.returncode}") from None
        if kind == "fatal":
            self._proc.wait(10)
            raise payload
        return payload

    # -- producer side (any thread) ---------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self._dead is None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def fault(self) -> str | None:
        """Why the database cannot take writes now (None when it can): gone, or a write fault it is
        recovering from by itself (disk full, I/O error)."""
        if self._dead:
            return self._dead
        if self._proc.poll() is not None:
            return "the database process exited"
        return self._fault

    @property
    def depth(self) -> int:
        """Rows not yet shipped plus what the database process last reported waiting (a gauge)."""
        return len(self._rows) + self._remote_depth

    def submit(self, rows: list[tuple]) -> Future[WriteResult]:
        """Queue event rows (``events`` column order); the future resolves after their commit."""
        return self._request("batch", rows)

    def write(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[tuple[Any, Snapshot]]:
        """``fn(con, *args, **kwargs)`` on the writer thread; resolves to (its result, a fresh snapshot)."""
        return self._request("write", fn, args, kwargs)

    def read(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        """``fn(cursor, *args, **kwargs)`` on one of the database process's read threads."""
        return self._request("read", fn, args, kwargs)

    def read_bounded(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        """``read`` on a report thread, within the report budget (memory, time): ``ReadBudgetError``
        when over it. For reads whose cost grows with the data (reports)."""
        return self._request("report", fn, args, kwargs)

    def barrier(self) -> Future[WriteResult]:
        """Resolves once every row logged and every batch queued before it is committed (read-your-writes
        for reports): the buffered rows are shipped now, then an empty batch, whose commit takes them along
        (the writer takes its row buffer with each transaction)."""
        self._ship_rows()
        return self.submit([])

    def _ship_rows(self) -> None:
        """Send the buffered rows to the database process now (the timer loop and ``barrier``); rows
        that cannot be sent are reported to ``on_rows_failed`` and the ``StoreError`` is raised."""
        rows = []
        while True:  # popleft until empty: the other caller may be draining the same buffer
            try:
                rows.append(self._rows.popleft())
            except IndexError:
                break
        if not rows:
            return
        try:
            self._send(("rows", rows))
        except StoreError:
            if self._on_rows_failed:
                self._on_rows_failed([r[0] for r in rows])
            raise

    def log_row(self, row: tuple) -> None:
        """Buffer one event row without waiting (exposures); shipped in bundles every few ms."""
        if self._closed or self._dead:
            raise WriterClosedError(self._dead or "the server is shutting down")
        if len(self._rows) >= self._max_buffered_rows:
            raise QueueFullError("the event writer's row buffer is full")
        self._rows.append(row)

    def close(self, timeout: float = 30.0) -> None:
        """Ship buffered rows, let the database process write what it holds, wait for it to exit."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self._flusher.join(timeout)
        try:
            self._send(("stop",))
        except StoreError:
            pass
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("database process did not stop; killing it", extra={"pid": self._proc.pid})
            self._proc.kill()
            self._proc.wait()
        self._receiver.join(5)
        self._conn.close()

    # -- plumbing ----------------------------------------------------------------------------------
    def _request(self, kind: str, *payload: Any) -> Future:
        if self._closed or self._dead:
            raise WriterClosedError(self._dead or "the server is shutting down")
        future: Future = Future()
        rid = next(self._ids)
        self._futures[rid] = future
        try:
            self._send((kind, rid, *payload))
        except StoreError:
            self._futures.pop(rid, None)
            raise WriterClosedError(self._dead or "the database process died") from None
        return future

    def _send(self, message: tuple) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self._send_lock:
            try:
                self._conn.send_bytes(data)
            except OSError as exc:
                raise StoreError(f"the database process is gone: {exc}") from None

    def _flush_rows_loop(self) -> None:
        while True:
            self._wake.wait(ROWS_FLUSH_S)
            closing = self._closed
            try:
                self._ship_rows()
            except StoreError:
                pass  # reported through on_rows_failed; the visitors' next requests log them again
            if closing:
                return

    def _receive(self) -> None:
        conn = self._conn
        while True:
            try:
                data = conn.recv_bytes()
            except (EOFError, OSError):
                break
            try:
                message = pickle.loads(data)
            except Exception:  # never lose the receiver to one bad message
                log.exception("unreadable message from the database process")
                continue
            kind = message[0]
            if kind == "ok" or kind == "err":
                future = self._futures.pop(message[1], None)
                # A caller may have given up (cancelled its future, e.g. a task cancelled at shutdown):
                # nothing to deliver, and setting a result on it would raise and end this thread.
                if future is None or not future.set_running_or_notify_cancel():
                    continue
                if kind == "ok":
                    future.set_result(message[2])
                else:
                    future.set_exception(message[2])
            elif kind == "committed":
                if self._on_rows_committed:
                    self._on_rows_committed(message[1])
            elif kind == "failed":
                if self._on_rows_failed:
                    self._on_rows_failed(message[1])
            elif kind == "fault":
                self._fault = message[1]
                if message[1] is None:
                    log.warning("database writes recovered", extra={"db": str(self.db_path)})
                else:
                    log.error("database writes failing", extra={"db": str(self.db_path), "cause": message[1]})
            elif kind == "stats":
                _, inserted, seconds, self._remote_depth, late = message
                self.committed_events += inserted
                late, self.late_lookups = late - self.late_lookups, late
                if self._on_commit:
                    self._on_commit(inserted, seconds, late)
            elif kind == "memory":
                self.db_memory = message[1]
                if self._on_memory:
                    self._on_memory(message[1])
        self._dead = "the database process exited" if self._closed else "the database process died"
        if not self._closed:
            log.error("database process died", extra={"pid": self._proc.pid, "returncode": self._proc.poll()})
        gone = WriterClosedError(self._dead)
        for rid in list(self._futures):
            future = self._futures.pop(rid, None)
            if future is not None and not future.done():
                future.set_exception(gone)


# -- the database side -------------------------------------------------------------------------------


class _Server:
    """The child: reads messages, feeds the writer, runs reads, answers."""

    def __init__(
        self, conn: Connection, con: duckdb.DuckDBPyConnection, writer_queue: int, read_concurrency: int, *,
        reopen: Callable[[], duckdb.DuckDBPyConnection] | None = None, report_memory_limit: str = "256MB",
        report_timeout_s: float = 60.0, preload: tuple[str, ...] = (), dedup_window: int = 8_000_000,
    ):
        from armor_ab.store.writer import EventWriter

        self.conn = conn
        self.send_lock = threading.Lock()
        self.writer = EventWriter(
            con, max_queue=writer_queue, on_commit=self._committed,
            on_rows_committed=lambda ids: self.send(("committed", ids)),
            on_rows_failed=lambda ids: self.send(("failed", ids)),
            reopen=reopen, on_fault=lambda cause: self.send(("fault", cause)), dedup_window=dedup_window,
        )
        self.reads = ThreadPoolExecutor(read_concurrency, thread_name_prefix="armor-ab-read")
        self.reports = ThreadPoolExecutor(REPORT_THREADS, thread_name_prefix="armor-ab-report")
        self.budget = (report_memory_limit, report_timeout_s)
        self.preload = preload
        self._stopping = threading.Event()
        self._sampler = threading.Thread(target=self._sample_memory, name="armor-ab-memory", daemon=True)

    def send(self, message: tuple) -> None:
        if message[0] == "err":
            message = ("err", message[1], _portable(message[2]))
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self.send_lock:
            try:
                self.conn.send_bytes(data)
            except OSError:
                pass  # the API is gone; the main loop sees EOF and shuts down

    def _committed(self, batches: int, inserted: int, seconds: float) -> None:
        self.send(("stats", inserted, seconds, self.writer.depth, self.writer.late_lookups))

    def _sample_memory(self) -> None:
        """DuckDB's own memory accounting by tag (buffer pool: table blocks, operators, ...), sent to
        the API every ``MEMORY_SAMPLE_S`` (``armor_ab_db_memory_bytes``), on a cursor of its own."""
        while not self._stopping.wait(MEMORY_SAMPLE_S):
            try:
                cur = self.writer.con.cursor()
                try:
                    rows = cur.execute("SELECT tag, memory_usage_bytes FROM duckdb_memory()").fetchall()
                finally:
                    cur.close()
            except duckdb.Error:
                continue  # a database being reopened: the next sample
            self.send(("memory", {tag: int(used) for tag, used in rows if used}))

    def answer(self, rid: int, future: Future) -> None:
        exc = future.exception()
        if exc is None:
            result = future.result()
            if isinstance(result, WriteResult):
                result = (result.accepted, result.duplicates)
            self.send(("ok", rid, result))
        else:
            self.send(("err", rid, exc))

    def run(self) -> None:
        from armor_ab.events import rows_to_arrow

        self.writer.start()
        self.send(("ready", read_snapshot(self.writer.con, catalog=True)))
        self._sampler.start()
        if self.preload:  # imported beside the loop, not by the first message that names one of them
            threading.Thread(target=_preload, args=(self.preload,), name="armor-ab-preload", daemon=True).start()
        while True:
            try:
                message = pickle.loads(self.conn.recv_bytes())
            except (EOFError, OSError):
                log.warning("API process went away; writing what is queued and stopping")
                break
            kind = message[0]
            if kind == "stop":
                break
            if kind == "rows":
                failed = []
                for row in message[1]:
                    try:
                        self.writer.log_row(row)
                    except (QueueFullError, WriterClosedError):
                        failed.append(row[0])
                if failed:
                    self.send(("failed", failed))
                continue
            rid = message[1]
            try:
                if kind == "batch":
                    future = self.writer.submit(rows_to_arrow(message[2]))
                elif kind == "write":
                    future = self.writer.call(_with_snapshot(message[2], message[3], message[4]))
                elif kind == "read":
                    future = self.reads.submit(_read, self.writer, message[2], message[3], message[4])
                elif kind == "report":
                    future = self.reports.submit(_bounded_read, self.writer, message[2], message[3], message[4],
                                                 *self.budget)
                else:
                    raise ValueError(f"unknown message {kind!r}")
            except Exception as exc:  # QueueFullError and friends travel back as the answer
                self.send(("err", rid, exc))
                continue
            future.add_done_callback(lambda f, rid=rid: self.answer(rid, f))
        self._stopping.set()
        self._sampler.join()  # no cursor of its own may be open when the connection closes
        self.writer.close()
        self.reads.shutdown(wait=True, cancel_futures=True)
        self.reports.shutdown(wait=True, cancel_futures=True)
        try:
            self.writer.con.close()
        except duckdb.Error:
            pass


def _preload(modules: tuple[str, ...]) -> None:
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # the message that needs it will say why
            log.exception("preloading a module failed", extra={"module": name})


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives a pickle round trip (the API re-raises it as is), else a RemoteError."""
    try:
        pickle.loads(pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL))
        return exc
    except Exception:
        return RemoteError(f"{type(exc).__name__}: {exc}")


def _with_snapshot(fn: Callable, args: tuple, kwargs: dict) -> Callable[[duckdb.DuckDBPyConnection], tuple]:
    def job(con: duckdb.DuckDBPyConnection) -> tuple:
        result = fn(con, *args, **kwargs)
        return result, read_snapshot(con)

    return job


def _cursor(writer: Any) -> duckdb.DuckDBPyConnection:
    """A cursor on the writer's current connection (a new one after a reopen)."""
    try:
        return writer.con.cursor()
    except duckdb.Error as exc:  # closed or invalidated while the writer reopens the database
        raise StoreFaultError(writer.fault or describe(exc)) from None


def _read_fault(writer: Any, exc: BaseException) -> StoreFaultError:
    """A read's fault: the writer's cause when the database waits to be reopened, else the read's own."""
    return StoreFaultError(writer.fault if needs_reopen(exc) and writer.fault else describe(exc))


def _read(writer: Any, fn: Callable, args: tuple, kwargs: dict) -> Any:
    cur = _cursor(writer)
    try:
        return fn(cur, *args, **kwargs)
    except duckdb.Error as exc:
        if needs_reopen(exc) or is_fault(exc):  # an I/O error, or a database being reopened: 503, not 500
            raise _read_fault(writer, exc) from None
        raise
    finally:
        cur.close()


def _interrupt_after(cur: duckdb.DuckDBPyConnection, timeout_s: float, done: threading.Event) -> None:
    """Interrupt ``cur`` after ``timeout_s``, and again every 20 ms until ``done``: DuckDB forgets an
    interrupt that arrives while a statement is still being planned."""
    wait = timeout_s
    while not done.wait(wait):
        try:
            cur.interrupt()
        except duckdb.Error:  # finished and closed meanwhile
            return
        wait = 0.02


class _Deadline:
    """A cursor that refuses to start a statement past ``deadline`` (``InterruptException``): the
    timer's interrupt stops only a statement that is running, and is lost between statements."""

    def __init__(self, cur: duckdb.DuckDBPyConnection, deadline: float) -> None:
        self._cur = cur
        self._deadline = deadline

    def execute(self, *args: Any, **kwargs: Any) -> _Deadline:
        if time.monotonic() >= self._deadline:
            raise duckdb.InterruptException("INTERRUPT Error: past the time budget")
        self._cur.execute(*args, **kwargs)
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)


def _bounded_read(writer: Any, fn: Callable, args: tuple, kwargs: dict, memory_limit: str, timeout_s: float) -> Any:
    """``_read`` within the report budget: DuckDB's ``operator_memory_limit`` on the cursor (its joins,
    aggregates and sorts spill to disk past it rather than take the writer's memory), and a time
    budget: a timer interrupts the running statement after ``timeout_s``, and no statement starts
    after it."""
    cur = _cursor(writer)
    done = threading.Event()
    timer = threading.Thread(target=_interrupt_after, args=(cur, timeout_s, done), name="armor-ab-report-timer",
                             daemon=True)
    try:
        cur.execute(f"SET operator_memory_limit = '{memory_limit}'")
        deadline = time.monotonic() + timeout_s
        timer.start()
        return fn(_Deadline(cur, deadline), *args, **kwargs)
    except duckdb.InterruptException:
        raise ReadBudgetError(
            "report_timeout", f"the report took longer than its time budget of {timeout_s:g} s "
            "(armor-ab serve --report-timeout)") from None
    except duckdb.OutOfMemoryException as exc:
        raise ReadBudgetError(
            "report_too_large", f"the report needs more memory than the database process has for it "
            f"(its budget: armor-ab serve --report-memory-limit {memory_limit}): {describe(exc)}") from None
    except duckdb.Error as exc:
        if needs_reopen(exc) or is_fault(exc):  # e.g. no room on the disk to spill to
            raise _read_fault(writer, exc) from None
        raise
    finally:
        done.set()
        if timer.is_alive():
            timer.join()  # no interrupt may reach the cursor once it is closed, nor the next user of it
        cur.close()


def _open(db: Path, memory_limit: str, lock_wait_s: float) -> duckdb.DuckDBPyConnection:
    """Open the database, waiting up to ``lock_wait_s`` for a previous owner that is shutting down."""
    from armor_ab.store.db import DatabaseLockedError, connect

    deadline = time.monotonic() + lock_wait_s
    while True:
        try:
            con = connect(db)
            break
        except DatabaseLockedError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)
    # DuckDB's buffer pool defaults to 80% of RAM; the API shares its machine, and its working
    # set (the event_id index, uncheckpointed rows) is far smaller.
    con.execute(f"SET memory_limit = '{memory_limit}'")
    return con


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m armor_ab.store.process")
    ap.add_argument("--fd", type=int, required=True)
    ap.add_argument("--db", type=Path, required=True)
    ap.add_argument("--memory-limit", default="1GB")
    ap.add_argument("--writer-queue", type=int, default=20_000)
    ap.add_argument("--dedup-window", type=int, default=8_000_000)
    ap.add_argument("--read-concurrency", type=int, default=4)
    ap.add_argument("--lock-wait", type=float, default=10.0)
    ap.add_argument("--report-memory-limit", default="256MB")
    ap.add_argument("--report-timeout", type=float, default=60.0)
    ap.add_argument("--preload", action="append", default=[], help="a module to import at start (the reads' own)")
    args = ap.parse_args(argv)
    from armor_ab.config import env_settings
    from armor_ab.logs import setup_logging

    setup_logging(env_settings().log_level)
    # Several threads share this interpreter (receiver, writer, reads); hand the GIL over sooner
    # than the default 5 ms so that none waits behind another's Python work.
    sys.setswitchinterval(0.0005)
    conn = Connection(args.fd)
    try:
        con = _open(args.db, args.memory_limit, args.lock_wait)
        cur = con.cursor()  # refuse a report budget DuckDB does not read, now rather than per report
        cur.execute(f"SET operator_memory_limit = '{check_memory_limit(args.report_memory_limit)}'")
        cur.close()
    except Exception as exc:
        conn.send(("fatal", _portable(exc)))
        sys.exit(1)

    def reopen() -> duckdb.DuckDBPyConnection:  # after a fault: the same file, the same settings
        return _open(args.db, args.memory_limit, 0.0)

    _Server(conn, con, args.writer_queue, args.read_concurrency, reopen=reopen, dedup_window=args.dedup_window,
            report_memory_limit=args.report_memory_limit, report_timeout_s=args.report_timeout,
            preload=tuple(args.preload)).run()


if __name__ == "__main__":
    # Run the module under its import name, so that what it pickles (Snapshot, errors) names
    # ``armor_ab.store.process`` and not ``__main__``.
    from armor_ab.store.process import main as _main

    _main()
