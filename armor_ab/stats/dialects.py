"""SQL dialects: the few functions and forms the statistics queries need, one table per engine.

``armor_ab.stats.sql`` and ``armor_ab.stats.pages`` write their queries once, calling a ``Dialect``
for every piece that differs between engines (GrowthBook's ``integrations/dialects`` are the model:
a function table per warehouse, not a translator). Nothing here transpiles a whole query.

The pieces: typed parameters (``bind``), epoch microseconds, integer division, a 64-bit hash of
``user_id`` (the per-visitor key), the exact quantile, the first value by time (``arg_min``), filtered
aggregates, JSON text and the JSON ``true`` flag, list membership, boolean casts, typed NULLs, CTE
materialisation (DuckDB's hints; Spark and ClickHouse run the shared steps staged, ``run_query``),
the running window, deduplication by ``event_id``, records. docs/scale.md ("Dialects and engines")
tabulates what each dialect renders.

Only DuckDB, chDB (ClickHouse) and Spark run in this repository's tests; the Trino, BigQuery and
Snowflake renderings are checked by parsing them with sqlglot (``tests/golden/sql``), never against a
live engine.

Parameters are written ``$name`` in the queries' text (outside string literals); ``Dialect.bind``
renders each one in the engine's syntax with the type ``PARAM_TYPES`` declares, and converts the
values to what that engine's driver takes. That is the one place parameters are rendered.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

# The type of every parameter the statistics queries use (``cap_<variable>`` are floats).
PARAM_TYPES: dict[str, str] = {
    "exp": "string",
    "start": "int", "lo": "int", "end": "int", "end_day": "int",  # epoch µs, and a day number
    "pre": "int", "roi": "int", "max_age": "int", "max_views": "int", "cw": "int",  # days, counts
    "pct": "float",
    "variants": "strings", "armor": "strings",
}
# A string literal (doubled quotes or backslash escapes inside), a line comment, or a ``$name`` marker.
_MARKER = re.compile(r"'(?:[^'\\]|''|\\.)*'|--[^\n]*|\$([A-Za-z_]\w*)")
_SIMPLE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def param_type(name: str) -> str:
    if name.startswith("cap_"):
        return "float"
    try:
        return PARAM_TYPES[name]
    except KeyError:
        raise ValueError(f"no declared type for query parameter ${name}") from None


def used_parameters(sql: str) -> list[str]:
    """The ``$name`` markers of a query's text in order of appearance (string literals and comments
    skipped: JSON paths start with ``$``), repeats included."""
    return [m.group(1) for m in _MARKER.finditer(sql) if m.group(1)]


class SqlRunner(Protocol):
    """Where a statistics query runs: a DuckDB connection (wrapped) or a warehouse
    (``armor_ab.store.warehouse``). ``execute`` takes the SQL ``Dialect.bind`` rendered and its
    driver arguments and returns the column names and the rows."""

    dialect: str
    table: str

    def execute(self, sql: str, params: Any) -> tuple[list[str], list[tuple]]: ...

    def event_ids_unique(self, table: str) -> bool: ...

    # Optional, for staged dialects: ``stage(name, sql, params)`` stores a SELECT's rows as ``name`` for
    # this session, ``unstage(name)`` drops them; without them ``Dialect.create_temp``/``drop_temp`` run.


@dataclass(frozen=True)
class Cte:
    """One named step of a query: ``materialized`` is DuckDB's hint (True, False, None: the engine
    decides); ``shared`` marks a step read more than once, which staged dialects store first."""

    name: str
    body: str
    materialized: bool | None = None
    shared: bool = False
    comment: str = ""


@dataclass
class Query:
    """A query as its steps (CTEs) and its final SELECT: one WITH statement (``text``) or, for dialects
    that inline every CTE reference (``Dialect.staged``), several statements (``run_query``)."""

    ctes: list[Cte] = field(default_factory=list)
    select: str = ""

    def add(self, name: str, body: str, materialized: bool | None = None, shared: bool = False,
            comment: str = "") -> None:
        self.ctes.append(Cte(name, body, materialized, shared, comment))

    def text(self, d: Dialect) -> str:
        """The query as one statement (``$name`` parameters; ``Dialect.bind`` renders them)."""
        return _with(d, self.ctes) + self.select + "\n"


def _with(d: Dialect, ctes: Sequence[Cte]) -> str:
    if not ctes:
        return "\n"
    parts = []
    for c in ctes:
        comment = "".join(f"-- {line}\n" for line in c.comment.splitlines())
        parts.append(comment + d.cte(c.name, c.body, c.materialized, c.shared))
    return "\nWITH " + ",\n".join(parts) + "\n"


def run_query(runner: SqlRunner, d: Dialect, query: Query, values: Mapping[str, Any]) -> tuple[list[str], list[tuple]]:
    """Run ``query`` with the parameter ``values`` it uses.

    A staged dialect (Spark, ClickHouse) stores every shared or materialized step first (the runner's
    ``stage``: a local checkpoint on Spark; else ``Dialect.create_temp``: a temporary table on
    ClickHouse) under a name unique to this run, and reads it back under the
    step's own name (``WITH fe0 AS (SELECT * FROM <stored>)``): both engines would otherwise inline
    each reference of a CTE, and this query's chain of steps would be planned and run dozens of times
    over (Spark's driver ran out of memory planning it; ClickHouse took seconds to plan 500 visitors).
    The stored steps are dropped afterwards, whatever happens.
    """

    def run(text: str) -> tuple[list[str], list[tuple]]:
        used = set(used_parameters(text))
        sql, args = d.bind(text, {k: v for k, v in values.items() if k in used})
        return runner.execute(sql, args)

    if not d.staged:
        return run(query.text(d))
    prefix = f"armor_ab_{uuid.uuid4().hex[:12]}_"
    stage = getattr(runner, "stage", None)  # a runner's own way to store a step (Spark: a local checkpoint)
    stored: list[str] = []
    inline: list[Cte] = []
    try:
        for c in query.ctes:
            if not (c.shared or c.materialized):
                inline.append(c)
                continue
            head = [Cte(n, f"    SELECT * FROM {prefix}{n}") for n in stored] + inline
            text = _with(d, head) + c.body.strip()
            if stage is not None:
                used = set(used_parameters(text))
                sql, args = d.bind(text, {k: v for k, v in values.items() if k in used})
                stage(prefix + c.name, sql, args)
            else:
                run(d.create_temp(prefix + c.name, text))
            stored.append(c.name)
        head = [Cte(n, f"    SELECT * FROM {prefix}{n}") for n in stored] + inline
        return run(_with(d, head) + query.select + "\n")
    finally:
        unstage = getattr(runner, "unstage", None)
        for n in reversed(stored):
            try:
                if unstage is not None:
                    unstage(prefix + n)
                else:
                    for statement in d.drop_temp(prefix + n):
                        runner.execute(statement, None)
            except Exception:  # noqa: BLE001 - best effort: the session's end drops them too
                pass


class Dialect:
    """The ANSI-ish defaults (close to Trino's and Spark's); each engine overrides what differs."""

    name = "ansi"
    sqlglot = ""  # the sqlglot dialect that parses its SQL (tests)
    types = {"int": "BIGINT", "float": "DOUBLE", "string": "VARCHAR", "strings": "ARRAY(VARCHAR)",
             "timestamp": "TIMESTAMP(6) WITH TIME ZONE"}
    positional = False  # parameters are ``?`` in order of appearance
    materialize_hints = False
    filter_clause = True  # ``agg(x) FILTER (WHERE cond)``
    bool_or_name = "bool_or"
    settings = ""  # appended to every query
    staged = False  # run_query stores the shared steps first (the engine inlines every CTE reference)

    def create_temp(self, name: str, select: str) -> str:
        """A statement storing ``select``'s rows under ``name`` for this session (staged dialects)."""
        raise NotImplementedError

    def drop_temp(self, name: str) -> list[str]:
        return []

    # ---- parameters ----------------------------------------------------------------------------
    def placeholder(self, name: str, kind: str) -> str:
        return f"CAST(:{name} AS {self.types[kind]})"

    def value(self, name: str, kind: str, value: Any) -> Any:
        """A parameter's value as this engine's driver takes it."""
        if value is None:
            return None
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "strings":
            return [str(v) for v in value]
        return str(value)

    def bind(self, sql: str, values: Mapping[str, Any] | None = None) -> tuple[str, Any]:
        """The query with every ``$name`` marker rendered, and the driver's arguments (a dict by name,
        or a list in order of appearance for positional dialects). ``values=None``: text only."""
        names: list[str] = []

        def sub(m: re.Match) -> str:
            if not m.group(1):
                return m.group(0)
            names.append(m.group(1))
            return self.placeholder(m.group(1), param_type(m.group(1)))

        text = _MARKER.sub(sub, sql).rstrip() + self.settings
        if values is None:
            return text, None
        missing = [n for n in names if n not in values]
        if missing:
            raise ValueError(f"query parameters without a value: {sorted(set(missing))}")
        if self.positional:
            return text, [self.value(n, param_type(n), values[n]) for n in names]
        return text, {n: self.value(n, param_type(n), values[n]) for n in dict.fromkeys(names)}

    # ---- types and casts -------------------------------------------------------------------------
    def cast(self, expr: str, kind: str, nullable: bool = False) -> str:
        return f"CAST({expr} AS {self.types[kind]})"

    def null(self, kind: str) -> str:
        return self.cast("NULL", kind, nullable=True)

    def to_double(self, cond: str) -> str:
        """A boolean as 1.0 / 0.0."""
        return f"CAST({cond} AS DOUBLE)"

    def to_int(self, cond: str) -> str:
        return f"CAST({cond} AS INTEGER)"

    # ---- scalar functions ------------------------------------------------------------------------
    def epoch_us(self, ts: str) -> str:
        raise NotImplementedError

    def idiv(self, a: str, b: str | int) -> str:
        """Integer division of non-negative integers (every use divides epoch µs after 1970)."""
        return f"({a}) / {b}"

    def hash64(self, expr: str, salt: int = 0) -> str:
        """A 64-bit hash of a string: the per-visitor key (``salt`` > 0 after a collision)."""
        raise NotImplementedError

    def in_list(self, expr: str, param: str) -> str:
        return f"contains({param}, {expr})"

    def json_path(self, key: str) -> str:
        """A SQL string literal holding the JSON path of a top-level key."""
        if not _SIMPLE_KEY.match(key) and any(c in key for c in "'\"\\[]"):
            raise ValueError(f"the {self.name} dialect cannot address the JSON key {key!r}")
        return "'" + '$["' + key + '"]' + "'"

    def json_string(self, expr: str, key: str) -> str:
        """The text of a top-level JSON key: a string's value, other scalars' JSON text, NULL if absent."""
        raise NotImplementedError

    def json_true(self, expr: str, key: str) -> str:
        """Whether ``key`` holds the JSON boolean true (a string "true" is not); NULL or false otherwise."""
        raise NotImplementedError

    def json_object(self, pairs: Sequence[tuple[str, str]]) -> str:
        """JSON text of an object of string values, one per (key, expression): a NULL value is JSON null
        or left out (``json_string`` reads both as NULL). Keys are plain identifiers."""
        keys = ", ".join(self.literal(k) for k, _ in pairs)
        values = ", ".join(self.cast(v, "string", nullable=True) for _, v in pairs)
        return f"json_format(CAST(MAP(ARRAY[{keys}], ARRAY[{values}]) AS JSON))"

    def literal(self, text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    # ---- aggregates --------------------------------------------------------------------------------
    def agg(self, func: str, expr: str, cond: str | None = None) -> str:
        """``func`` (sum, min, max, count, bool_or) over the rows where ``cond`` holds."""
        name = self.bool_or_name if func == "bool_or" else func
        if cond is None:
            return f"{name}({expr})"
        if self.filter_clause:
            return f"{name}({expr}) FILTER (WHERE {cond})"
        return f"{name}(CASE WHEN {cond} THEN {expr} END)"

    def count_if(self, cond: str) -> str:
        return f"count_if({cond})"

    def arg_min(self, value: str, key: str, cond: str | None = None) -> str:
        """``value`` on the row with the least ``key`` among those where ``cond`` holds and ``value``
        is not NULL (DuckDB's ``arg_min`` skips NULL values; every dialect does the same)."""
        where = f"{value} IS NOT NULL" if cond is None else f"({cond}) AND {value} IS NOT NULL"
        return f"min_by({value}, {key}) FILTER (WHERE {where})"

    def quantile(self, expr: str, p: str) -> str | None:
        """The exact quantile (linear interpolation, like ``numpy.quantile``) as one aggregate; None
        where the dialect needs ``quantile_select``'s subquery."""
        return None

    def quantile_select(self, columns: Sequence[tuple[str, str | tuple[str, str]]], rest: str) -> str:
        """``SELECT <columns> <rest>``: each column is (alias, expression) or (alias, (expr, p)) for the
        exact quantile p of expr over the rows of ``rest`` (its FROM and WHERE; may be empty)."""
        items = []
        for alias, col in columns:
            if isinstance(col, tuple):
                q = self.quantile(*col)
                assert q is not None
                items.append(f"{q} AS {alias}")
            else:
                items.append(f"{col} AS {alias}")
        return f"SELECT {', '.join(items)}{' ' + rest if rest else ''}"

    def _sorted_array_quantiles(self, columns, rest: str, agg, element, length) -> str:
        """``quantile_select`` through one sorted array per variable: the exact interpolated quantile
        a[lo] + (h - lo)(a[lo + 1] - a[lo]) with h = p (n - 1), lo = floor(h) (0-based ``element``)."""
        inner, outer = [], []
        for i, (alias, col) in enumerate(columns):
            if not isinstance(col, tuple):
                outer.append(f"{col} AS {alias}")
                continue
            expr, p = col
            arr = f"q_arr{i}"
            inner.append(f"{agg(expr)} AS {arr}")
            h = f"({p}) * ({length(arr)} - 1)"
            lo = f"floor({h})"
            a_lo = element(arr, lo)
            a_hi = element(arr, f"least({lo} + 1, {length(arr)} - 1)")
            outer.append(f"{a_lo} + ({h} - {lo}) * ({a_hi} - {a_lo}) AS {alias}")
        if not inner:
            return f"SELECT {', '.join(outer)}{' ' + rest if rest else ''}"
        return f"SELECT {', '.join(outer)} FROM (SELECT {', '.join(inner)}{' ' + rest if rest else ''}) q_sorted"

    # ---- structure -----------------------------------------------------------------------------------
    def cte(self, name: str, body: str, materialized: bool | None = None, shared: bool = False) -> str:
        """``name AS (body)``; ``materialized``: DuckDB's hint (True, False, None: the engine decides);
        ``shared``: read more than once, for engines that otherwise inline every reference."""
        hint = ""
        if self.materialize_hints and materialized is not None:
            hint = "MATERIALIZED " if materialized else "NOT MATERIALIZED "
        return f"{name} AS {hint}(\n{body}\n)"

    def window(self, partition: str, order: str, running: bool = True) -> str:
        frame = " ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW" if running else ""
        return f"OVER (PARTITION BY {partition} ORDER BY {order}{frame})"

    def is_last(self, col: str, partition: str, order: str) -> str:
        """Whether the row is its partition's last by ``order`` (no later ``col``)."""
        return f"lead({col}) {self.window(partition, order, running=False)} IS NULL"

    def dedup(self, columns: str, source: str, where: str, key: str = "event_id") -> str:
        """``SELECT columns FROM source WHERE where``, one row per ``key`` (any of its rows)."""
        return (f"SELECT {columns} FROM (\n        SELECT *, row_number() OVER (PARTITION BY {key} ORDER BY {key}) AS rn_dedup\n"
                f"        FROM {source} WHERE {where}\n    ) dd WHERE rn_dedup = 1")

    def struct(self, fields: Sequence[tuple[str, str, str]]) -> str:
        """A record of (name, expression, kind) fields."""
        names = ", ".join(f"{n} {self.types[k]}" for n, _, k in fields)
        return f"CAST(ROW({', '.join(e for _, e, _ in fields)}) AS ROW({names}))"

    def field(self, expr: str, name: str, index: int) -> str:
        """Field ``name`` (``index`` from 1) of a ``struct``."""
        return f"{expr}.{name}"


class DuckDB(Dialect):
    name = "duckdb"
    sqlglot = "duckdb"
    types = {"int": "BIGINT", "float": "DOUBLE", "string": "VARCHAR", "strings": "VARCHAR[]",
             "timestamp": "TIMESTAMPTZ"}
    materialize_hints = True

    def placeholder(self, name: str, kind: str) -> str:
        return f"${name}::{self.types[kind]}"

    def epoch_us(self, ts: str) -> str:
        return f"epoch_us({ts})"

    def idiv(self, a: str, b: str | int) -> str:
        return f"{a} // {b}"

    def hash64(self, expr: str, salt: int = 0) -> str:
        return f"hash({expr})" if not salt else f"hash({expr}, {int(salt)})"

    def in_list(self, expr: str, param: str) -> str:
        return f"list_contains({param}, {expr})"

    def json_path(self, key: str) -> str:
        path = '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return "'" + path.replace("'", "''") + "'"

    def json_string(self, expr: str, key: str) -> str:
        return f"json_extract_string({expr}, {self.json_path(key)})"

    def json_true(self, expr: str, key: str) -> str:
        return f"json_extract({expr}, {self.json_path(key)}) = 'true'"

    def json_object(self, pairs: Sequence[tuple[str, str]]) -> str:
        return "json_object(" + ", ".join(f"{self.literal(k)}, {self.cast(v, 'string')}" for k, v in pairs) + ")"

    def to_double(self, cond: str) -> str:
        return f"({cond})::DOUBLE"

    def to_int(self, cond: str) -> str:
        return f"({cond})::INTEGER"

    def count_if(self, cond: str) -> str:
        return f"count(*) FILTER (WHERE {cond})"

    def arg_min(self, value: str, key: str, cond: str | None = None) -> str:
        return f"arg_min({value}, {key})" + (f" FILTER (WHERE {cond})" if cond else "")

    def quantile(self, expr: str, p: str) -> str:
        return f"quantile_cont({expr}, {p})"

    def dedup(self, columns: str, source: str, where: str, key: str = "event_id") -> str:
        return f"SELECT DISTINCT ON ({key}) {columns}\n    FROM {source} WHERE {where}"

    def struct(self, fields: Sequence[tuple[str, str, str]]) -> str:
        return "{" + ", ".join(f"'{n}': {e}" for n, e, _ in fields) + "}"


class ClickHouse(Dialect):
    """ClickHouse (a server through clickhouse-connect, or chDB embedded). Every query carries
    ``SETTINGS``: a column name wins over a SELECT alias of the same name (ClickHouse otherwise lets
    aliases shadow columns in WHERE and in the SELECT itself), and GROUPING SETS and outer joins give
    NULL, not the type's default, where a value is missing."""

    name = "clickhouse"
    sqlglot = "clickhouse"
    types = {"int": "Int64", "float": "Float64", "string": "String", "strings": "Array(String)",
             "timestamp": "DateTime64(6, 'UTC')"}
    settings = "\nSETTINGS prefer_column_name_to_alias = 1, group_by_use_nulls = 1, join_use_nulls = 1"
    staged = True  # temporary tables (a ClickHouse session's; clickhouse-connect keeps one per client)

    def create_temp(self, name: str, select: str) -> str:
        return f"CREATE TEMPORARY TABLE {name} ENGINE = Memory AS\n{select}"

    def drop_temp(self, name: str) -> list[str]:
        return [f"DROP TEMPORARY TABLE IF EXISTS {name}"]

    def placeholder(self, name: str, kind: str) -> str:
        return "{" + f"{name}:{self.types[kind]}" + "}"

    def cast(self, expr: str, kind: str, nullable: bool = False) -> str:
        t = self.types[kind]
        return f"CAST({expr} AS {'Nullable(' + t + ')' if nullable and kind != 'strings' else t})"

    def to_double(self, cond: str) -> str:
        return f"toFloat64({cond})"

    def to_int(self, cond: str) -> str:
        return f"toInt32({cond})"

    def epoch_us(self, ts: str) -> str:
        return f"toUnixTimestamp64Micro(toDateTime64({ts}, 6, 'UTC'))"

    def idiv(self, a: str, b: str | int) -> str:
        return f"intDiv({a}, {b})"

    def hash64(self, expr: str, salt: int = 0) -> str:
        return f"cityHash64({expr})" if not salt else f"cityHash64({expr}, {int(salt)})"

    def in_list(self, expr: str, param: str) -> str:
        return f"has({param}, {expr})"

    def literal(self, text: str) -> str:  # ClickHouse reads backslash escapes in string literals
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

    def json_string(self, expr: str, key: str) -> str:
        k = self.literal(key)
        return (f"multiIf(JSONType({expr}, {k}) = 'String', JSONExtractString({expr}, {k}), "
                f"JSONType({expr}, {k}) = 'Null', NULL, JSONExtractRaw({expr}, {k}))")

    def json_true(self, expr: str, key: str) -> str:
        k = self.literal(key)
        return f"(JSONType({expr}, {k}) = 'Bool' AND JSONExtractBool({expr}, {k}) = 1)"

    def json_object(self, pairs: Sequence[tuple[str, str]]) -> str:
        return "toJSONString(map(" + ", ".join(
            f"{self.literal(k)}, {self.cast(v, 'string', nullable=True)}" for k, v in pairs) + "))"

    def agg(self, func: str, expr: str, cond: str | None = None) -> str:
        name = {"bool_or": "max"}.get(func, func)  # max of a 0/1 condition; NULL over no rows, like bool_or
        if cond is None:
            return f"{name}({expr})"
        return f"{name}If({expr}, {cond})"

    def count_if(self, cond: str) -> str:
        return f"countIf({cond})"

    def arg_min(self, value: str, key: str, cond: str | None = None) -> str:
        # argMin skips rows whose value is NULL (the Null combinator), like DuckDB's arg_min.
        return f"argMinIf({value}, {key}, {cond})" if cond else f"argMin({value}, {key})"

    def quantile(self, expr: str, p: str) -> str:
        return f"quantileExactInclusive({p})({expr})"  # numpy's linear interpolation, exact

    def is_last(self, col: str, partition: str, order: str) -> str:
        # lead gives the type's default, not NULL, past the partition's end unless the value is Nullable.
        return f"lead(toNullable({col})) {self.window(partition, order, running=False)} IS NULL"

    def dedup(self, columns: str, source: str, where: str, key: str = "event_id") -> str:
        return f"SELECT {columns}\n    FROM {source} WHERE {where}\n    LIMIT 1 BY {key}"

    def struct(self, fields: Sequence[tuple[str, str, str]]) -> str:
        return f"tuple({', '.join(e for _, e, _ in fields)})"

    def field(self, expr: str, name: str, index: int) -> str:
        return f"tupleElement({expr}, {index})"


class Spark(Dialect):
    """Spark SQL 3.5+ (run by ``spark.sql(sql, args=...)``: named ``:name`` parameters)."""

    name = "spark"
    sqlglot = "spark"
    types = {"int": "BIGINT", "float": "DOUBLE", "string": "STRING", "strings": "ARRAY<STRING>",
             "timestamp": "TIMESTAMP"}
    staged = True  # SparkWarehouse stores a step as a local checkpoint (it cuts the plan's lineage)

    def create_temp(self, name: str, select: str) -> str:
        # SQL-only fallback. A CACHE TABLE of a query with a WITH clause is not found again by a later
        # query (the CTEs' ids differ), which re-plans it from the sources: prefer the runner's stage().
        return f"CACHE TABLE {name} AS\n{select}"

    def drop_temp(self, name: str) -> list[str]:
        return [f"UNCACHE TABLE IF EXISTS {name}", f"DROP VIEW IF EXISTS {name}"]

    def epoch_us(self, ts: str) -> str:
        return f"unix_micros({ts})"

    def idiv(self, a: str, b: str | int) -> str:
        return f"({a}) div {b}"

    def hash64(self, expr: str, salt: int = 0) -> str:
        return f"xxhash64({expr})" if not salt else f"xxhash64({expr}, {int(salt)})"

    def in_list(self, expr: str, param: str) -> str:
        return f"array_contains({param}, {expr})"

    def literal(self, text: str) -> str:  # Spark reads backslash escapes in string literals
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

    def json_path(self, key: str) -> str:
        if _SIMPLE_KEY.match(key):
            return self.literal("$." + key)
        if any(c in key for c in "'[]\\"):
            raise ValueError(f"the spark dialect cannot address the JSON key {key!r}")
        return self.literal("$['" + key + "']")

    def json_string(self, expr: str, key: str) -> str:
        return f"get_json_object({expr}, {self.json_path(key)})"

    def json_true(self, expr: str, key: str) -> str:
        # get_json_object gives 'true' for the string "true" too: the variant keeps the JSON type.
        v = f"variant_get(try_parse_json({expr}), {self.json_path(key)})"
        return f"(schema_of_variant({v}) = 'BOOLEAN' AND CAST({v} AS BOOLEAN))"

    def json_object(self, pairs: Sequence[tuple[str, str]]) -> str:  # to_json leaves NULL fields out
        return "to_json(named_struct(" + ", ".join(f"{self.literal(k)}, {self.cast(v, 'string')}" for k, v in pairs) + "))"

    def quantile(self, expr: str, p: str) -> str:
        return f"percentile({expr}, {p})"  # exact (percentile_approx is the approximate one)

    def is_last(self, col: str, partition: str, order: str) -> str:
        # lead needs its own frame in Spark; same partition and order, so the same sort.
        return f"lead({col}) {self.window(partition, order, running=False)} IS NULL"

    def struct(self, fields: Sequence[tuple[str, str, str]]) -> str:
        return "named_struct(" + ", ".join(f"'{n}', {e}" for n, e, _ in fields) + ")"


class Trino(Dialect):
    """Trino / Presto. UNTESTED against a live engine (parsed by sqlglot only).

    Parameters are positional ``?`` (the trino client's prepared statements), in order of appearance.
    ``approx_percentile`` is approximate: the exact quantile sorts the values into one array
    (``array_sort(array_agg(x))``, one array per capped variable: 8 bytes per visitor) and interpolates.
    Epoch µs: ``to_unixtime`` is a double, so whole seconds and the sub-second part are taken apart
    (exact to the microsecond for timestamp(6))."""

    name = "trino"
    sqlglot = "trino"
    positional = True

    def placeholder(self, name: str, kind: str) -> str:
        return f"CAST(? AS {self.types[kind]})"

    def epoch_us(self, ts: str) -> str:
        sec = f"date_trunc('second', {ts})"
        return (f"(CAST(to_unixtime({sec}) AS BIGINT) * 1000000 + "
                f"CAST(round((to_unixtime({ts}) - to_unixtime({sec})) * 1e6) AS BIGINT))")

    def hash64(self, expr: str, salt: int = 0) -> str:
        v = expr if not salt else f"concat({expr}, '#{int(salt)}')"
        return f"from_big_endian_64(xxhash64(to_utf8({v})))"

    def json_string(self, expr: str, key: str) -> str:
        return f"json_extract_scalar({expr}, {self.json_path(key)})"

    def json_true(self, expr: str, key: str) -> str:
        return f"json_format(json_extract({expr}, {self.json_path(key)})) = 'true'"

    def quantile_select(self, columns, rest: str) -> str:
        return self._sorted_array_quantiles(
            columns, rest, agg=lambda e: f"array_sort(array_agg({e}) FILTER (WHERE {e} IS NOT NULL))",
            element=lambda a, i: f"element_at({a}, CAST({i} AS BIGINT) + 1)", length=lambda a: f"cardinality({a})")


class BigQuery(Dialect):
    """BigQuery (GoogleSQL). UNTESTED against a live engine (parsed by sqlglot only).

    Named ``@name`` parameters; ``bind`` gives (name, type, value) triples for
    ``google.cloud.bigquery.ScalarQueryParameter`` / ``ArrayQueryParameter``. No FILTER clause (CASE
    inside the aggregate); ``PERCENTILE_CONT`` is analytic only, so the exact quantile sorts one array."""

    name = "bigquery"
    sqlglot = "bigquery"
    types = {"int": "INT64", "float": "FLOAT64", "string": "STRING", "strings": "ARRAY<STRING>",
             "timestamp": "TIMESTAMP"}
    filter_clause = False
    bool_or_name = "LOGICAL_OR"

    def placeholder(self, name: str, kind: str) -> str:
        return f"@{name}"

    def bind(self, sql: str, values: Mapping[str, Any] | None = None) -> tuple[str, Any]:
        text, args = super().bind(sql, values)
        if args is None:
            return text, None
        return text, [(n, self.types[param_type(n)], v) for n, v in args.items()]

    def to_double(self, cond: str) -> str:
        return f"IF({cond}, 1.0, 0.0)"

    def to_int(self, cond: str) -> str:
        return f"IF({cond}, 1, 0)"

    def epoch_us(self, ts: str) -> str:
        return f"UNIX_MICROS({ts})"

    def idiv(self, a: str, b: str | int) -> str:
        return f"DIV({a}, {b})"

    def hash64(self, expr: str, salt: int = 0) -> str:
        return f"FARM_FINGERPRINT({expr})" if not salt else f"FARM_FINGERPRINT(CONCAT({expr}, '#{int(salt)}'))"

    def in_list(self, expr: str, param: str) -> str:
        return f"{expr} IN UNNEST({param})"

    def json_path(self, key: str) -> str:
        if any(c in key for c in "'\"\\"):
            raise ValueError(f"the bigquery dialect cannot address the JSON key {key!r}")
        return "'" + '$."' + key + '"' + "'"

    def json_string(self, expr: str, key: str) -> str:
        return f"JSON_VALUE({expr}, {self.json_path(key)})"

    def json_true(self, expr: str, key: str) -> str:
        return f"JSON_QUERY({expr}, {self.json_path(key)}) = 'true'"

    def json_object(self, pairs: Sequence[tuple[str, str]]) -> str:
        return "TO_JSON_STRING(STRUCT(" + ", ".join(f"{self.cast(v, 'string')} AS {k}" for k, v in pairs) + "))"

    def count_if(self, cond: str) -> str:
        return f"COUNTIF({cond})"

    def arg_min(self, value: str, key: str, cond: str | None = None) -> str:
        v = value if cond is None else f"IF({cond}, {value}, NULL)"
        return f"ARRAY_AGG({v} IGNORE NULLS ORDER BY {key} LIMIT 1)[SAFE_OFFSET(0)]"

    def quantile_select(self, columns, rest: str) -> str:
        return self._sorted_array_quantiles(
            columns, rest, agg=lambda e: f"ARRAY_AGG({e} IGNORE NULLS ORDER BY {e})",
            element=lambda a, i: f"{a}[SAFE_OFFSET(CAST({i} AS INT64))]", length=lambda a: f"ARRAY_LENGTH({a})")

    def struct(self, fields: Sequence[tuple[str, str, str]]) -> str:
        return "STRUCT(" + ", ".join(f"{e} AS {n}" for n, e, _ in fields) + ")"


class Snowflake(Dialect):
    """Snowflake. UNTESTED against a live engine (parsed by sqlglot only).

    Positional ``?`` parameters (the connector's qmark style, server-side binding); a list of strings
    is bound as JSON text and read with ``PARSE_JSON``. No FILTER clause; ``PERCENTILE_CONT ... WITHIN
    GROUP`` is exact."""

    name = "snowflake"
    sqlglot = "snowflake"
    types = {"int": "BIGINT", "float": "DOUBLE", "string": "VARCHAR", "strings": "ARRAY",
             "timestamp": "TIMESTAMP_TZ"}
    positional = True
    filter_clause = False
    bool_or_name = "BOOLOR_AGG"

    def placeholder(self, name: str, kind: str) -> str:
        return "PARSE_JSON(?)" if kind == "strings" else f"CAST(? AS {self.types[kind]})"

    def value(self, name: str, kind: str, value: Any) -> Any:
        if kind == "strings" and value is not None:
            return json.dumps([str(v) for v in value])
        return super().value(name, kind, value)

    def to_double(self, cond: str) -> str:
        return f"IFF({cond}, 1.0, 0.0)"

    def to_int(self, cond: str) -> str:
        return f"IFF({cond}, 1, 0)"

    def epoch_us(self, ts: str) -> str:
        return f"DATE_PART(epoch_microsecond, {ts})"

    def idiv(self, a: str, b: str | int) -> str:
        return f"FLOOR(({a}) / {b})"

    def hash64(self, expr: str, salt: int = 0) -> str:
        return f"HASH({expr})" if not salt else f"HASH({expr}, {int(salt)})"

    def in_list(self, expr: str, param: str) -> str:
        return f"ARRAY_CONTAINS(TO_VARIANT({expr}), {param})"

    def _get(self, expr: str, key: str) -> str:
        return f"GET(TRY_PARSE_JSON({expr}), {self.literal(key)})"

    def json_string(self, expr: str, key: str) -> str:
        v = self._get(expr, key)
        return f"IFF(IS_NULL_VALUE({v}), NULL, {v}::VARCHAR)"

    def json_true(self, expr: str, key: str) -> str:
        v = self._get(expr, key)
        return f"(TYPEOF({v}) = 'BOOLEAN' AND {v}::BOOLEAN)"

    def json_object(self, pairs: Sequence[tuple[str, str]]) -> str:  # OBJECT_CONSTRUCT leaves NULL values out
        return "TO_JSON(OBJECT_CONSTRUCT(" + ", ".join(
            f"{self.literal(k)}, {self.cast(v, 'string')}" for k, v in pairs) + "))"

    def count_if(self, cond: str) -> str:
        return f"COUNT_IF({cond})"

    def arg_min(self, value: str, key: str, cond: str | None = None) -> str:
        where = f"{value} IS NOT NULL" if cond is None else f"({cond}) AND {value} IS NOT NULL"
        return f"MIN_BY({value}, IFF({where}, {key}, NULL))"

    def quantile(self, expr: str, p: str) -> str:
        return f"PERCENTILE_CONT({p}) WITHIN GROUP (ORDER BY {expr})"

    def struct(self, fields: Sequence[tuple[str, str, str]]) -> str:
        return "OBJECT_CONSTRUCT_KEEP_NULL(" + ", ".join(f"'{n}', {e}" for n, e, _ in fields) + ")"

    def field(self, expr: str, name: str, index: int) -> str:
        return f"{expr}:{name}::VARCHAR"


DIALECTS: dict[str, Dialect] = {d.name: d for d in (DuckDB(), ClickHouse(), Spark(), Trino(), BigQuery(), Snowflake())}


def dialect(name: str | Dialect) -> Dialect:
    """The dialect called ``name`` (one of ``DIALECTS``), or ``name`` itself when it is one."""
    if isinstance(name, Dialect):
        return name
    try:
        return DIALECTS[name]
    except KeyError:
        raise ValueError(f"no SQL dialect {name!r}; known: {sorted(DIALECTS)}") from None
