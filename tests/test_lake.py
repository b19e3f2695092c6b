"""The event lake (``armor-ab events export``): Parquet, hive-partitioned by date, exported by commit
sequence exactly once, crash-safe, and read back as it is by DuckDB, ClickHouse (chDB) and Spark."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from armor_ab.cli import app
from armor_ab.event_schema import EXPORT_SCHEMA, TABLE_COLUMN_NAMES
from armor_ab.events import EventIn, to_arrow
from armor_ab.store import lake
from armor_ab.store.db import connect
from armor_ab.store.lake import LakeError, export_events, follow, lake_files, read_manifest
from armor_ab.store.writer import append_events

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)
runner = CliRunner()

# The table's rows in plain values: what every reader of the lake must give back.
PLAIN = ("event_id::VARCHAR, experiment, variant, user_id, item_id, type, value, epoch_us(ts), "
         "epoch_us(received_at), properties::VARCHAR, source, commit_seq")


def table_rows(db: Path) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return sorted(con.execute(f"SELECT {PLAIN} FROM events").fetchall())
    finally:
        con.close()


def duckdb_lake_rows(root: Path) -> list[tuple]:
    """The lake as DuckDB reads the directory (every *.parquet under it, hive partitioning on)."""
    con = duckdb.connect()
    try:
        rows = con.execute(
            f"SELECT {PLAIN}, date, CAST(to_timestamp(epoch_us(ts) / 1e6) AT TIME ZONE 'UTC' AS DATE) "
            f"FROM read_parquet('{root}/events/**/*.parquet', hive_partitioning = true)").fetchall()
    finally:
        con.close()
    assert all(r[-2] == r[-1] for r in rows), "a row in the partition of another date than its ts"
    return sorted(r[:-2] for r in rows)


def events(n: int, day: int = 0, *, tag: str = "u", hours: int = 5) -> list[EventIn]:
    """``n`` events spread over ``hours`` hours from ``T0 + day`` days: some crossing into the next date."""
    out = []
    for i in range(n):
        kind = ("exposure", "page_view", "dwell", "inquiry")[i % 4]
        out.append(EventIn(
            event_id=str(uuid.uuid4()), experiment="x", variant=("control", "armor", None)[i % 3] if kind != "dwell"
            else "armor", user_id=f"{tag}{i}", item_id=None if i % 5 == 0 else f"pumps-{i % 7:02d}", type=kind,
            value=1000.0 + i if kind == "dwell" else (12.5 if kind == "inquiry" and i % 2 else None),
            ts=T0 + timedelta(days=day, minutes=i * hours * 60 // max(n, 1) + 13 * 60),
            properties={"device": "mobile", "n": i} if i % 2 else None))
    return out


def commit(con: duckdb.DuckDBPyConnection, evs: list[EventIn], received: datetime | None = None) -> None:
    """One writer transaction (the import path): one commit_seq for all of them."""
    con.execute("BEGIN")
    append_events(con, to_arrow(evs, received, source="import"))
    con.execute("COMMIT")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "lake.duckdb"
    con = connect(path)
    try:
        for day in range(4):
            commit(con, events(30, day, tag=f"d{day}-"))
    finally:
        con.close()
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def visible(root: Path) -> list[Path]:
    return sorted((root / "events").glob("*/*.parquet"))


def check_manifest(root: Path, db: Path) -> dict:
    """The manifest lists exactly the visible files, with their rows and checksums, and no pending run."""
    m = read_manifest(root)
    assert m is not None and m["pending"] is None
    listed = {f["path"]: f for e in m["exports"] for f in e["files"]}
    assert sorted(root / p for p in listed) == visible(root)
    for rel, f in listed.items():
        path = root / rel
        assert sha256(path) == f["sha256"] and path.stat().st_size == f["bytes"]
        assert pq.read_metadata(path).num_rows == f["rows"]
        assert rel.startswith(f"events/date={f['date']}/part-")
    assert m["rows"] == sum(f["rows"] for f in listed.values())
    assert [c["name"] for c in m["columns"]] == list(TABLE_COLUMN_NAMES)
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert m["exported_through"] == con.execute("SELECT max(commit_seq) FROM events").fetchone()[0]
    finally:
        con.close()
    ranges = [(e["after"], e["through"]) for e in m["exports"]]
    assert all(a < b for a, b in ranges) and all(p[1] == n[0] for p, n in zip(ranges, ranges[1:], strict=False))
    return m


def test_export_round_trips_through_duckdb_with_plain_types(db: Path, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    con = connect(db)
    try:
        result = export_events(con, root, rows_per_file=7, database=str(db))
    finally:
        con.close()
    assert result.rows == 120 and result.after == -1 and result.exported_through == result.through == 4
    assert duckdb_lake_rows(root) == table_rows(db)
    m = check_manifest(root, db)
    assert m["schema_version"] == 6 and m["exports"][0]["made_by"]["database"] == str(db)
    assert m["exports"][0]["made_by"]["tool"] == "armor-ab"
    # Plain Parquet types, no DuckDB-only one; the partition column only in the path.
    f = visible(root)[0]
    assert pq.read_schema(f).remove_metadata().equals(EXPORT_SCHEMA)
    parquet = pq.ParquetFile(f).schema
    assert parquet.column(0).physical_type == "BYTE_ARRAY"  # event_id: a string, not a 16-byte UUID
    ts = parquet.column(7)
    logical = json.loads(ts.logical_type.to_json())
    assert ts.physical_type == "INT64" and (logical["Type"], logical["isAdjustedToUTC"], logical["timeUnit"]) == (
        "Timestamp", True, "microseconds")
    assert {p.name.split("=")[1] for p in (root / "events").iterdir()} == {
        (T0 + timedelta(days=d)).date().isoformat() for d in range(5)}  # the last day's evening spills over


def test_exports_are_incremental_and_a_late_commit_is_not_lost(db: Path, tmp_path: Path) -> None:
    """The second run exports only what was committed since, including a row whose received_at and ts
    are older than rows already exported (received before, committed after): commit_seq, not time."""
    root = tmp_path / "lake"
    con = connect(db)
    try:
        first = export_events(con, root)
        late = events(3, 0, tag="late-")
        commit(con, late, received=T0 - timedelta(days=1))  # received long ago, committed only now
        commit(con, events(5, 9, tag="new-"))
        second = export_events(con, root)
        third = export_events(con, root)
    finally:
        con.close()
    assert (first.rows, second.rows, third.rows) == (120, 8, 0)
    assert second.after == first.through and second.through == first.through + 2
    assert third.files == [] and third.exported_through == second.through
    assert duckdb_lake_rows(root) == table_rows(db)
    m = check_manifest(root, db)
    assert len(m["exports"]) == 2  # a run with nothing new records nothing
    late_ids = {e.event_id for e in late}
    assert {r[0] for r in duckdb_lake_rows(root) if r[0] in late_ids} == late_ids


def test_plain_sql_inserts_are_exported_and_explicit_nulls_are_reported(db: Path, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    con = connect(db)
    try:
        export_events(con, root)
        # Around the writer: the column's DEFAULT numbers each row; an explicit NULL cannot be exported.
        con.execute("INSERT INTO events (event_id, experiment, user_id, type, ts, received_at) "
                    "SELECT gen_random_uuid(), 'x', 'sql' || i::VARCHAR, 'page_view', ?, ? FROM range(4) t(i)",
                    [T0, T0])
        con.execute("INSERT INTO events (event_id, experiment, user_id, type, received_at, commit_seq) "
                    "VALUES (gen_random_uuid(), 'x', 'nul', 'page_view', ?, NULL)", [T0])
        result = export_events(con, root)
    finally:
        con.close()
    assert result.rows == 4 and result.unsequenced == 1
    assert duckdb_lake_rows(root) == [r for r in table_rows(db) if r[-1] is not None]


def test_since_keeps_later_events_and_is_fixed_for_the_lake(db: Path, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    start = datetime(2026, 11, 3, tzinfo=UTC)  # midnight UTC: --since with a date and no zone
    since = start.date().isoformat()
    r = runner.invoke(app, ["events", "export", "--to", str(root), "--db", str(db), "--since", since])
    assert r.exit_code == 0, r.output
    rows = duckdb_lake_rows(root)
    assert rows == [t for t in table_rows(db) if t[7] >= int(start.timestamp() * 1_000_000)] and len(rows) < 120
    assert read_manifest(root)["since"] == start.isoformat()
    r = runner.invoke(app, ["events", "export", "--to", str(root), "--db", str(db), "--since", "2026-01-01"])
    assert r.exit_code == 2 and "was started with --since" in r.output


def test_cli_reports_what_it_exported(db: Path, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    r = runner.invoke(app, ["events", "export", "--to", str(root), "--db", str(db), "--rows-per-file", "50"])
    assert r.exit_code == 0, r.output
    assert "exported 120 rows (commit_seq 0..4) in" in r.output
    assert "the lake holds 120 rows through commit_seq 4" in r.output
    again = runner.invoke(app, ["events", "export", "--to", str(root), "--db", str(db)])
    assert again.exit_code == 0 and "nothing new to export" in again.output


def test_a_directory_with_foreign_files_or_another_exporter_is_refused(db: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    (foreign / "events" / "date=2026-01-01").mkdir(parents=True)
    pq.write_table(EXPORT_SCHEMA.empty_table(), foreign / "events" / "date=2026-01-01" / "x.parquet")
    con = connect(db)
    try:
        with pytest.raises(LakeError, match="no manifest.json"):
            export_events(con, foreign)
        root = tmp_path / "lake"
        with lake._locked(root), pytest.raises(LakeError, match="another export is writing"):
            export_events(con, root)
    finally:
        con.close()


def test_follow_exports_each_new_commit_once(db: Path, tmp_path: Path) -> None:
    """``--continuous``: each round opens the file, exports what was committed since, lets go of it."""
    root = tmp_path / "lake"
    results = []

    def after_round(result: lake.ExportResult) -> None:
        results.append(result)
        if len(results) < 3:  # the file is free between rounds: another process's write lands here
            con = connect(db)
            try:
                commit(con, events(6, 5 + len(results), tag=f"r{len(results)}-"))
            finally:
                con.close()

    rounds = follow(lambda: connect(db, read_only=True), root, interval_s=0.01, rounds=4, on_export=after_round)
    assert rounds == 4
    assert [r.rows for r in results] == [120, 6, 6, 0]
    assert duckdb_lake_rows(root) == table_rows(db)
    check_manifest(root, db)


def test_cli_continuous_follows_the_file_until_interrupted(db: Path, tmp_path: Path) -> None:
    """``--continuous`` in a real process: rounds let go of the file, so another command writes between
    them; the next round exports that; SIGINT stops it cleanly."""
    from armor_ab.store.db import DatabaseLockedError

    root = tmp_path / "lake"
    proc = subprocess.Popen(
        [sys.executable, "-m", "armor_ab", "events", "export", "--to", str(root), "--db", str(db), "--continuous",
         "--interval", "0.2"], env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT)

    def wait_rows(n: int) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            m = read_manifest(root) if (root / "manifest.json").exists() else None
            if m and m["rows"] == n:
                return
            assert proc.poll() is None
            time.sleep(0.05)
        pytest.fail(f"the lake never reached {n} rows")

    try:
        wait_rows(120)
        deadline = time.monotonic() + 30
        while True:  # the exporter holds the file during a round: try again between rounds
            try:
                con = connect(db)
                break
            except DatabaseLockedError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        try:
            commit(con, events(6, 8, tag="live-"))
        finally:
            con.close()
        wait_rows(126)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out.decode()
    # (The second round's line may be cut short: the signal can land between its manifest and its report.)
    assert "exported 120 rows" in out.decode() and out.decode().endswith("stopped\n")
    assert duckdb_lake_rows(root) == table_rows(db)


def test_an_empty_log_makes_an_empty_lake(tmp_path: Path) -> None:
    db = tmp_path / "empty.duckdb"
    r = runner.invoke(app, ["events", "export", "--to", str(tmp_path / "lake"), "--db", str(db)])
    assert r.exit_code == 0, r.output
    assert "nothing new to export" in r.output and "the lake is empty" in r.output
    m = read_manifest(tmp_path / "lake")
    assert (m["exported_through"], m["rows"], m["exports"]) == (-1, 0, [])


def test_a_stop_event_ends_follow_between_rounds(db: Path, tmp_path: Path) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=follow, args=(lambda: connect(db, read_only=True), tmp_path / "lake"),
                              kwargs={"interval_s": 30.0, "stop": stop})
    thread.start()
    deadline = time.monotonic() + 30
    while read_manifest(tmp_path / "lake") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    assert read_manifest(tmp_path / "lake")["rows"] == 120


def test_a_killed_export_leaves_no_partial_file_and_a_rerun_exports_each_row_once(db: Path, tmp_path: Path) -> None:
    """SIGKILL an export in the middle (a test hook pauses it before each rename), then rerun: the
    files visible meanwhile are whole, temporary files match no reader's glob, and after the rerun the
    lake holds exactly the table: same count, same event ids, no duplicate, no gap."""
    root = tmp_path / "lake"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    slow_export = ("import sys, time; import armor_ab.store.lake as lake; "
                   "lake.before_rename = lambda: time.sleep(0.3); "
                   "from armor_ab.cli import app; sys.argv[0] = 'armor-ab'; app()")
    proc = subprocess.Popen(
        [sys.executable, "-c", slow_export, "events", "export", "--to", str(root), "--db", str(db),
         "--rows-per-file", "8"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:  # a temporary file being written, and some files already renamed
            temps = list((root / "events").glob("*/.part-*.tmp")) if (root / "events").is_dir() else []
            if temps and len(visible(root)) >= 3:
                break
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            time.sleep(0.02)
        else:
            pytest.fail("the export never reached the middle")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

    manifest = read_manifest(root)
    assert manifest is not None and manifest["exports"] == [] and manifest["pending"]["through"] == 4
    assert lake_files(root) == []  # nothing finished: a manifest reader sees an empty lake
    for f in visible(root):  # every visible file is whole
        assert pq.read_table(f).num_rows > 0
    assert list((root / "events").glob("*/.part-*.tmp"))  # the file being written when it died
    partial = duckdb_lake_rows(root)  # what a reader of the directory sees: no row twice
    assert 0 < len(partial) < 120 and len({r[0] for r in partial}) == len(partial)

    con = connect(db)
    try:
        commit(con, events(10, 7, tag="after-"))  # new commits meanwhile: the rerun takes them after the range
    finally:
        con.close()
    r = runner.invoke(app, ["events", "export", "--to", str(root), "--db", str(db), "--rows-per-file", "8"])
    assert r.exit_code == 0, r.output
    assert "finished the export a crash interrupted (commit_seq 0..4)" in r.output
    assert "exported 10 rows (commit_seq 5..5)" in r.output
    rows = duckdb_lake_rows(root)
    table = table_rows(db)
    assert len(rows) == len(table) == 130 and rows == table
    assert {r[0] for r in rows} == {t[0] for t in table}
    assert not list((root / "events").glob("*/.*"))  # no temporary file left
    m = check_manifest(root, db)
    assert [(e["after"], e["through"]) for e in m["exports"]] == [(-1, 4), (4, 5)]


def test_a_run_that_died_before_its_manifest_is_finished_by_the_next(db: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file renamed, the manifest not yet replaced: the rerun writes the same range to the same
    names, equal byte for byte (each replaced atomically), and removes a file of that range it did not write."""
    root = tmp_path / "lake"
    con = connect(db)
    try:
        finish = lake._finish

        def die(*args: object, **kwargs: object) -> None:
            raise RuntimeError("died before the manifest")

        monkeypatch.setattr(lake, "_finish", die)
        with pytest.raises(RuntimeError, match="died before"):
            export_events(con, root, rows_per_file=10)
        before = {p: sha256(p) for p in visible(root)}
        assert before and read_manifest(root)["pending"]["through"] == 4 and lake_files(root) == []
        stray = visible(root)[0].with_name(f"part-{0:020d}-{4:020d}-0099.parquet")
        stray.write_bytes(visible(root)[0].read_bytes())  # as if the dead run had split the range otherwise
        monkeypatch.setattr(lake, "_finish", finish)
        result = export_events(con, root, rows_per_file=10)
    finally:
        con.close()
    assert result.resumed == (-1, 4) and result.rows == 0 and result.lake_rows == 120
    assert {p: sha256(p) for p in visible(root)} == before  # the stray is gone, the rest unchanged
    assert duckdb_lake_rows(root) == table_rows(db)
    check_manifest(root, db)


def test_the_server_exports_on_a_read_cursor_while_the_writer_writes(tmp_path: Path) -> None:
    """Through the database process's read path (no writer lock): exports taken while batches commit
    add up to the table exactly."""
    from armor_ab.events import event_rows
    from armor_ab.store.process import StoreClient

    db = tmp_path / "served.duckdb"
    root = tmp_path / "lake"
    store = StoreClient(db, dedup_window=10_000)
    try:
        stop = threading.Event()

        def produce() -> None:
            day = 0
            while not stop.is_set():
                store.submit(event_rows(events(50, day % 6, tag=f"p{day}-"), T0 + timedelta(days=day % 6))).result(10)
                day += 1

        producer = threading.Thread(target=produce)
        producer.start()
        results = []
        try:
            for _ in range(4):
                results.append(store.read(export_events, str(root), rows_per_file=40).result(60))
                time.sleep(0.1)
        finally:
            stop.set()
            producer.join(30)
        results.append(store.read(export_events, str(root)).result(60))
        assert sum(r.rows for r in results) == results[-1].lake_rows > 0
    finally:
        store.close()
    assert duckdb_lake_rows(root) == table_rows(db)
    check_manifest(root, db)


def test_chdb_reads_the_lake_as_it_is(db: Path, tmp_path: Path) -> None:
    chdb = pytest.importorskip("chdb")
    root = tmp_path / "lake"
    con = connect(db)
    try:
        export_events(con, root, rows_per_file=16)
    finally:
        con.close()
    table = chdb.query(
        "SELECT event_id, experiment, variant, user_id, item_id, type, value, toUnixTimestamp64Micro(ts), "
        "toUnixTimestamp64Micro(received_at), properties, source, commit_seq, toString(date), "
        "toString(toDate(ts, 'UTC')) "
        f"FROM file('{root}/events/*/*.parquet', Parquet) SETTINGS use_hive_partitioning = 1", "ArrowTable")
    rows = [tuple(r.values()) for r in table.to_pylist()]
    assert all(r[-2] == r[-1] for r in rows)
    assert sorted(r[:-2] for r in rows) == table_rows(db)


@pytest.fixture(scope="module")
def spark():
    pyspark = pytest.importorskip("pyspark.sql")
    session = (pyspark.SparkSession.builder.master("local[1]").appName("armor-ab-lake-test")
               .config("spark.ui.enabled", "false").config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.shuffle.partitions", "2").getOrCreate())
    yield session
    session.stop()


@pytest.mark.slow
def test_spark_reads_the_lake_as_it_is(spark, db: Path, tmp_path: Path) -> None:  # noqa: ANN001 - a SparkSession
    root = tmp_path / "lake"
    con = connect(db)
    try:
        export_events(con, root, rows_per_file=16)
    finally:
        con.close()
    df = spark.read.parquet(str(root / "events"))  # the directory as it is: hive partitions discovered
    assert dict(df.dtypes)["date"] == "date" and dict(df.dtypes)["ts"] == "timestamp"
    df.createOrReplaceTempView("lake")
    rows = spark.sql(
        "SELECT event_id, experiment, variant, user_id, item_id, type, value, unix_micros(ts), "
        "unix_micros(received_at), properties, source, commit_seq, date, to_date(ts) FROM lake").collect()
    assert all(r[-2] == r[-1] for r in rows)
    assert all(isinstance(r[-2], date) for r in rows)
    assert sorted(tuple(r)[:-2] for r in rows) == table_rows(db)
    assert json.loads(next(r[9] for r in rows if r[9]))["device"] == "mobile"
