"""Warehouses: where the report's statistics queries run when the events live outside the store.

The statistics (``armor_ab.stats.sql``, ``armor_ab.stats.pages``) write each query once against a
SQL dialect (``armor_ab.stats.dialects``); a ``Warehouse`` runs it where the events are, and only
the aggregates (a few hundred rows) come back. Every warehouse has:

* ``dialect``: the name of its ``armor_ab.stats.dialects`` dialect;
* ``table``: the events table the queries read (``docs/events.md``'s columns; default ``events``);
* ``execute(sql, params) -> (columns, rows)``: run the SQL that ``Dialect.bind`` rendered, with its
  driver arguments;
* ``event_ids_unique(table)``: whether the table guarantees one row per ``event_id`` (otherwise the
  query deduplicates first: ``DISTINCT ON`` / ``LIMIT 1 BY`` / a ``row_number`` per event id);
* ``close()``.

``open_warehouse(url)`` opens one from a URL:

==================================  ===============================================================
``duckdb:///path/to/file.duckdb``   a DuckDB file, read-only (``duckdb://`` alone: in memory)
``chdb:`` / ``chdb:///path``        chDB, ClickHouse embedded in this process (a temporary or a
                                    persistent session directory)
``clickhouse://user:pass@host:port/db``  a ClickHouse server through ``clickhouse-connect`` (HTTP,
                                    default port 8123; ``?secure=1`` for HTTPS). Not tested here:
                                    Debian's ``clickhouse-server`` is 18.16, without window functions
``spark://local[N]``                Spark in local mode with N cores (``spark://host:7077``: a
                                    standalone cluster's master)
``sc://host:port``                  a Spark Connect server
==================================  ===============================================================

Spark URLs also take Spark settings as options (``spark://local[2]?spark.driver.memory=4g``).

Query options on any URL: ``table=NAME`` (the events table, default ``events``), ``parquet=PATH``
(register ``table`` as a view over that Parquet file or directory, e.g. an exported event lake:
``PATH/**/*.parquet`` globs work where the engine takes them), ``unique=1`` (the table keeps
event ids unique: skip the deduplication).

``open_warehouse_setting(value)`` opens what ``--warehouse`` names: a URL, or a warehouse file (YAML:
the URL, the Parquet to register, and the mapping of the operator's own exposure and conversion tables onto
the event columns; ``armor_ab.store.event_source``), whose events are then a ``Relation`` (a SELECT) rather
than a table.

The engines' client libraries are the ``warehouse`` extra (``pip install armor-ab[warehouse]``:
chdb, clickhouse-connect, pyspark; Spark also needs a Java runtime) and are imported only when a
warehouse of theirs is opened.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import duckdb

from armor_ab.stats.dialects import dialect as get_dialect
from armor_ab.stats.sql import Relation, check_source, event_id_enforced_unique
from armor_ab.store.event_source import EventMapping, load_warehouse_file, render

_TRUE = {"1", "true", "yes", "on"}


class Warehouse(Protocol):
    """What the statistics need of an engine (``armor_ab.stats.dialects.SqlRunner``)."""

    dialect: str
    table: str | Relation  # a table's name, or a mapped SELECT (armor_ab.store.event_source)

    def execute(self, sql: str, params: Any) -> tuple[list[str], list[tuple]]: ...

    def event_ids_unique(self, table: str) -> bool: ...

    def close(self) -> None: ...


class _Base:
    dialect = ""

    def __init__(self, table: str | Relation = "events", unique: bool = False) -> None:
        check_source(table)
        self.table: str | Relation = table
        self.unique = unique

    def event_ids_unique(self, table: str) -> bool:
        return self.unique

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} table={self.table!r}>"


class DuckDBWarehouse(_Base):
    """A DuckDB connection (a file opened read-only, or one the caller owns)."""

    dialect = "duckdb"

    def __init__(self, con: duckdb.DuckDBPyConnection, table: str = "events", unique: bool | None = None,
                 owned: bool = False) -> None:
        super().__init__(table, bool(unique))
        self.con, self._unique_given, self._owned = con, unique, owned

    def execute(self, sql: str, params: Any) -> tuple[list[str], list[tuple]]:
        cur = self.con.execute(sql, params or {})
        return [d[0] for d in cur.description], cur.fetchall()

    def event_ids_unique(self, table: str) -> bool:
        if self._unique_given is not None:
            return self._unique_given
        return event_id_enforced_unique(self.con, table)

    def attach_parquet(self, path: str | Path, table: str | None = None) -> None:
        name = check_source(table or _name(self.table))
        self.con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet({_sql_string(str(path))}, "
                         "hive_partitioning = true, union_by_name = true)")

    def close(self) -> None:
        if self._owned:
            self.con.close()


def _clickhouse_text(value: Any, *, quoted: bool = False) -> str:
    """A parameter's value in ClickHouse's text format (what chDB's ``params`` parse)."""
    if isinstance(value, list | tuple):
        return "[" + ",".join(_clickhouse_text(v, quoted=True) for v in value) + "]"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    text = str(value)
    if quoted:
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _arrow_rows(table) -> tuple[list[str], list[tuple]]:
    names = list(table.column_names)
    if not names:
        return [], []
    return names, list(zip(*(col.to_pylist() for col in table.columns), strict=True))


class ChdbWarehouse(_Base):
    """chDB: ClickHouse embedded in this process (``chdb.session.Session``)."""

    dialect = "clickhouse"

    def __init__(self, path: str | None = None, table: str = "events", unique: bool = False, session=None) -> None:
        super().__init__(table, unique)
        if session is None:
            from chdb import session as chdb_session  # the warehouse extra

            session = chdb_session.Session(path) if path else chdb_session.Session()
        self.session = session

    def execute(self, sql: str, params: Any) -> tuple[list[str], list[tuple]]:
        text = {k: _clickhouse_text(v) for k, v in (params or {}).items()}
        return _arrow_rows(self.session.query(sql, "ArrowTable", params=text or None))

    def command(self, sql: str) -> None:
        """Run a statement without parameters (DDL, inserts)."""
        self.session.query(sql)

    def attach_parquet(self, path: str | Path, table: str | None = None, *, copy: bool = False) -> None:
        """``table`` over a Parquet file (or glob): a view over ``file()`` (default), or a MergeTree copy
        (``copy``). The report's staged query reads the events once (its ``src`` step), so the copy's load
        (2.4 s for 10M events) bought nothing in benchmarks/bench_warehouse.py (4.79 s a report against
        4.78 s over the view); copy when many reports will read the same files."""
        name = check_source(table or _name(self.table))
        source = f"file({_sql_string(str(path), clickhouse=True)}, Parquet)"
        self.command(f"DROP TABLE IF EXISTS {name}")
        if copy:
            self.command(f"CREATE TABLE {name} ENGINE = MergeTree ORDER BY tuple() AS SELECT * FROM {source}")
        else:
            self.command(f"CREATE VIEW {name} AS SELECT * FROM {source}")

    def close(self) -> None:
        self.session.close()


class ClickHouseWarehouse(_Base):
    """A ClickHouse server through ``clickhouse-connect`` (server-side ``{name:Type}`` binding).

    Not tested in this repository: the ClickHouse packaged for Debian (18.16) predates window functions
    (21.x); chDB, the same engine embedded, is what the tests run. The query's shared steps are temporary
    tables, which live in the client's HTTP session (clickhouse-connect makes one per client): use one
    warehouse per thread."""

    dialect = "clickhouse"

    def __init__(self, client, table: str = "events", unique: bool = False) -> None:
        super().__init__(table, unique)
        self.client = client

    def execute(self, sql: str, params: Any) -> tuple[list[str], list[tuple]]:
        result = self.client.query(sql, parameters=dict(params or {}))
        return list(result.column_names), [tuple(r) for r in result.result_rows]

    def stage(self, name: str, sql: str, params: Any) -> None:
        """A shared step as a temporary table (``command``: ``query`` would append a FORMAT clause)."""
        self.client.command(get_dialect(self.dialect).create_temp(name, sql), parameters=dict(params or {}))

    def unstage(self, name: str) -> None:
        self.client.command(f"DROP TEMPORARY TABLE IF EXISTS {check_source(name)}")

    def close(self) -> None:
        self.client.close()


class SparkWarehouse(_Base):
    """Spark SQL through a ``SparkSession`` (local mode, a cluster, or Spark Connect)."""

    dialect = "spark"

    def __init__(self, spark, table: str = "events", unique: bool = False, owned: bool = False) -> None:
        super().__init__(table, unique)
        self.spark, self._owned = spark, owned

    def execute(self, sql: str, params: Any) -> tuple[list[str], list[tuple]]:
        df = self.spark.sql(sql, args=dict(params or {}))
        return list(df.columns), [tuple(r) for r in df.collect()]

    def stage(self, name: str, sql: str, params: Any) -> None:
        """Store a step's rows as the temporary view ``name``: a local checkpoint, computed now, whose
        plan is a scan of the stored rows. (A cached view keeps the whole plan above it, so every step
        would re-plan all of the ones before it, and Spark's CACHE TABLE of a query with CTEs is not
        found again by later queries.)"""
        self.spark.sql(sql, args=dict(params or {})).localCheckpoint(eager=True).createOrReplaceTempView(name)

    def unstage(self, name: str) -> None:
        self.spark.catalog.dropTempView(name)

    def attach_parquet(self, path: str | Path, table: str | None = None) -> None:
        name = check_source(table or _name(self.table))
        self.spark.read.parquet(str(path)).createOrReplaceTempView(name)

    def close(self) -> None:
        if self._owned:
            self.spark.stop()


def _name(table: str | Relation) -> str:
    if isinstance(table, Relation):
        raise ValueError("name the table to register the Parquet files as (the events are a mapped SELECT)")
    return table


def spark_session(master: str | None = None, remote: str | None = None, cores: int | None = None,
                  shuffle_partitions: int = 4, **conf: str):
    """A SparkSession for the statistics: UTC, the UI off, few shuffle partitions (the aggregates are small)."""
    from pyspark.sql import SparkSession  # the warehouse extra

    builder = SparkSession.builder.appName("armor-ab")
    if remote:
        builder = builder.remote(remote)
    else:
        builder = (builder.master(master or f"local[{cores or 2}]").config("spark.ui.enabled", "false")
                   .config("spark.ui.showConsoleProgress", "false")
                   .config("spark.sql.shuffle.partitions", str(shuffle_partitions)))
    builder = builder.config("spark.sql.session.timeZone", "UTC")
    for key, value in conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def _sql_string(text: str, clickhouse: bool = False) -> str:
    if clickhouse:
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return "'" + text.replace("'", "''") + "'"


_LOCAL = re.compile(r"^local(\[(\d+|\*)\])?$")


def parse_warehouse_url(url: str) -> tuple[str, str, dict[str, str]]:
    """(kind, target, options) of a warehouse URL: kind is duckdb, chdb, clickhouse, spark or sc; target
    the path (duckdb, chdb: "" for in memory / a temporary session), the URL itself (clickhouse, sc),
    or Spark's master (``local[N]``, ``spark://host:port``); options the query string's."""
    scheme, sep, rest = url.partition(":")
    scheme = scheme.lower()
    if not sep:
        raise ValueError(f"not a warehouse URL: {url!r}")
    if scheme == "spark":  # spark://local[N]: brackets that urlsplit would read as an IPv6 address
        master, _, query = rest.removeprefix("//").partition("?")
        options = {k: v[-1] for k, v in parse_qs(query).items()}
        return "spark", master if _LOCAL.match(master) else f"spark://{master}", options
    parts = urlsplit(url)
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    bare = url.split("?", 1)[0]
    if scheme in ("duckdb", "chdb"):
        path = parts.netloc + unquote(parts.path)  # duckdb:///abs/path, duckdb://relative/path
        return scheme, "" if path in ("", "/", ":memory:", "/:memory:") else path, options
    if scheme in ("clickhouse", "clickhouses", "sc"):
        return scheme.removesuffix("s") if scheme == "clickhouses" else scheme, bare, options
    raise ValueError(f"unknown warehouse URL {url!r}: duckdb:///path, chdb:, clickhouse://user:pass@host:port/db, "
                     "spark://local[N], sc://host:port")


def open_warehouse(url: str, *, table: str | None = None, parquet: str | Path | None = None,
                   unique: bool | None = None, mapping: EventMapping | None = None) -> Warehouse:
    """Open the warehouse a URL names (this module's docstring lists them); keyword arguments override
    the URL's ``table``, ``parquet`` and ``unique`` options. ``mapping``: the events are the operator's
    own tables (``armor_ab.store.event_source``); ``parquet`` is then registered as ``table`` first, and
    ``unique`` says whether the mapped rows are one per event."""
    kind, target, options = parse_warehouse_url(url)
    table = check_source(table or options.get("table", "events"))
    parquet = parquet if parquet is not None else options.get("parquet")
    unique_opt = unique if unique is not None else (options["unique"].lower() in _TRUE if "unique" in options else None)
    wh: Any
    if kind == "duckdb":
        con = duckdb.connect(target, read_only=parquet is None) if target else duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")  # a mapped TIMESTAMP without time zone is read as UTC
        wh = DuckDBWarehouse(con, table, unique_opt, owned=True)
    elif kind == "chdb":
        wh = ChdbWarehouse(target or None, table, bool(unique_opt))
    elif kind == "clickhouse":
        import clickhouse_connect  # the warehouse extra

        parts = urlsplit(target)
        secure = url.lower().startswith("clickhouses:") or options.get("secure", "").lower() in _TRUE
        client = clickhouse_connect.get_client(
            host=parts.hostname or "localhost", port=parts.port or (8443 if secure else 8123),
            username=unquote(parts.username or "default"), password=unquote(parts.password or ""),
            database=unquote(parts.path.lstrip("/")) or "default", secure=secure,
        )
        wh = ClickHouseWarehouse(client, table, bool(unique_opt))
    elif kind in ("spark", "sc"):
        # Spark settings ride on the URL: spark://local[2]?spark.driver.memory=4g
        conf = {k: v for k, v in options.items() if k.startswith("spark.")}
        session = spark_session(target, **conf) if kind == "spark" else spark_session(remote=target, **conf)
        wh = SparkWarehouse(session, table, bool(unique_opt), owned=True)
    try:
        if parquet is not None:
            wh.attach_parquet(parquet)
        if mapping is not None:
            wh.table = render(mapping, wh.dialect, unique=unique_opt)
    except BaseException:
        wh.close()
        raise
    return wh


def is_warehouse_file(setting: str) -> bool:
    """Whether a ``--warehouse`` value names a warehouse file (YAML) rather than a URL."""
    return setting.lower().endswith((".yaml", ".yml"))


def open_warehouse_setting(setting: str) -> Warehouse:
    """Open what ``--warehouse`` (or ``ServerSettings.warehouse``) names: a URL, or a warehouse file
    (``armor_ab.store.event_source``: the URL, the Parquet to register, the mapping of the operator's
    tables). A relative ``parquet`` path in a file is relative to the file."""
    if not is_warehouse_file(setting):
        return open_warehouse(setting)
    path = Path(setting)
    spec = load_warehouse_file(path)
    parquet = spec.parquet
    if parquet is not None and "://" not in parquet and not Path(parquet).is_absolute():
        parquet = str((path.parent / parquet).resolve())
    return open_warehouse(spec.url, table=spec.table, parquet=parquet, unique=spec.unique, mapping=spec.mapping())


def check_warehouse_setting(setting: str) -> None:
    """Refuse a ``--warehouse`` value that cannot work, before anything is opened: a warehouse file that
    does not load (``WarehouseFileError``, naming its field) or a URL of no known kind (``ValueError``)."""
    if is_warehouse_file(setting):
        parse_warehouse_url(load_warehouse_file(setting).url)
    else:
        parse_warehouse_url(setting)


def redact(url: str) -> str:
    """A warehouse URL or file fit for a log line or an error message: its password replaced by ``***``."""
    if is_warehouse_file(url):
        return url
    parts = urlsplit(url) if "://" in url and not url.lower().startswith("spark:") else None
    if parts is None or parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
