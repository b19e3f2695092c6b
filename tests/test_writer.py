"""The writer thread against a real DuckDB file: group commits, dedup, back-pressure."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import wait
from datetime import UTC, datetime

import duckdb
import pytest

from armor_ab.event_schema import exposure_row
from armor_ab.events import EventIn, to_arrow
from armor_ab.store.db import connect
from armor_ab.store.writer import EventWriter, QueueFullError


def _exposure(event_id: str, now: datetime) -> tuple:
    return exposure_row(event_id=event_id, experiment="e", variant="a", user_id="u", item_id=None, ts=now,
                        received_at=now, properties=None)


def events(n: int, **kw) -> list[EventIn]:
    return [EventIn(event_id=str(uuid.uuid4()), experiment="e", variant="a", user_id=f"u{i}", type="page_view", **kw)
            for i in range(n)]


def test_batches_commit_with_per_batch_counts(db_path) -> None:
    writer = EventWriter(connect(db_path)).start()
    first = events(5)
    a = writer.submit(to_arrow(first)).result(10)
    b = writer.submit(to_arrow(first[:2] + events(3))).result(10)
    c = writer.submit(to_arrow(first[:1] + first[:1])).result(10)
    writer.close()
    assert (a.accepted, a.duplicates) == (5, 0)
    assert (b.accepted, b.duplicates) == (3, 2)
    assert (c.accepted, c.duplicates) == (0, 2)
    con = duckdb.connect(str(db_path))
    assert con.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone() == (8, 8)
    con.close()


def test_concurrent_batches_share_transactions_and_one_id_counts_once(db_path) -> None:
    writer = EventWriter(connect(db_path))
    shared = events(1)
    futures = [writer.submit(to_arrow(shared + events(10))) for _ in range(50)]  # queued before start
    writer.start()
    wait(futures, timeout=30)
    writer.close()
    results = [f.result() for f in futures]
    assert sum(r.accepted for r in results) == 50 * 10 + 1
    assert sum(r.duplicates for r in results) == 49
    con = duckdb.connect(str(db_path))
    assert con.execute("SELECT count(*) FROM events").fetchone()[0] == 501
    con.close()


def test_full_queue_refuses_instead_of_dropping(db_path) -> None:
    gate = threading.Event()
    writer = EventWriter(connect(db_path), max_queue=3).start()
    blocker = writer.call(lambda con: gate.wait(10))  # hold the writer thread
    accepted = []
    with pytest.raises(QueueFullError):
        for _ in range(10):
            accepted.append(writer.submit(to_arrow(events(1))))
    gate.set()
    blocker.result(10)
    assert all(f.result(10).accepted == 1 for f in accepted)
    writer.close()


def test_a_failing_job_does_not_kill_the_writer(db_path) -> None:
    writer = EventWriter(connect(db_path)).start()
    bad = writer.call(lambda con: con.execute("SELECT * FROM no_such_table"))
    with pytest.raises(duckdb.CatalogException):
        bad.result(10)
    assert writer.submit(to_arrow(events(2), datetime.now(UTC))).result(10).accepted == 2
    writer.close()


def test_exposure_ids_are_uuid5() -> None:
    from armor_ab.events import exposure_event_id

    for user in ("visitor-42", "ünïcødé", "x" * 199, ""):
        name = f"armor-ab:exposure:catalog-interleaved:2:{user}"
        assert exposure_event_id("catalog-interleaved", 2, user) == str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def test_buffered_rows_commit_without_waking_per_row_and_on_close(db_path) -> None:
    from armor_ab.store.writer import QueueFullError as Full

    committed: list[str] = []
    writer = EventWriter(connect(db_path), row_linger_s=0.05, max_buffered_rows=5,
                         on_rows_committed=committed.extend).start()
    now = datetime.now(UTC)
    ids = [str(uuid.uuid4()) for _ in range(5)]
    for i in ids:
        writer.log_row(_exposure(i, now))
    with pytest.raises(Full):  # the buffer is bounded; the caller counts what it could not log
        writer.log_row(_exposure(str(uuid.uuid4()), now))
    deadline = time.monotonic() + 10
    while len(committed) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(committed) == sorted(ids)  # committed within a row linger, with nothing else queued
    last = str(uuid.uuid4())
    writer.log_row(_exposure(last, now))
    writer.close()  # a clean shutdown writes what is buffered
    con = duckdb.connect(str(db_path))
    assert con.execute("SELECT count(*) FROM events WHERE type = 'exposure'").fetchone()[0] == 6
    con.close()


class FlakyConnection:
    """A connection whose commits fail while ``error`` is set, as on a full disk; a ``FatalException``
    also invalidates it, as DuckDB invalidates a database after a checkpoint that could not write."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.error: BaseException | None = None
        self.times: int | None = None  # fail this many commits only (None: until ``error`` is cleared)
        self.invalid = False

    def execute(self, sql: str, *args):
        if self.invalid:
            raise duckdb.FatalException("FATAL Error: Failed: database has been invalidated because of a previous "
                                        "fatal error. The database must be restarted prior to being used again.")
        if self.error is not None and sql == "COMMIT":
            self.con.execute("ROLLBACK")  # a failed commit ends its transaction
            self.invalid = isinstance(self.error, duckdb.FatalException)
            error = self.error
            if self.times is not None:
                self.times -= 1
                if self.times == 0:
                    self.error = None
            raise error
        if self.error is not None and sql == "SELECT 1":  # the writer's probe fails too while the fault lasts
            raise self.error
        return self.con.execute(sql, *args)

    def register(self, *args):
        return self.con.register(*args)

    def unregister(self, *args):
        return self.con.unregister(*args)

    def cursor(self):
        return self.con.cursor()

    def close(self) -> None:
        self.con.close()


def _wait(check, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.01)
    return check()


def test_a_failed_commit_is_a_write_failure_and_the_writer_recovers_by_itself(db_path) -> None:
    from armor_ab.store.writer import WriteFailedError

    flaky = FlakyConnection(connect(db_path))
    faults: list[str | None] = []
    failed_rows: list[str] = []
    writer = EventWriter(flaky, on_fault=faults.append, on_rows_failed=failed_rows.extend).start()
    before = events(5)
    assert writer.submit(to_arrow(before)).result(10).accepted == 5
    flaky.error = duckdb.TransactionException(
        'TransactionContext Error: Failed to commit: Could not write file "/srv/armor/x.duckdb.wal": '
        "No space left on device")
    now = datetime.now(UTC)
    exposure = str(uuid.uuid4())
    writer.log_row(_exposure(exposure, now))
    with pytest.raises(WriteFailedError) as info:
        writer.submit(to_arrow(events(3))).result(10)
    assert "No space left on device" in info.value.cause and "/srv/armor" not in info.value.cause
    assert info.value.retry_after >= 1
    assert writer.fault == info.value.cause and faults == [info.value.cause]
    assert _wait(lambda: exposure in failed_rows)  # fire-and-forget rows are reported failed, not lost silently
    with pytest.raises(WriteFailedError):  # still failing: still refused, never acknowledged
        writer.submit(to_arrow(events(3))).result(10)
    flaky.error = None  # space freed: the next probe (within 2 s) clears the fault
    assert _wait(lambda: writer.fault is None, 10)
    assert faults[-1] is None
    assert writer.submit(to_arrow(events(4))).result(10).accepted == 4
    writer.close()
    con = duckdb.connect(str(db_path))
    assert con.execute("SELECT count(*) FROM events").fetchone()[0] == 9  # the 5 acknowledged before, and 4
    con.close()


def test_an_invalidated_database_is_closed_and_reopened(db_path) -> None:
    from armor_ab.store.writer import WriteFailedError

    flaky = FlakyConnection(connect(db_path))
    reopened: list[duckdb.DuckDBPyConnection] = []

    def reopen() -> duckdb.DuckDBPyConnection:
        reopened.append(connect(db_path))  # the file lock is free: the invalidated connection was closed
        return reopened[-1]

    writer = EventWriter(flaky, reopen=reopen).start()
    acknowledged = events(5)
    assert writer.submit(to_arrow(acknowledged)).result(10).accepted == 5
    flaky.error = duckdb.FatalException('Failed to create checkpoint because of error: Could not write file '
                                        '"/srv/armor/x.duckdb": No space left on device')
    with pytest.raises(WriteFailedError, match="checkpoint"):
        writer.submit(to_arrow(events(3))).result(10)
    assert _wait(lambda: writer.fault is None, 10) and len(reopened) == 1
    assert writer.submit(to_arrow(events(2))).result(10).accepted == 2
    assert writer.call(lambda con: con.execute("SELECT count(*) FROM events").fetchone()[0]).result(10) == 7
    writer.close()
    reopened[0].close()


def test_a_job_failing_on_a_fault_is_a_write_failure(db_path) -> None:
    from armor_ab.store.writer import WriteFailedError

    def oom(con) -> None:
        raise duckdb.OutOfMemoryException("Out of Memory Error: could not allocate block of size 256.0 KiB")

    writer = EventWriter(connect(db_path), retry_min_s=0.01).start()
    with pytest.raises(WriteFailedError, match="OutOfMemoryException"):
        writer.call(oom).result(10)
    assert _wait(lambda: writer.fault is None)  # the probe finds nothing wrong
    assert writer.submit(to_arrow(events(1))).result(10).accepted == 1
    writer.close()


def test_a_commit_out_of_memory_for_a_moment_is_tried_again(db_path) -> None:
    """A report holding DuckDB's buffer pool can make a commit run out of memory: the writer tries
    again (twice) before it answers 503, so a batch does not fail for a moment's squeeze."""
    flaky = FlakyConnection(connect(db_path))
    faults: list[str | None] = []
    writer = EventWriter(flaky, on_fault=faults.append).start()
    flaky.error, flaky.times = duckdb.OutOfMemoryException("Out of Memory Error: could not allocate block"), 2
    assert writer.submit(to_arrow(events(3))).result(10).accepted == 3
    assert faults == [] and writer.fault is None
    writer.close()
