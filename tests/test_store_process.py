"""The database process against a real DuckDB file: answers, errors, locks, and dying parents."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from armor_ab.assets import DEMO_EXPERIMENT
from armor_ab.experiments.loader import load_experiment_file
from armor_ab.store.db import DatabaseLockedError
from armor_ab.store.experiments import ExperimentError, set_status, upsert_experiment
from armor_ab.store.process import RemoteError, StoreClient, query
from armor_ab.store.writer import WriterClosedError
from tests.helpers.store import rows

EXPERIMENT = DEMO_EXPERIMENT


def _raise_unpicklable(con) -> None:
    class Local(Exception):  # a class defined in a function cannot be pickled
        pass

    raise Local("no way back as is")


@pytest.fixture
def store(tmp_path: Path):
    committed: list[str] = []
    client = StoreClient(tmp_path / "p.duckdb", on_rows_committed=committed.extend)
    client.committed = committed  # type: ignore[attr-defined]
    yield client
    client.close()


def test_batches_are_answered_after_commit_and_retries_count_once(store: StoreClient) -> None:
    batch = rows(50)
    assert store.submit(batch).result(10) == (50, 0)
    assert store.submit(batch[:20] + rows(5)).result(10) == (5, 20)  # a retry plus five new
    assert store.read(query, "SELECT count(*), count(DISTINCT event_id) FROM events").result(10) == [(55, 55)]
    assert store.committed_events == 55


def test_exposure_rows_are_shipped_in_bundles_and_reported_committed(store: StoreClient) -> None:
    exposures = rows(30, kind="exposure")
    for row in exposures:
        store.log_row(row)
    deadline = time.monotonic() + 10
    while len(store.committed) < 30 and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.02)
    assert sorted(store.committed) == sorted(r[0] for r in exposures)  # type: ignore[attr-defined]
    assert store.read(query, "SELECT count(*) FROM events WHERE type = 'exposure'").result(10) == [(30,)]


def test_a_barrier_resolves_after_every_row_logged_before_it_is_committed(store: StoreClient) -> None:
    """Reports ask for a barrier first: exposures logged just before (still in the API's row buffer, the
    bundle not yet shipped) are committed by the time it resolves, whatever the bundle timer says."""
    for _ in range(20):
        logged = rows(7, kind="exposure", user="barrier")
        for row in logged:
            store.log_row(row)
        store.barrier().result(timeout=30)
        ids = [r[0] for r in logged]
        found = store.read(query, "SELECT count(*) FROM events WHERE list_contains(?::VARCHAR[], event_id::VARCHAR)", [ids]).result(30)
        assert found == [(7,)]


def test_writes_return_a_fresh_snapshot_and_errors_keep_their_type(store: StoreClient) -> None:
    spec = load_experiment_file(EXPERIMENT)
    (record, action), snapshot = store.write(upsert_experiment, spec).result(10)
    assert action == "create" and [r.key for r in snapshot.experiments] == [spec.key]
    record, snapshot = store.write(set_status, spec.key, "running").result(10)
    assert record.status == snapshot.experiments[0].status == "running"
    with pytest.raises(ExperimentError) as info:  # the API maps code and field to its error shape
        store.write(set_status, spec.key, "running").result(10)
    assert (info.value.code, info.value.field) == ("invalid_transition", "status")
    assert "it cannot go to running" in info.value.message
    with pytest.raises(duckdb.CatalogException, match="no_such_table"):
        store.read(query, "SELECT * FROM no_such_table").result(10)
    with pytest.raises(RemoteError, match="Local: no way back as is"):
        store.write(_raise_unpicklable).result(10)
    assert store.submit(rows(3)).result(10) == (3, 0)  # the writer lives on


def test_a_second_owner_is_refused_naming_the_file(store: StoreClient) -> None:
    started = time.monotonic()
    with pytest.raises(DatabaseLockedError, match="p.duckdb"):
        StoreClient(store.db_path, lock_wait_s=0.5)
    assert time.monotonic() - started < 30


def test_a_dead_database_process_fails_pending_work_and_refuses_new(tmp_path: Path) -> None:
    client = StoreClient(tmp_path / "d.duckdb")
    os.kill(client.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while client.alive and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not client.alive
    with pytest.raises(WriterClosedError, match="died"):
        client.submit(rows(1))
    client.close()


def test_the_database_process_exits_and_frees_the_file_when_its_parent_is_killed(tmp_path: Path) -> None:
    db = tmp_path / "orphan.duckdb"
    script = textwrap.dedent(f"""
        import sys, time, uuid
        from armor_ab.store.process import StoreClient
        from tests.helpers.store import rows
        client = StoreClient({str(db)!r})
        batch = rows(100)
        print(client.pid, client.submit(batch).result(10), flush=True)
        for row in rows(10, kind="exposure"):
            client.log_row(row)  # buffered, maybe shipped: either way never half-written
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[1])
    child_pid, answer = parent.stdout.readline().split(" ", 1)
    assert answer.strip() == "(100, 0)"
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    deadline = time.monotonic() + 20
    while Path(f"/proc/{child_pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
        try:  # a zombie is reaped by init; only a live process holds the lock
            if Path(f"/proc/{child_pid}/status").read_text().split("State:")[1].strip().startswith("Z"):
                break
        except (FileNotFoundError, IndexError):
            break
    con = duckdb.connect(str(db))  # the lock is free again
    n = con.execute("SELECT count(*) FROM events WHERE type = 'dwell'").fetchone()[0]
    con.close()
    assert n == 100


def _slow_count(con) -> int:
    time.sleep(0.3)
    return con.execute("SELECT count(*) FROM events").fetchone()[0]


def test_a_cancelled_read_does_not_stop_the_answers_to_the_next(store: StoreClient) -> None:
    """A caller that gives up on a read (its future cancelled before the answer) must not end the thread
    that delivers every other answer."""
    pending = store.read(_slow_count)
    assert pending.cancel()
    time.sleep(0.5)  # the cancelled read's answer arrives meanwhile
    assert store.read(_slow_count).result(timeout=10) == 0


def _out_of_memory(con) -> None:
    raise duckdb.OutOfMemoryException("Out of Memory Error: failed to allocate data of size 64.0 MiB (1GB/1GB used)")


SLOW = "SELECT count(*) FROM range(1000000000000) a(i) WHERE hash(i) % 7 = 3"  # hours, were it not stopped


def test_a_report_over_its_budget_is_stopped_and_the_writer_is_not_disturbed(tmp_path: Path) -> None:
    from armor_ab.store.process import ReadBudgetError

    store = StoreClient(tmp_path / "b.duckdb", report_timeout_s=0.3)
    try:
        started = time.monotonic()
        slow = store.read_bounded(query, SLOW)
        batches = [store.submit(rows(100)) for _ in range(20)]  # while the report runs
        assert [b.result(10) for b in batches] == [(100, 0)] * 20
        with pytest.raises(ReadBudgetError) as info:
            slow.result(30)
        assert time.monotonic() - started < 10
        assert info.value.code == "report_timeout" and "0.3 s" in info.value.message
        with pytest.raises(ReadBudgetError) as info:
            store.read_bounded(_out_of_memory).result(10)
        assert info.value.code == "report_too_large" and "256MB" in info.value.message
        assert store.read_bounded(query, "SELECT count(*) FROM events").result(10) == [(2000,)]  # the budget is per report
        assert store.read(query, SLOW.replace("1000000000000", "1000")).result(10)  # plain reads are not bounded this way
        assert store.fault is None
    finally:
        store.close()


def test_a_report_budget_duckdb_cannot_read_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="report memory limit must be a size"):
        StoreClient(tmp_path / "c.duckdb", report_memory_limit="1 bazillion")
