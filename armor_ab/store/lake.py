"""The event lake: the event log as plain Parquet, hive-partitioned by date, exported exactly once.

``armor-ab events export --to DIR`` (``export_events``) writes::

    DIR/manifest.json                                  what was exported: the source of truth, written last
    DIR/.lock                                          held by the exporter at work (one per lake)
    DIR/events/date=2026-11-01/part-<after+1>-<through>-<n>.parquet

**Incremental and exactly once, by commit sequence.** Every row of ``events`` carries the
``commit_seq`` of the transaction that inserted it (``armor_ab.store.writer``: one writer, so the
numbers increase in commit order). The manifest records ``exported_through``, the highest number
exported; a run exports the rows with ``exported_through < commit_seq <= through``, ``through``
being the highest number committed when it starts. A row committed later has a higher number, so
it falls in the next run's range: never skipped, never exported twice. (``received_at`` would not
do: it is set before the commit, so a slow commit could land behind a range already exported.)

**Crash safety.** Each file is written under a temporary name in its partition directory
(``.part-….parquet.<pid>.tmp``: a dot and no ``.parquet`` suffix, so neither a ``*.parquet`` glob nor
Spark, Hive or Trino, which skip dot files, ever read it), fsynced, then renamed to its final name
(atomic) and the directory fsynced. A reader never sees a partial file. A run first records its
range in the manifest as ``pending``, then writes its files, then replaces the manifest (written to
a temporary file, fsynced, renamed: atomic) with the range as exported. A run that finds a pending
range (the last one died) exports that same range again first: the same rows to the same file
names (each file replaced atomically by an identical one), removes any file of that range the
manifest does not list, and only then takes the new commits. So after a crash and a rerun the lake
holds every row once: no duplicate, no gap. Between the crash and the rerun a reader of the
directory may see some of the unfinished range's files (complete files, each row once); a reader
that must see only finished exports reads the files the manifest lists.

**Plain types** (``armor_ab.event_schema.EXPORT_SCHEMA``), which Spark, ClickHouse, DuckDB, Trino
and BigQuery read as they are: ``event_id`` and ``properties`` as strings (UUID and JSON text), ``ts``
and ``received_at`` as Parquet timestamps in microseconds, adjusted to UTC, ``commit_seq`` as int64;
zstd. The partition column ``date`` (``YYYY-MM-DD``, the UTC date of ``ts``, or of ``received_at``
for a row without ``ts``) is in the path only, as Hive partitioning wants.

The export only reads the database, so it runs on any connection or cursor: the CLI's on a file no
server holds, or a read cursor of the server's database process (``StoreClient.read(export_events,
dir)``), beside the writer, without its lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from armor_ab.event_schema import COMMIT_SEQ, EVENT_SCHEMA, EXPORT_SCHEMA

log = logging.getLogger("armor_ab.lake")

LAKE_FORMAT = "armor-ab event lake"
LAKE_FORMAT_VERSION = 1
TABLE = "events"  # the table's directory under the lake, and the table exported
MANIFEST = "manifest.json"
LOCK = ".lock"
PARTITION = "date"
COMPRESSION = "zstd"
ROW_GROUP = 131_072  # rows per Parquet row group (and per batch read from DuckDB)
DEFAULT_ROWS_PER_FILE = 8 * ROW_GROUP
NOTHING = -1  # ``exported_through`` of an empty lake: every commit_seq (0 and up) is above it
PART = re.compile(r"^part-(\d{20})-(\d{20})-(\d{4})\.parquet$")
TEMP = re.compile(r"^\.part-.*\.tmp$")

_US_PER_DAY = 86_400_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The instant a row is filed under: ts, or received_at for a row inserted without one (plain SQL).
_WHEN = "epoch_us(coalesce(ts, received_at))"
_DAY = f"CAST(floor(coalesce({_WHEN}, 0) / {_US_PER_DAY}.0) AS BIGINT)"


class LakeError(RuntimeError):
    """The lake cannot be exported to as asked (another exporter, a foreign directory, a changed --since)."""


@dataclass(frozen=True)
class LakeFile:
    path: str  # relative to the lake's root, e.g. events/date=2026-11-01/part-…parquet
    date: str
    rows: int
    bytes: int
    sha256: str
    min_commit_seq: int
    max_commit_seq: int


@dataclass(frozen=True)
class ExportResult:
    """What one run did: the rows of ``after < commit_seq <= through`` went into ``files``."""

    rows: int
    files: list[str]
    after: int
    through: int
    lake_rows: int  # rows in the lake now
    exported_through: int  # the lake's high-water mark now
    resumed: tuple[int, int] | None = None  # the range of an interrupted run, finished first
    unsequenced: int = 0  # rows with no commit_seq (inserted with an explicit NULL): never exported
    seconds: float = 0.0


@dataclass
class _Manifest:
    since: str | None = None
    exported_through: int = NOTHING
    rows: int = 0
    exports: list[dict] = field(default_factory=list)
    pending: dict | None = None
    extra: dict = field(default_factory=dict)  # keys written by newer code, kept as they are

    def files(self) -> set[str]:
        return {f["path"] for e in self.exports for f in e["files"]}


# --- the manifest -----------------------------------------------------------------------------


def _columns() -> list[dict]:
    return [{"name": c.name, "type": str(EXPORT_SCHEMA.field(c.name).type), "database_type": c.sql}
            for c in EVENT_SCHEMA]


def _made_by(database: str | None) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    try:
        tool_version = version("armor-ab")
    except PackageNotFoundError:
        tool_version = "unknown"
    return {"tool": "armor-ab", "version": tool_version, "command": "events export", "host": socket.gethostname(),
            "pid": os.getpid(), "python": sys.version.split()[0], "pyarrow": pa.__version__,
            "duckdb": duckdb.__version__, "database": database}


def read_manifest(root: Path) -> dict | None:
    """The lake's manifest as written (None when there is none)."""
    path = Path(root) / MANIFEST
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LakeError(f"{path} is not valid JSON ({exc.msg}); it is written atomically, so something else "
                        "changed it") from None
    if data.get("format") != LAKE_FORMAT:
        raise LakeError(f"{path} is not the manifest of an armor-ab event lake")
    if data.get("format_version", 0) > LAKE_FORMAT_VERSION:
        raise LakeError(f"{path} has lake format version {data['format_version']}, newer than this armor-ab's "
                        f"{LAKE_FORMAT_VERSION}: upgrade armor-ab to export to it")
    return data


def _load(root: Path) -> _Manifest:
    data = read_manifest(root)
    if data is None:
        return _Manifest()
    known = {"format", "format_version", "table", "path", "partitioning", "file_format", "schema_version",
             "columns", "since", "exported_through", "rows", "files", "exports", "pending", "updated_at"}
    return _Manifest(since=data.get("since"), exported_through=int(data["exported_through"]), rows=int(data["rows"]),
                     exports=list(data["exports"]), pending=data.get("pending"),
                     extra={k: v for k, v in data.items() if k not in known})


def _write_manifest(root: Path, m: _Manifest, schema_version: int | None) -> None:
    data = {
        "format": LAKE_FORMAT,
        "format_version": LAKE_FORMAT_VERSION,
        "table": TABLE,
        "path": TABLE,
        "partitioning": {"style": "hive", "column": PARTITION, "type": "date",
                         "value": "UTC date of ts (of received_at when ts is NULL)"},
        "file_format": {"format": "parquet", "compression": COMPRESSION, "row_group_rows": ROW_GROUP},
        "schema_version": schema_version,
        "columns": _columns(),
        "since": m.since,
        "exported_through": m.exported_through,
        "rows": m.rows,
        "files": len(m.files()),
        "updated_at": datetime.now(UTC).isoformat(),
        "pending": m.pending,
        "exports": m.exports,
        **m.extra,
    }
    _atomic_write(root / MANIFEST, (json.dumps(data, indent=1) + "\n").encode())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def lake_files(root: Path) -> list[Path]:
    """The files the manifest lists as exported (what a reader that wants only finished exports reads)."""
    data = read_manifest(root)
    if data is None:
        return []
    return [Path(root) / f["path"] for e in data["exports"] for f in e["files"]]


# --- the lock -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LakeError(f"another export is writing the lake {root} (it holds {root / LOCK})") from None
        yield
    finally:
        os.close(fd)  # releases the lock


# --- writing files --------------------------------------------------------------------------------


def _select_list() -> str:
    """The table's columns as plain types: UUID and JSON as text, timestamps as epoch microseconds."""
    out = []
    for c in EVENT_SCHEMA:
        if c.sql in ("UUID", "JSON"):
            out.append(f"{c.name}::VARCHAR AS {c.name}")
        elif c.sql == "TIMESTAMPTZ":
            out.append(f"epoch_us({c.name}) AS {c.name}")
        else:
            out.append(c.name)
    return ", ".join(out)


def _plain(batch: pa.RecordBatch) -> pa.Table:
    """A batch of ``_select_list`` in ``EXPORT_SCHEMA``'s types (integers become UTC timestamps)."""
    columns = [batch.column(i).cast(f.type) for i, f in enumerate(EXPORT_SCHEMA)]
    return pa.Table.from_arrays(columns, schema=EXPORT_SCHEMA)


def _day_name(day: int) -> str:
    return (date(1970, 1, 1) + timedelta(days=day)).isoformat()


def _range_filter(since: str | None) -> str:
    where = f"{COMMIT_SEQ} > $after AND {COMMIT_SEQ} <= $through"
    if since is not None:
        where += f" AND {_WHEN} >= $since_us"
    return where


def _params(after: int, through: int, since: str | None) -> dict:
    params: dict[str, Any] = {"after": after, "through": through}
    if since is not None:
        params["since_us"] = (datetime.fromisoformat(since) - _EPOCH) // timedelta(microseconds=1)
    return params


def before_rename() -> None:
    """Called after each file is written and fsynced, before its rename: nothing here. A test replaces
    it (in the export's own process) to hold an export in the middle and kill it there."""


class _FileWriter:
    """Writes one final file through a temporary name: write, fsync, hash, rename, fsync the directory."""

    def __init__(self, root: Path, rel: str, day: str) -> None:
        self.root, self.rel, self.day = root, rel, day
        self.final = root / rel
        if not self.final.parent.is_dir():
            self.final.parent.mkdir(parents=True, exist_ok=True)
            _fsync_dir(self.final.parent.parent)  # the new partition directory itself is durable
        self.tmp = self.final.with_name(f".{self.final.name}.{os.getpid()}.tmp")
        self.writer = pq.ParquetWriter(self.tmp, EXPORT_SCHEMA, compression=COMPRESSION, version="2.6")
        self.rows = 0
        self.min_seq: int | None = None
        self.max_seq: int | None = None

    def write(self, table: pa.Table) -> None:
        self.writer.write_table(table, row_group_size=ROW_GROUP)
        self.rows += table.num_rows
        seqs = table.column(COMMIT_SEQ)
        lo, hi = pc.min(seqs).as_py(), pc.max(seqs).as_py()
        self.min_seq = lo if self.min_seq is None else min(self.min_seq, lo)
        self.max_seq = hi if self.max_seq is None else max(self.max_seq, hi)

    def close(self) -> LakeFile:
        self.writer.close()
        digest = hashlib.sha256()
        with open(self.tmp, "rb") as fh:
            os.fsync(fh.fileno())
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
        size = self.tmp.stat().st_size
        before_rename()
        os.replace(self.tmp, self.final)  # atomic: the old file (a rerun's identical one) or this one
        _fsync_dir(self.final.parent)
        return LakeFile(self.rel, self.day, self.rows, size, digest.hexdigest(), int(self.min_seq or 0),
                        int(self.max_seq or 0))

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()


def _export_range(con: duckdb.DuckDBPyConnection, root: Path, after: int, through: int, since: str | None,
                  rows_per_file: int) -> list[LakeFile]:
    """Write the rows of ``after < commit_seq <= through`` (at or after ``since``) as the lake's files.

    One pass over the range, sorted by date, then ``ts, event_id``: deterministic, so the same range
    gives the same file names holding the same rows (a rerun replaces a crashed run's files with
    equal ones). The ``commit_seq`` bounds let DuckDB skip the row groups of earlier commits.
    """
    where, params = _range_filter(since), _params(after, through, since)
    (root / TABLE).mkdir(parents=True, exist_ok=True)
    reader = con.sql(
        f"SELECT {_select_list()}, {_DAY} AS _day FROM events WHERE {where} "
        f"ORDER BY _day, ts, event_id, {COMMIT_SEQ}", params=params).to_arrow_reader(ROW_GROUP)
    files: list[LakeFile] = []
    out: _FileWriter | None = None
    day, n = None, 0
    try:
        for batch in reader:
            days = batch.column(len(EXPORT_SCHEMA)).to_numpy()
            table = _plain(batch)
            cuts = [0, *(np.flatnonzero(np.diff(days)) + 1).tolist(), len(days)]  # runs of one date
            for lo, hi in zip(cuts, cuts[1:], strict=False):
                if int(days[lo]) != day:
                    if out is not None:
                        files.append(out.close())
                        out = None
                    day, n = int(days[lo]), 0
                piece = table.slice(lo, hi - lo)
                while piece.num_rows:
                    if out is None:
                        name = _day_name(day)
                        out = _FileWriter(root, f"{TABLE}/{PARTITION}={name}/part-{after + 1:020d}-{through:020d}-"
                                                f"{n:04d}.parquet", name)
                        n += 1
                    take = min(piece.num_rows, rows_per_file - out.rows)
                    out.write(piece.slice(0, take))
                    piece = piece.slice(take)
                    if out.rows >= rows_per_file:
                        files.append(out.close())
                        out = None
        if out is not None:
            files.append(out.close())
            out = None
    except BaseException:
        if out is not None:
            out.abort()
        raise
    finally:
        reader.close()
    return files


def _sweep(root: Path, listed: set[str]) -> list[str]:
    """Remove temporary files and part files the manifest does not list (left by a run that died)."""
    removed = []
    table_dir = root / TABLE
    if not table_dir.is_dir():
        return removed
    for part_dir in sorted(table_dir.iterdir()):
        if not part_dir.is_dir() or not part_dir.name.startswith(f"{PARTITION}="):
            continue
        for f in sorted(part_dir.iterdir()):
            rel = f"{TABLE}/{part_dir.name}/{f.name}"
            if TEMP.match(f.name) or (PART.match(f.name) and rel not in listed):
                f.unlink()
                removed.append(rel)
        with contextlib.suppress(OSError):
            part_dir.rmdir()  # only when empty
    if removed:
        log.warning("removed files of an export that did not finish", extra={"files": removed})
    return removed


# --- exporting --------------------------------------------------------------------------------------


def _schema_version(con: duckdb.DuckDBPyConnection) -> int | None:
    from armor_ab.store.migrations import current_version

    return current_version(con)


def _normalize_since(since: datetime | str | None) -> str | None:
    if since is None:
        return None
    if isinstance(since, str):
        since = datetime.fromisoformat(since)
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return since.astimezone(UTC).isoformat()


def _finish(m: _Manifest, files: list[LakeFile], started: datetime, schema_version: int | None) -> None:
    pending = m.pending
    assert pending is not None
    rows = sum(f.rows for f in files)
    m.exports.append({"after": pending["after"], "through": pending["through"], "rows": rows,
                      "started_at": started.isoformat(), "finished_at": datetime.now(UTC).isoformat(),
                      "schema_version": schema_version, "made_by": pending["made_by"],
                      "files": [asdict(f) for f in files]})
    m.exported_through = pending["through"]
    m.rows += rows
    m.pending = None


def _export_locked(con: duckdb.DuckDBPyConnection, root: Path, *, since: str | None, rows_per_file: int,
                   database: str | None) -> ExportResult:
    clock = time.perf_counter()
    check_lake(root)
    m = _load(root)
    if since is not None and m.since != since and (m.exports or m.pending):
        raise LakeError(f"the lake {root} was started with --since {m.since or '(none)'}, not {since}: "
                        "a lake keeps the start it was made with")
    if m.exports or m.pending:
        since = m.since
    m.since = since
    con.execute("BEGIN TRANSACTION")  # one snapshot for the whole run
    try:
        schema_version = _schema_version(con)
        resumed = None
        if m.pending is not None:  # the last run died: export its range again, to the same names
            p = m.pending
            log.warning("finishing an export that did not finish", extra={"after": p["after"], "through": p["through"]})
            started = datetime.now(UTC)
            files = _export_range(con, root, p["after"], p["through"], m.since, int(p["rows_per_file"]))
            resumed = (p["after"], p["through"])
            _finish(m, files, started, schema_version)
            _write_manifest(root, m, schema_version)
        _sweep(root, m.files())
        through, unsequenced = con.execute(
            f"SELECT max({COMMIT_SEQ}), count(*) FILTER (WHERE {COMMIT_SEQ} IS NULL) FROM events").fetchall()[0]
        if unsequenced:
            log.warning("rows without a commit_seq are not exported", extra={"rows": unsequenced})
        after = m.exported_through
        files = []
        if through is not None and through > after:
            started = datetime.now(UTC)
            m.pending = {"after": after, "through": int(through), "rows_per_file": rows_per_file,
                         "started_at": started.isoformat(), "made_by": _made_by(database)}
            _write_manifest(root, m, schema_version)
            files = _export_range(con, root, after, int(through), m.since, rows_per_file)
            _finish(m, files, started, schema_version)
            _write_manifest(root, m, schema_version)
        elif read_manifest(root) is None:
            _write_manifest(root, m, schema_version)  # an empty lake still says what it is
    finally:
        with contextlib.suppress(duckdb.Error):  # never hide the error that got us here
            con.execute("ROLLBACK")
    new_rows = sum(f.rows for f in files)
    return ExportResult(rows=new_rows, files=[f.path for f in files], after=after,
                        through=int(through) if through is not None and through > after else after,
                        lake_rows=m.rows, exported_through=m.exported_through, resumed=resumed,
                        unsequenced=int(unsequenced), seconds=time.perf_counter() - clock)


def check_lake(dest: str | os.PathLike[str]) -> None:
    """Refuse, before any work, a destination that cannot be a lake: not a directory, a manifest that is
    not a lake's (or is newer than this code), or Parquet files with no manifest. A missing directory is
    fine (the first export makes it)."""
    root = Path(dest)
    if root.exists() and not root.is_dir():
        raise LakeError(f"{root} is not a directory")
    if read_manifest(root) is None and (root / TABLE).is_dir() and any((root / TABLE).rglob("*.parquet")):
        raise LakeError(f"{root / TABLE} holds Parquet files but {root} has no {MANIFEST}: not a lake this "
                        "command made, or its manifest was lost; export to an empty directory")


def export_events(con: duckdb.DuckDBPyConnection, dest: str | os.PathLike[str], *,
                  since: datetime | str | None = None, rows_per_file: int = DEFAULT_ROWS_PER_FILE,
                  database: str | None = None) -> ExportResult:
    """Export the rows committed since the lake's last export to ``dest`` (see the module's docstring).

    ``con``: any connection or cursor on the database (read-only will do), with no transaction open.
    ``since``: the lake keeps only events at or after it (by ``ts``); given when the lake is made, and
    then fixed. ``database``: recorded in the manifest as where the rows came from.
    """
    if rows_per_file < 1:
        raise ValueError(f"rows per file must be at least 1, not {rows_per_file!r}")
    root = Path(dest)
    with _locked(root):
        return _export_locked(con, root, since=_normalize_since(since), rows_per_file=rows_per_file,
                              database=database)


def follow(open_db: Callable[[], duckdb.DuckDBPyConnection], dest: str | os.PathLike[str], *,
           interval_s: float = 60.0, since: datetime | str | None = None,
           rows_per_file: int = DEFAULT_ROWS_PER_FILE, database: str | None = None,
           stop: threading.Event | None = None, rounds: int | None = None,
           on_export: Callable[[ExportResult], None] | None = None,
           on_wait: Callable[[BaseException], None] | None = None,
           busy: tuple[type[BaseException], ...] = ()) -> int:
    """Export, then again every ``interval_s`` (the log followed by its commit sequence), until ``stop``
    is set or after ``rounds`` rounds; returns the rounds run.

    Each round opens the database with ``open_db`` and closes it after its export, so the file is
    free between rounds; an open that raises one of ``busy`` (the file held by another process) is
    reported to ``on_wait`` and tried again next round. The lake stays locked the whole time.
    """
    if not interval_s > 0:
        raise ValueError(f"the interval must be positive, not {interval_s!r}")
    root = Path(dest)
    stop = stop or threading.Event()
    n = 0
    with _locked(root):
        while not stop.is_set():
            try:
                con = open_db()
            except busy as exc:
                if on_wait:
                    on_wait(exc)
            else:
                try:
                    result = _export_locked(con, root, since=_normalize_since(since), rows_per_file=rows_per_file,
                                            database=database)
                finally:
                    con.close()
                if on_export:
                    on_export(result)
            n += 1
            if rounds is not None and n >= rounds:
                break
            stop.wait(interval_s)
    return n
