"""Event ids stay unique without an in-memory index that grows with the log (armor_ab.store.dedup).

The writer's window holds the newest ids in memory allocated at start; events it cannot vouch for
(older than the window) are looked up in the table. These tests pin the exactness of that rule,
the window's fixed memory, and the bug it replaces: DuckDB's PRIMARY KEY index on event_id ran the
database out of memory once the log outgrew the buffer pool.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from armor_ab.event_schema import UNIQUE_BY_WRITER
from armor_ab.events import ARROW_SCHEMA, EventIn, to_arrow
from armor_ab.store.db import connect
from armor_ab.store.dedup import NEVER, RecentIds, uuid_keys
from armor_ab.store.writer import EventWriter, append_events


def keys(n: int) -> np.ndarray:
    return uuid_keys(pa.array([str(uuid.uuid4()) for _ in range(n)]))


def events(n: int, ts: datetime | None = None) -> list[EventIn]:
    ts = ts or datetime.now(UTC)
    return [EventIn(event_id=str(uuid.uuid4()), experiment="e", variant="a", user_id=f"u{i}", type="page_view", ts=ts)
            for i in range(n)]


def stored(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    return con.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone()


def test_the_statistics_read_the_comment_the_store_writes() -> None:
    from armor_ab.stats.sql import UNIQUE_BY_WRITER as READ
    from armor_ab.stats.sql import event_id_enforced_unique

    assert READ == UNIQUE_BY_WRITER
    con = duckdb.connect(":memory:")
    from armor_ab.store.schema import ensure_schema

    ensure_schema(con)
    assert event_id_enforced_unique(con, "events")
    con.execute("CREATE TABLE other AS SELECT * FROM events")  # a table without the promise is deduplicated
    assert not event_id_enforced_unique(con, "other")


def test_uuid_keys_are_the_uuid_bytes_and_refuse_anything_else() -> None:
    ids = [str(uuid.uuid4()) for _ in range(50)] + ["00000000-0000-0000-0000-000000000000"]
    got = uuid_keys(pa.chunked_array([pa.array(ids[:20]), pa.array(ids[20:])]))
    assert [bytes(k).ljust(16, b"\0") for k in got] == [uuid.UUID(i).bytes for i in ids]
    assert (uuid_keys(pa.array([i.upper() for i in ids])) == got).all()
    for bad in (["not-a-uuid"], ["0" * 36], [ids[0].replace("-", "x")], [None]):
        with pytest.raises(ValueError):
            uuid_keys(pa.array(bad, type=pa.string()))
    assert len(uuid_keys(pa.chunked_array([], type=pa.string()))) == 0


def test_the_window_holds_the_newest_ids_and_says_how_far_back_it_is_complete() -> None:
    window = RecentIds(capacity=4_000, generations=4)  # three sealed generations of 1,000 and one filling
    batches = [keys(500) for _ in range(12)]
    for t, batch in enumerate(batches, start=1):
        assert not window.contains(batch).any()
        window.add(batch, newest_received_us=t)
    # 6,000 added, six generations sealed: the three oldest (batches 1-6) left, and the newest time
    # among them bounds what the window no longer knows. It holds 3,000 to 4,000 ids.
    assert window.evicted_until == 6
    assert len(window) == 3_000 and window.capacity == 4_000
    for t, batch in enumerate(batches, start=1):
        assert window.contains(batch).all() == (t > 6)
        assert not window.contains(batch).any() == (t <= 6)
    assert window._counts.sum(dtype=np.int64) == 2 * len(window)  # evicted keys left the filter too
    ts = np.array([6 + 300_000_000, 7 + 300_000_000])
    assert window.covers(ts, max_future_us=300_000_000).tolist() == [False, True]


def test_ids_sharing_their_first_half_are_told_apart() -> None:
    """Time-ordered UUIDs (v7) share leading bytes; the second half separates them in a sealed run."""
    prefix = uuid.uuid4().hex[:16]
    ids = [str(uuid.UUID(prefix + uuid.uuid4().hex[16:])) for _ in range(3_000)]
    k = uuid_keys(pa.array(ids))
    window = RecentIds(capacity=4_000, generations=4)
    window.add(k[:2_000], 1)
    assert window.contains(k[:2_000]).all() and not window.contains(k[2_000:]).any()


def test_the_window_allocates_its_memory_once() -> None:
    window = RecentIds(capacity=64_000, generations=8)
    blocks = (window._hi.ctypes.data, window._lo.ctypes.data, window._counts.ctypes.data)
    size = window._hi.nbytes + window._lo.nbytes + window._counts.nbytes
    for _ in range(40):
        window.add(keys(1_000), 1)
    assert (window._hi.ctypes.data, window._lo.ctypes.data, window._counts.ctypes.data) == blocks
    assert window._hi.nbytes + window._lo.nbytes + window._counts.nbytes == size
    assert len(window._filling) < window.generation_size


def test_a_retry_older_than_the_window_is_still_left_out(db_path: Path) -> None:
    con = connect(db_path)
    writer = EventWriter(con, dedup_window=1_000).start()
    first = events(300)
    assert writer.submit(to_arrow(first)).result(10).accepted == 300
    for _ in range(10):  # 3,000 more: the first batch is long gone from the window
        assert writer.submit(to_arrow(events(300))).result(10).accepted == 300
    assert writer._window.evicted_until != NEVER
    lookups = writer.late_lookups
    again = writer.submit(to_arrow(first[:150] + events(150))).result(10)
    assert (again.accepted, again.duplicates) == (150, 150)
    assert writer.late_lookups > lookups  # found by the lookup in the table, not the window
    # A retry of a recent batch is told by the window alone.
    recent = events(200)
    writer.submit(to_arrow(recent)).result(10)
    lookups = writer.late_lookups
    assert writer.submit(to_arrow(recent)).result(10).duplicates == 200
    writer.close()
    assert stored(con) == (3_650, 3_650)
    con.close()


def test_an_old_event_imported_twice_counts_once(db_path: Path) -> None:
    """History (ts weeks back) is always beyond the window: the lookup in the table keeps it exact."""
    con = connect(db_path)
    history = events(100, ts=datetime.now(UTC) - timedelta(days=30))
    writer = EventWriter(con, dedup_window=10_000).start()
    assert writer.submit(to_arrow(history, source="import")).result(10).accepted == 100
    assert writer.submit(to_arrow(history, source="import")).result(10).duplicates == 100
    writer.close()
    con.execute("BEGIN")  # the CLI's import (no server, no window) looks every row up
    assert append_events(con, to_arrow(history[:10] + events(5), source="import")).__len__() == 5
    con.execute("COMMIT")
    assert stored(con) == (105, 105)
    con.close()


def test_a_restarted_writer_knows_the_ids_stored_before(db_path: Path) -> None:
    con = connect(db_path)
    batch = events(50)
    writer = EventWriter(con, dedup_window=10_000).start()
    writer.submit(to_arrow(batch)).result(10)
    writer.close()
    writer = EventWriter(con, dedup_window=10_000).start()  # loads the newest ids from the table
    assert len(writer._window) == 50
    lookups = writer.late_lookups
    assert writer.submit(to_arrow(batch)).result(10).duplicates == 50
    assert writer.late_lookups == lookups  # the window alone knew them
    writer.close()
    con.close()


def test_a_window_smaller_than_the_log_loads_the_newest_and_stays_exact(db_path: Path) -> None:
    con = connect(db_path)
    writer = EventWriter(con, dedup_window=1_000).start()
    batches = [events(400) for _ in range(5)]
    for b in batches:
        writer.submit(to_arrow(b)).result(10)
    writer.close()
    writer = EventWriter(con, dedup_window=1_000).start()
    # The newest rows up to the capacity, whole received_at instants only (a batch shares one): 2 of 5.
    assert len(writer._window) == 800 and writer._window.evicted_until != NEVER
    for b in batches:  # every retry, whether in the window or not
        assert writer.submit(to_arrow(b)).result(10).duplicates == 400
    writer.close()
    assert stored(con) == (2_000, 2_000)
    con.close()


def test_the_log_outgrows_the_buffer_pool_without_running_it_out_of_memory(db_path: Path) -> None:
    """The bug this replaces: with the PRIMARY KEY, 1.5M events needed ~75 MB of index in a 48 MB
    pool, and the commit failed with "Out of Memory Error"; the index is gone, so it fits."""
    con = connect(db_path)
    con.execute("SET memory_limit = '48MB'")
    writer = EventWriter(con, dedup_window=2_000_000).start()
    gen = con.cursor()
    received = datetime.now(UTC)
    for _ in range(15):
        table = gen.sql(
            "SELECT gen_random_uuid()::VARCHAR AS event_id, 'e' AS experiment, 'a' AS variant, "
            "'u' || (i % 5000)::VARCHAR AS user_id, NULL::VARCHAR AS item_id, 'page_view' AS type, "
            "NULL::DOUBLE AS value, $t AS ts, $t AS received_at, NULL::VARCHAR AS properties, "
            "'client' AS source FROM range(100000) t(i)", params={"t": received},
        ).to_arrow_table()
        table = pa.Table.from_arrays([table.column(f.name).cast(f.type) for f in ARROW_SCHEMA], schema=ARROW_SCHEMA)
        assert writer.submit(table).result(60).accepted == 100_000
    gen.close()
    writer.close()
    assert con.execute("SELECT count(*) FROM events").fetchone()[0] == 1_500_000
    art = con.execute("SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory() WHERE tag = 'ART_INDEX'")
    assert art.fetchone()[0] == 0
    con.close()


def test_the_server_keeps_ids_unique_past_its_window_and_reports_the_lookups(tmp_path: Path) -> None:
    """Through the real API: a retry after the window forgot the batch is still a duplicate, the
    lookups and DuckDB's memory are on /metrics, and a window too small to work is refused."""
    import re
    import subprocess
    import sys
    import time

    import httpx

    from tests.helpers.platform import Server, seed_database

    db = tmp_path / "armor_ab.duckdb"
    keys = seed_database(db)
    refused = subprocess.run([sys.executable, "-m", "armor_ab", "serve", "--db", str(db), "--dedup-window", "10"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "--dedup-window" in refused.stderr and "1,000" in refused.stderr

    server = Server(db, extra_args=["--dedup-window", "1000"]).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30.0, headers={"Authorization": f"Bearer {keys['client']}"}) as c:
            def batch() -> list[dict]:
                return [{"event_id": str(uuid.uuid4()), "experiment": "catalog-interleaved", "user_id": f"v{i}",
                         "type": "page_view"} for i in range(250)]

            first = batch()
            assert c.post("/v1/events", json={"events": first}).json() == {"accepted": 250, "duplicates": 0}
            for _ in range(8):
                assert c.post("/v1/events", json={"events": batch()}).json()["accepted"] == 250
            assert c.post("/v1/events", json={"events": first}).json() == {"accepted": 0, "duplicates": 250}
        deadline = time.monotonic() + 15
        while True:
            metrics = httpx.get(f"{server.url}/metrics").text
            late = re.search(r"^armor_ab_events_late_lookups_total (\S+)$", metrics, re.M)
            pool = re.search(r'^armor_ab_db_memory_bytes\{tag="base_table"\} (\S+)$', metrics, re.M)
            if (late and pool) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert late and float(late.group(1)) >= 250  # the retry was looked up in the table
        assert pool and float(pool.group(1)) > 0
    finally:
        server.stop()
    con = duckdb.connect(str(db), read_only=True)
    assert stored(con) == (2_250, 2_250)
    con.close()
