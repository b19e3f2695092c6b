"""The writer thread against a real DuckDB file: group commits, dedup, back-pressure."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import wait
from datetime import UTC, datetime

import duckdb
import pytest

from armor_ab.events import EventIn, to_arrow
from armor_ab.store.db import connect
from armor_ab.store.writer import EventWriter, QueueFullError


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
        writer.log_row((i, "e", "a", "u", None, "exposure", None, now, now, None))
    with pytest.raises(Full):  # the buffer is bounded; the caller counts what it could not log
        writer.log_row((str(uuid.uuid4()), "e", "a", "u", None, "exposure", None, now, now, None))
    deadline = time.monotonic() + 10
    while len(committed) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(committed) == sorted(ids)  # committed within a row linger, with nothing else queued
    last = str(uuid.uuid4())
    writer.log_row((last, "e", "a", "u", None, "exposure", None, now, now, None))
    writer.close()  # a clean shutdown writes what is buffered
    con = duckdb.connect(str(db_path))
    assert con.execute("SELECT count(*) FROM events WHERE type = 'exposure'").fetchone()[0] == 6
    con.close()
