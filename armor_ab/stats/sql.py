"""One query that turns the event log into every sufficient statistic the report needs.

It is written once against ``armor_ab.stats.dialects`` and runs on DuckDB (the store), ClickHouse
(a server or chDB) and Spark; Trino, BigQuery and Snowflake renderings exist, untested against a
live engine (docs/scale.md, "Dialects and engines"). The steps below are DuckDB's plan; Spark and
ClickHouse store the shared steps first (``run_query``), and visitors are keyed by a 64-bit hash
of ``user_id`` (``fe``), never by a global ``ROW_NUMBER``.

What counts (the analysis contract):

* A visitor enters on its **first exposure** inside the window [start, end] that names a variant;
  its variant is that exposure's variant, its segment values (device, category, ...) are read
  from that exposure's ``properties``.
* Sources (``exposures``): with ``"server"`` a visitor counts only when one of its exposures in the
  window that names a variant was not posted with a client key (``source`` is ``server``,
  ``import``, or NULL for rows older than the column): the server assigned it. Its entry time,
  variant and segments still come from its first exposure of any source (clients' exposures were
  checked against the assignment when they arrived, and a simulated or queued history sends them
  with the time they happened). With ``"any"`` every exposure counts alike (the query then does
  not read ``source``, so it also runs on tables without that column).
* Data quality comes before statistics. These visitors are excluded from every sum (totals,
  daily rows, segments, ages) and only counted, each under the first reason that applies:

  0. ``client`` (``exposures="server"`` only): every exposure naming a variant was posted with a
     client key: no exposure the server logged vouches for the visitor (forged or replayed events);
  1. ``multi``: exposed to more than one variant in the window (GrowthBook's ``__multiple__``);
  2. ``unknown``: its first exposure names a variant outside ``variants`` (when given);
  3. bot ``user_agent``: one of its exposures in the window (with a variant or not) has
     ``properties.bot = true`` (the JSON boolean; the API sets it when the request's User-Agent
     is a known bot, ``armor_ab.bots``);
  4. ``paused``: its first exposure has ``properties.paused = true`` (the JSON boolean): the
     experiment was paused then (live health turned critical, or a human paused it), so its ARMOR
     arms served control's copy and the visitor saw no treatment. Excluded in every arm alike, so
     the arms stay comparable; counted per variant (``paused_visitors``);
  5. bot ``rate``: more than ``max_views_per_day`` page views in one UTC day after its first
     exposure (in the window; the conversion window does not shorten this check).

* Its page_view / dwell / inquiry events count from its first exposure (``ts >= t0``) to the
  window end, and with ``conversion_window_days`` = W only on the UTC calendar days day0 ..
  day0 + W - 1 (day0: the day of t0). The window is **day-granular**: an exposure at 23:59 gets
  W - 1 days and one minute. Events in the ``pre_days`` x 24 h before ``t0`` are its
  pre-exposure (CUPED) values; a client sends those only when it logs events before assigning.
* **Per-visitor capping** (Statsig-style winsorisation) of ``views``, ``dwell``, ``inq`` and
  ``inqv``: each visitor's total is capped at a fixed value (``absolute``) or at the
  ``quantile_cont`` of all included visitors' totals (``percentile``: pooled over variants,
  zeros included, after the exclusions above; linear interpolation like ``numpy.quantile``).
  The same cap applies to the variable's pre-exposure total. ``any`` (0/1) is never capped.
  The daily series stays exact: the capped cumulative value is min(c, cap), the day's change
  min(c, cap) - min(c - δ, cap). Caps, exclusions and the ROI values below are decided on the
  whole window, so re-running the analysis later can revise earlier days of the series.
* Optionally (``cap_percentile``, off by default) single dwell values are first capped at that
  quantile of every dwell value of the experiment in the window (the old event-level cap).
* The ROI's window, R = ``roi_window_days``: ``mature`` is 1 when day0 + R <= the analysis end's
  UTC day (the R days are complete), and then ``wq`` is the visitor's inquiries on days day0 ..
  day0 + R - 1 (capped with ``inq``'s cap; the conversion window does not shorten it), else both
  are 0. ``mature`` is booked on the entry day and ``wq`` on the days it happens, so their totals
  and segments are right while their daily series is not meaningful (a visitor counts as mature
  from its first day on, but its window's inquiries arrive over R days).
* **Ages** (lift by days since exposure): for k in 0 .. ``max_age_days`` (and < W), every
  included visitor whose day day0 + k is complete before the analysis end's UTC day counts in
  age k's ``n``, with the (capped) changes of that single day as its values; ``any`` there means
  "inquired that day"; pre-exposure and ROI columns are 0.
* Days are UTC calendar days. Day d's statistics cover all data up to the end of day d.
* Events are unique by ``event_id``: when the source table guarantees it (a PRIMARY KEY or UNIQUE
  constraint, or the comment the armor-ab event log carries: its writer refuses repeated ids)
  nothing more is needed; otherwise the query deduplicates first. A blanket ``DISTINCT ON
  (event_id)`` costs ~2 s on 10M rows, which is why it is not always on.

How it stays fast (one pass over the events on the common path, no join against them):

1. ``fe0``: each visitor's first exposure and exclusion reason, from the exposure rows only
   (~1 per visitor); ``fe`` keeps the visitors not excluded there.
2. ``s1``: the experiment's events grouped by (visitor, UTC day) once: the sums per type and the
   group's earliest and latest timestamps.
3. ``j``: each group classified as post-exposure, pre-exposure, outside, or "mixed" (the exposure
   day when something happened before the exposure, or the day the pre-window starts in). Only
   mixed groups are recomputed from their events (``fix``); with none, that join reads nothing.
4. ``rate_bots``: the rows of a post-exposure day with too many page views (a filter, a tiny
   result); ``post`` drops those visitors and applies the conversion window.
5. ``cum``: one window pass per visitor over its days gives the running value c at each active
   day; its last row's values are the visitor's totals, from which ``caps`` takes the quantiles.
   ``d`` caps c and the day's change, so the daily *changes* of sums of squares and
   cross-products are exact (c² - p² with p = c - δ); summing the changes over days gives the
   totals and, cumulated in Python, the daily series. Variant and segment values travel as one
   small integer ("cell").
6. One small aggregation by (cell, day, entry day) (``fine``), then GROUPING SETS for the daily
   and per-segment rows, and the per-age rows from the same small table; the exclusion counts
   and the caps ride along as rows of their own (one ``UNION ALL``, every SELECT naming every column),
   with the count of colliding visitor keys (``keys``: then the query runs again with a salted hash).

On 1M visitors / 10M events this is ~5 CPU-seconds on DuckDB (see benchmarks/bench_analysis.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

import duckdb

from armor_ab.stats.dialects import Dialect, Query, SqlRunner, run_query, used_parameters
from armor_ab.stats.dialects import dialect as get_dialect
from armor_ab.stats.suffstats import CROSS, POST, PRE, ROI_WINDOW, SUM_COLUMNS, VisitorSums

DAY_US = 86_400_000_000
_EPOCH = date(1970, 1, 1)
_FAR_PAST = datetime(1900, 1, 1, tzinfo=UTC)
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z_][A-Za-z0-9_]{0,63}){0,2}$")

# The per-visitor variables that can be capped: the specs' ``CAPPABLE`` (experiments/models.py) is this
# tuple, and tests/test_stats_layers.py pins the two together (the statistics import nothing of the specs).
CAPPABLE = ("views", "dwell", "inq", "inqv")


class Capping(Protocol):
    """A per-visitor cap as the query reads it (the specs' ``Capping``, experiments/models.py, is one)."""

    @property
    def type(self) -> str: ...  # "percentile" | "absolute"

    @property
    def value(self) -> float: ...


@dataclass(frozen=True)
class VisitorCap:
    """A plain per-visitor cap (``Capping`` without the spec's validation)."""

    type: str = "percentile"
    value: float = 0.999


# The default per-visitor caps: the spec's default (``AnalysisSpec.capping_default``) on every variable.
DEFAULT_CAPS: dict[str, Capping | None] = dict.fromkeys(CAPPABLE, VisitorCap())
BOT_REASONS = ("user_agent", "rate")
EXPOSURE_SOURCES = ("server", "any")  # which exposures let a visitor in (``AnalysisSpec.exposures``)
# Variables with one value per visitor, booked on its entry row (no daily history). ``wq`` is not
# one of them: it is summed day by day like ``inq`` (then no window looks ahead for its total).
_FIXED = frozenset((*PRE, "mature"))


@dataclass(frozen=True)
class ExperimentSums:
    """The query's answer: sums per variant, per variant and day, per segment value and variant."""

    cap: float | None  # the event-level dwell cap in ms (``cap_percentile``); None when it is off
    daily: dict[str, dict[date, VisitorSums]]  # variant -> day -> change during that day
    segments: dict[str, dict[str, dict[str, VisitorSums]]]  # key -> value -> variant -> totals
    multi_variant_visitors: int  # excluded: exposed to more than one variant
    deduplicated_in_sql: bool
    unknown_variant_visitors: dict[str, int] = field(default_factory=dict)  # excluded: variant -> visitors
    bot_visitors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BOT_REASONS, 0))  # excluded
    caps: dict[str, float | None] = field(default_factory=dict)  # per-visitor cap used per variable (None: none)
    ages: dict[str, dict[int, VisitorSums]] = field(default_factory=dict)  # variant -> days since exposure -> sums
    client_only_visitors: int = 0  # excluded: only client-posted exposures name them (exposures="server")
    paused_visitors: dict[str, int] = field(default_factory=dict)  # excluded: first exposed while paused, per variant
    totals: dict[str, VisitorSums] = field(init=False)

    def __post_init__(self) -> None:
        totals = {}
        for variant, days in self.daily.items():
            acc = VisitorSums.zero()
            for sums in days.values():
                acc = acc + sums
            totals[variant] = acc
        object.__setattr__(self, "totals", totals)

    def days(self) -> list[date]:
        """Every day from the first to the last with data, gaps included."""
        seen = [d for days in self.daily.values() for d in days]
        if not seen:
            return []
        first, last = min(seen), max(seen)
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]

    def cumulative(self, variant: str) -> list[tuple[date, VisitorSums]]:
        """Sums of all data up to the end of each day (carried forward over days without data)."""
        acc = VisitorSums.zero()
        out = []
        changes = self.daily.get(variant, {})
        for day in self.days():
            if day in changes:
                acc = acc + changes[day]
            out.append((day, acc))
        return out


# The comment of a table whose writer keeps event ids unique (armor_ab.event_schema.UNIQUE_BY_WRITER;
# tests/test_dedup.py pins the two together: the statistics import nothing else of armor_ab).
UNIQUE_BY_WRITER = "armor-ab event log: one row per event_id (the writer refuses repeats)"


def event_id_enforced_unique(con: duckdb.DuckDBPyConnection, table: str = "events") -> bool:
    """Whether the table guarantees one row per event_id: its PRIMARY KEY / UNIQUE constraint, or
    the comment of the armor-ab event log (its writer refuses repeated ids)."""
    rows = con.execute(
        """SELECT constraint_column_names FROM duckdb_constraints()
           WHERE table_name = ? AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')""",
        [table],
    ).fetchall()
    if any(list(cols) == ["event_id"] for (cols,) in rows):
        return True
    comment = con.execute(
        "SELECT comment FROM duckdb_tables() WHERE table_name = ? AND database_name = current_database()",
        [table],
    ).fetchone()
    return bool(comment and comment[0] == UNIQUE_BY_WRITER)


def _check_segment(key: str) -> str:
    if not isinstance(key, str) or not key or len(key) > 200 or "\x00" in key:
        raise ValueError(f"segment name must be a non-empty string of at most 200 characters, got {key!r}")
    return key


def json_flag(expr: str, key: str, dialect: str | Dialect = "duckdb") -> str:
    """SQL: whether the JSON value ``expr`` holds ``key: true``, the boolean (a string "true" is not the
    flag); NULL (or false) when ``expr`` is NULL. ``bot`` on any exposure, ``paused`` on the first one
    exclude a visitor."""
    return get_dialect(dialect).json_true(expr, _check_segment(key))


def _post_sum(col: str) -> str:
    """The SQL expression whose sum over visitor-day rows of ``d`` is the column ``col`` of SUM_COLUMNS.

    Daily variables contribute their (capped) change each day; fixed ones (pre-exposure, ROI
    window) their one value on the entry row, so every sum adds up over days to the visitor's total.
    """
    if col == "n":
        return "entry"
    kind, _, rest = col.partition("_")
    if kind == "s":
        return f"entry * {rest}" if rest in _FIXED else f"d_{rest}"
    if kind == "ss":
        # c² - p² with p = c - δ, written as δ(2c - δ) to avoid cancellation.
        return f"entry * {rest} * {rest}" if rest in _FIXED else f"d_{rest} * (2 * c_{rest} - d_{rest})"
    a, b = rest.split("__")
    if a in _FIXED and b in _FIXED:
        return f"entry * {a} * {b}"
    if b in _FIXED:  # daily x fixed: the fixed value does not change, so the change is δ_a * b
        return f"d_{a} * {b}"
    if a in _FIXED:
        return f"d_{b} * {a}"
    return f"d_{a} * c_{b} + d_{b} * c_{a} - d_{a} * d_{b}"  # c_a c_b - p_a p_b


def _age_sum(col: str) -> str | None:
    """The single-day contribution of ``col`` for the per-age rows; None where it is 0 (pre, ROI, n)."""
    if col == "n":
        return None
    kind, _, rest = col.partition("_")
    names = rest.split("__") if kind == "x" else [rest]
    if any(v not in POST for v in names):
        return None
    value = [("a_any" if v == "any" else f"d_{v}") for v in names]  # a_any: inquired that day
    if kind == "s":
        return value[0]
    return f"{value[0]} * {value[0]}" if kind == "ss" else f"{value[0]} * {value[1]}"


def _capped(var: str, cap: str | None) -> tuple[str, str]:
    """``d``'s expressions of the visitor's running total of ``var`` and that day's change, capped at ``cap``."""
    if cap is None:
        return f"c.c_{var}", f"c.{var}"
    return f"least(c.c_{var}, {cap})", f"least(c.c_{var}, {cap}) - least(c.c_{var} - c.{var}, {cap})"


@dataclass(frozen=True)
class Relation:
    """The events as a SELECT rather than a table: the operator's own exposure and conversion tables
    mapped onto the event log's columns (``armor_ab.store.event_source`` renders it for one dialect).

    ``sql`` gives docs/events.md's columns (``event_id``, ``experiment``, ``variant``, ``user_id``,
    ``item_id``, ``type``, ``value``, ``ts``, ``properties``, ``source``) and may use one parameter,
    ``$exp`` (the experiment analysed: a conversion table has no experiment column, so its rows count
    for whichever experiment is analysed, as in GrowthBook). ``unique``: its rows are one per event
    (the query then does not deduplicate by ``event_id``)."""

    sql: str
    unique: bool = False
    dialect: str = ""

    def __post_init__(self) -> None:
        extra = set(used_parameters(self.sql)) - {"exp"}
        if extra:
            raise ValueError(f"an events SELECT may use only the parameter $exp, not {sorted(extra)}")

    def __str__(self) -> str:
        return "(\n" + self.sql + "\n) ev"


def check_source(source: str | Relation, d: Dialect | None = None) -> str:
    """The events' FROM item: a table's name, a plain identifier, optionally qualified (``db.table``,
    ``catalog.db.table``), or a ``Relation`` (a mapped SELECT, as a subquery; rendered for ``d``)."""
    if isinstance(source, Relation):
        if d is not None and source.dialect and source.dialect != d.name:
            raise ValueError(f"the events SELECT was rendered for {source.dialect}, not {d.name}")
        return str(source)
    if not isinstance(source, str) or not _TABLE_NAME.match(source):
        raise ValueError(f"source table {source!r} is not a plain (optionally qualified) identifier")
    return source


def union_all(d: Dialect, columns: Sequence[tuple[str, str]], parts: Sequence[tuple[Mapping[str, str], str]]) -> str:
    """``UNION ALL`` of SELECTs that each name some of ``columns`` (name, kind): every SELECT lists
    every column in one order, typed, NULL where it has none (DuckDB's ``UNION ALL BY NAME``, portably)."""
    selects = []
    for exprs, tail in parts:
        unknown = set(exprs) - {c for c, _ in columns}
        assert not unknown, unknown
        items = ",\n    ".join(
            f"{d.cast(exprs[c], kind, nullable=True) if c in exprs else d.null(kind)} AS {c}" for c, kind in columns
        )
        selects.append(f"SELECT {items}\n{tail}")
    return "\nUNION ALL\n".join(selects)


def build_query(
    segments: Sequence[str],
    *,
    dedup: bool,
    source: str | Relation = "events",
    event_cap: bool = False,
    caps: Mapping[str, str | None] | None = None,
    variants: bool = False,
    bot_user_agents: bool = True,
    rate_limit: bool = False,
    conversion_window: bool = False,
    exposures: str = "any",
    dialect: str | Dialect = "duckdb",
    salt: int = 0,
) -> str:
    """The SQL text of the query in ``dialect`` (``armor_ab.stats.dialects``); what ``load_sums`` runs.

    ``caps`` maps each variable of ``CAPPABLE`` to its cap's kind (``"percentile"``,
    ``"absolute"`` or None; missing: None; ``caps=None``: percentile everywhere, the default).
    The flags switch on the parts that need them. Parameters (epoch µs, days, values; rendered in the
    dialect's syntax): exp, lo, start, end, end_day, pre, roi, max_age, and when used pct (event-level
    dwell cap), cap_<variable> (quantile or value), variants (list of strings), max_views, cw (days).
    ``exposures="server"`` reads the ``source`` column and excludes the visitors only clients vouch for.
    ``salt``: the visitor keys' hash salt (``load_sums`` raises it when two visitors' keys collide).
    """
    d = get_dialect(dialect)
    return d.bind(_query_text(
        segments, dedup=dedup, source=source, event_cap=event_cap, caps=caps, variants=variants,
        bot_user_agents=bot_user_agents, rate_limit=rate_limit, conversion_window=conversion_window,
        exposures=exposures, d=d, salt=salt,
    ).text(d))[0]


def _query_text(
    segments: Sequence[str],
    *,
    dedup: bool,
    source: str | Relation,
    event_cap: bool,
    caps: Mapping[str, str | None] | None,
    variants: bool,
    bot_user_agents: bool,
    rate_limit: bool,
    conversion_window: bool,
    exposures: str,
    d: Dialect,
    salt: int,
) -> Query:
    """``build_query``'s query, its parameters still written ``$name`` (``Dialect.bind`` renders them)."""
    check_source(source, d)
    if exposures not in EXPOSURE_SOURCES:
        raise ValueError(f"exposures must be one of {EXPOSURE_SOURCES}, got {exposures!r}")
    server_only = exposures == "server"
    kinds = dict.fromkeys(CAPPABLE, "percentile") if caps is None else dict(caps)
    if not set(kinds) <= set(CAPPABLE) or not set(kinds.values()) <= {None, "percentile", "absolute"}:
        raise ValueError(f"caps must map some of {CAPPABLE} to 'percentile', 'absolute' or None, got {kinds!r}")
    kinds = {v: kinds.get(v) for v in CAPPABLE}
    assert all(a in (*POST, *PRE, *ROI_WINDOW) for pair in CROSS for a in pair)
    segments = [_check_segment(s) for s in segments]
    named = "variant IS NOT NULL"  # the exposures that name a variant
    day_of = lambda us: d.idiv(us, DAY_US)  # noqa: E731 - the UTC day number of epoch µs
    to_double = d.to_double

    seg_cols = [f"g{i}" for i in range(len(segments))]
    first_props = d.arg_min("properties", "tu", named)  # the properties of the first exposure naming a variant
    seg_extract = "".join(
        f",\n            {d.json_string(first_props, name)} AS g{i}" for i, name in enumerate(segments)
    )
    carry = "".join(f", {c}" for c in seg_cols)
    cell_match = "".join(f" AND fe0.{c} IS NOT DISTINCT FROM cells.{c}" for c in seg_cols)

    # Exclusions decided from the exposure rows alone; the first reason that applies wins.
    ua_col = (f",\n            coalesce({d.agg('bool_or', d.json_true('properties', 'bot'))}, false) AS ua_bot"
              if bot_user_agents else "")
    # Paused: read from the first exposure naming a variant (the one whose variant and segments count).
    ua_col += f",\n            coalesce({d.json_true(first_props, 'paused')}, false) AS paused"
    if server_only:  # an exposure naming a variant that no client key sent (NULL: written before sources)
        vouches = "coalesce(source, '') <> 'client'"
        ua_col += f",\n            coalesce({d.agg('bool_or', vouches, named)}, false) AS vouched"
    reasons = ("WHEN NOT vouched THEN 'client' " if server_only else "") + "WHEN multi THEN 'multi'"
    if variants:
        reasons += f" WHEN NOT {d.in_list('variant', '$variants')} THEN 'unknown'"
    if bot_user_agents:
        reasons += " WHEN ua_bot THEN 'user_agent'"
    reasons += " WHEN paused THEN 'paused'"

    def dwell(prefix: str) -> str:
        value = f"{prefix}value"
        return f"CASE WHEN {value} > cap.c THEN cap.c ELSE {value} END" if event_cap else value

    def per_type(prefix: str) -> str:
        return f"""{d.cast(d.count_if(f"{prefix}type = 'page_view'"), "float")} AS views,
        coalesce({d.agg("sum", dwell(prefix), f"{prefix}type = 'dwell'")}, 0) AS dwell,
        {d.cast(d.count_if(f"{prefix}type = 'inquiry'"), "float")} AS inq,
        coalesce({d.agg("sum", f"{prefix}value", f"{prefix}type = 'inquiry'")}, 0) AS inqv"""

    cap_cte = (
        d.quantile_select([("c", ("value", "$pct"))],
                          "FROM src WHERE type = 'dwell' AND value IS NOT NULL AND tu >= $start")
        if event_cap else f"SELECT {d.null('float')} AS c"
    )
    cap_join = " CROSS JOIN cap" if event_cap else ""

    daily_vars = ("views", "dwell", "inq", "inqv")
    # The conversion window: a day counts only when day0 <= day < day0 + W. Later days keep their
    # rows while the ROI window still needs them, with the other values zeroed: the running sums
    # then stay at the window's totals.
    if conversion_window:
        post_vals = ", ".join(f"CASE WHEN day < day0 + $cw THEN {v} ELSE 0 END AS {v}" for v in daily_vars)
        post_where = " AND day < day0 + greatest($cw, $roi)"
    else:
        post_vals, post_where = ", ".join(daily_vars), ""
    if rate_limit:
        post_where += " AND uid NOT IN (SELECT uid FROM rate_bots)"
    running = d.window("uid", "day")
    window_cols = [f"sum({v}) {running} AS c_{v}" for v in (*daily_vars, "wq")]
    if "percentile" in kinds.values():  # the row whose running sums are the totals
        window_cols.append(f"{d.is_last('day', 'uid', 'day')} AS is_last")
    cum_cols = ",\n        ".join(window_cols)

    cap_columns: list[tuple[str, str | tuple[str, str]]] = []
    for v in CAPPABLE:
        if kinds[v] == "percentile":
            cap_columns.append((f"cap_{v}", (f"c_{v}", f"$cap_{v}")))
        elif kinds[v] == "absolute":
            cap_columns.append((f"cap_{v}", f"$cap_{v}"))
        else:
            cap_columns.append((f"cap_{v}", d.null("float")))
    caps_cte = d.quantile_select(cap_columns, "FROM cum WHERE is_last" if "percentile" in kinds.values() else "")

    capped = ",\n        ".join(
        f"{c} AS c_{v}, {dd} AS d_{v}" for v in daily_vars for c, dd in [_capped(v, f"k.cap_{v}" if kinds[v] else None)]
    )
    pre_cols = ", ".join(
        f"least(coalesce(p.q_{v}, 0), k.cap_{v}) AS q_{v}" if kinds[v] else f"coalesce(p.q_{v}, 0) AS q_{v}"
        for v in daily_vars
    )
    wq_c, wq_d = _capped("wq", "k.cap_inq" if kinds["inq"] else None)  # wq is capped with inq's cap

    fine_cols = [f"sum({_post_sum(c)}) AS {c}" for c in SUM_COLUMNS]
    age_source: dict[str, str | None] = {}
    for c in SUM_COLUMNS:
        expr = _age_sum(c)
        if expr is None or expr == _post_sum(c):  # s_views & co: the day's change either way
            age_source[c] = None if expr is None else c
        else:
            age_source[c] = f"a_{c}"
            fine_cols.append(f"sum({expr}) AS a_{c}")
    fine_sums = ",\n        ".join(fine_cols)

    # The answer's rows: one SELECT per kind, every column named in every SELECT (portable UNION ALL).
    out_columns = [("part", "string"), ("grp_day", "int"), *((f"grp_{c}", "int") for c in seg_cols),
                   ("variant", "string"), ("day", "int"), *((c, "string") for c in seg_cols),
                   *((c, "float") for c in SUM_COLUMNS), ("reason", "string"), ("visitors", "int"),
                   ("cap_event", "float"), *((f"cap_{v}", "float") for v in CAPPABLE)]
    per_variant = "CASE WHEN excluded IN ('unknown', 'paused') THEN variant END"  # counted per variant
    grouping_sets = ", ".join(["(variant, day)", *(f"(variant, {c})" for c in seg_cols)])
    parts: list[tuple[dict[str, str], str]] = [
        ({"part": "'sums'", "grp_day": "GROUPING(day)", **{f"grp_{c}": f"GROUPING({c})" for c in seg_cols},
          "variant": "variant", "day": "day", **{c: c for c in seg_cols}, **{c: f"sum({c})" for c in SUM_COLUMNS}},
         f"FROM fine JOIN cells USING (cell)\nGROUP BY GROUPING SETS ({grouping_sets})"),
        ({"part": "'age'", "variant": "variant", "day": "age",
          **{c: f"sum({age_source[c]})" if age_source[c] else "0" for c in SUM_COLUMNS}},
         "FROM (SELECT fine.*, day - day0 AS age FROM fine) fa JOIN cells USING (cell)\n"
         "WHERE age <= $max_age AND day < $end_day\nGROUP BY variant, age"),
        ({"part": "'excluded'", "reason": "excluded", "variant": per_variant, "visitors": "count(*)"},
         f"FROM fe0 WHERE excluded IS NOT NULL GROUP BY excluded, {per_variant}"),
    ]
    if rate_limit:
        parts.append(({"part": "'excluded'", "reason": "'rate'", "visitors": "count(*)"}, "FROM rate_bots"))
    parts.append(({"part": "'caps'", "cap_event": "(SELECT c FROM cap)", **{f"cap_{v}": f"cap_{v}" for v in CAPPABLE}},
                  "FROM caps"))
    # Visitor keys are a 64-bit hash of user_id (no global ROW_NUMBER: the work partitions by key).
    # Two included visitors with one key would be merged in ``pre``, ``cum`` and ``rate_bots``
    # (the joins with the events themselves go by user_id); the chance is about n² / 2⁶⁵ (3e-8 for a
    # million visitors), and this row counts them: ``load_sums`` then runs again with another salt.
    parts.append(({"part": "'keys'", "visitors": "count(*) - count(DISTINCT uid)"}, "FROM fe"))
    answer = union_all(d, out_columns, parts)

    source_col = ", source" if server_only else ""
    src_cols = f"user_id, variant, type, value, {d.epoch_us('ts')} AS tu, properties{source_col}"
    src_where = f"experiment = $exp AND {d.epoch_us('ts')} BETWEEN $lo AND $end"
    q = Query()
    if dedup:
        q.add("src", "    " + d.dedup(src_cols, source, src_where), materialized=True)
    else:
        q.add("src", f"    SELECT {src_cols}\n    FROM {source} WHERE {src_where}", materialized=False, shared=True)
    q.add("cap", "    " + cap_cte, shared=True)
    q.add("fe0", f'''    SELECT *, CASE {reasons} END AS excluded
    FROM (
        SELECT user_id, {d.agg("min", "tu", named)} AS t0,
            {d.arg_min("variant", "tu", named)} AS variant,
            min(variant) <> max(variant) AS multi{ua_col}{seg_extract}
        FROM src WHERE type = 'exposure' AND tu >= $start
        GROUP BY user_id
        HAVING count(variant) > 0
    ) fx''', materialized=True)
    q.add("cells", f'''    SELECT cv.*, row_number() OVER (ORDER BY variant{carry}) AS cell
    FROM (SELECT DISTINCT variant{carry} FROM fe0 WHERE excluded IS NULL) cv''', shared=True,
          comment="The few distinct (variant, segment values) combinations, numbered (an ordered ROW_NUMBER over a\n"
                  "handful of rows): the wide strings then travel through the per-visitor-day steps as one integer.")
    q.add("fe", f'''    SELECT fe0.user_id, fe0.t0, {day_of("fe0.t0")} AS day0, cells.cell, {d.hash64("fe0.user_id", salt)} AS uid
    FROM fe0 JOIN cells ON fe0.variant = cells.variant{cell_match}
    WHERE fe0.excluded IS NULL''', shared=True,
          comment="The included visitors; uid: a 64-bit hash of user_id (no global ROW_NUMBER: the work partitions).")
    q.add("s1", f'''    SELECT user_id, {day_of("tu")} AS day,
        min(tu) AS mt,
        max(tu) AS mx,
        {per_type("")}
    FROM src{cap_join}
    GROUP BY user_id, {day_of("tu")}''')
    q.add("j", f'''    SELECT s1.user_id, s1.day, s1.views, s1.dwell, s1.inq, s1.inqv,
        fe.uid, fe.t0, fe.day0, fe.cell,
        CASE
            WHEN s1.day > fe.day0 THEN 1
            WHEN s1.day = fe.day0 THEN CASE WHEN s1.mt IS NULL OR s1.mt >= fe.t0 THEN 1 ELSE 2 END
            WHEN s1.day > fe.day0 - $pre THEN 0
            WHEN s1.day = fe.day0 - $pre THEN CASE
                WHEN s1.mt IS NULL OR s1.mt >= fe.t0 - $pre * {DAY_US} THEN 0
                WHEN s1.mx < fe.t0 - $pre * {DAY_US} THEN -1
                ELSE 2 END
            ELSE -1
        END AS part
    FROM s1 JOIN fe ON s1.user_id = fe.user_id''', shared=True)
    q.add("mixed", "    SELECT user_id, uid, day, t0, day0, cell FROM j WHERE part = 2")
    q.add("fix", f'''    SELECT m.uid, m.day, {d.to_int("e.tu >= m.t0")} AS part, m.t0, m.day0, m.cell,
        {per_type("e.")}
    FROM src e JOIN mixed m ON e.user_id = m.user_id AND {day_of("e.tu")} = m.day{cap_join}
    WHERE e.tu >= m.t0 - $pre * {DAY_US}
    GROUP BY m.uid, m.day, {d.to_int("e.tu >= m.t0")}, m.t0, m.day0, m.cell''')
    q.add("vd", '''    SELECT uid, day, part, views, dwell, inq, inqv, day0, cell FROM j WHERE part IN (0, 1)
    UNION ALL
    SELECT uid, day, part, views, dwell, inq, inqv, day0, cell FROM fix''', shared=True,
          comment="Every visitor's days: the post-exposure (part 1) and pre-exposure (part 0) sums.")
    q.add("pre", f'''    SELECT uid, sum(views) AS q_views, sum(dwell) AS q_dwell, sum(inq) AS q_inq,
        {to_double("sum(inq) > 0")} AS q_any, sum(inqv) AS q_inqv
    FROM vd WHERE part = 0 GROUP BY uid''')
    if rate_limit:
        q.add("rate_bots", "    SELECT DISTINCT uid FROM vd WHERE part = 1 AND views > $max_views",
              comment="More page views in a post-exposure day than allowed: a filter over rows, a tiny result.")
    q.add("post", f'''    SELECT uid, day, day0, cell, {post_vals},
        CASE WHEN day < day0 + $roi THEN inq ELSE 0 END AS wq  -- the day's inquiries in the ROI window
    FROM vd WHERE part = 1{post_where}''')
    q.add("cum", f'''    SELECT post.*,
        {cum_cols}
    FROM post''', materialized=True,
          comment="Every window function shares one partition and order, so one sort: the totals come from each\n"
                  "visitor's ``is_last`` row. A second window over the whole partition costs another sort (on 1M\n"
                  "visitors ~1.5x this one; with ORDER BY and a full frame ~10x), for values the last row already has.")
    q.add("caps", "    " + caps_cte, shared=True)
    q.add("d", f'''    SELECT c.cell, c.day, c.day0, {to_double("c.day = c.day0")} AS entry,
        {capped},
        {to_double("c.c_inq > 0")} AS c_any, {to_double("c.c_inq > 0")} - {to_double("c.c_inq - c.inq > 0")} AS d_any,
        {to_double("c.inq > 0")} AS a_any,
        {pre_cols}, coalesce(p.q_any, 0) AS q_any,
        {to_double("c.day0 + $roi <= $end_day")} AS mature,
        CASE WHEN c.day0 + $roi <= $end_day THEN {wq_c} ELSE 0 END AS c_wq,
        CASE WHEN c.day0 + $roi <= $end_day THEN {wq_d} ELSE 0 END AS d_wq
    FROM cum c LEFT JOIN pre p ON c.uid = p.uid CROSS JOIN caps k''')
    q.add("fine", f'''    SELECT cell, day, day0,
        {fine_sums}
    FROM d GROUP BY cell, day, day0''', materialized=True)
    q.select = answer
    return q


def _epoch_us(ts: datetime) -> int:
    if ts.tzinfo is None:
        raise ValueError(f"timestamps must be timezone-aware, got {ts!r}")
    delta = ts - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _check_caps(caps: Mapping[str, Capping | None]) -> dict[str, Capping | None]:
    unknown = set(caps) - set(CAPPABLE)
    if unknown:
        raise ValueError(f"caps: no variable {sorted(unknown)}; the cappable ones are {CAPPABLE}")
    out = {v: caps.get(v) for v in CAPPABLE}
    for var, cap in out.items():
        if cap is None:
            continue
        ok = isinstance(cap.value, int | float) and math.isfinite(cap.value)
        if cap.type == "percentile":
            ok = ok and 0.0 < cap.value <= 1.0
        elif cap.type == "absolute":
            ok = ok and cap.value >= 0.0
        else:
            ok = False
        if not ok:
            raise ValueError(f"caps[{var!r}]: not a valid cap: {cap!r}")
    return out


class DuckDBRunner:
    """A DuckDB connection as a ``SqlRunner`` (what ``load_sums`` wraps a connection in)."""

    dialect = "duckdb"

    def __init__(self, con: duckdb.DuckDBPyConnection, table: str = "events") -> None:
        self.con, self.table = con, table

    def execute(self, sql: str, params: Mapping[str, object] | None = None) -> tuple[list[str], list[tuple]]:
        cur = self.con.execute(sql, params or {})
        return [d[0] for d in cur.description], cur.fetchall()

    def event_ids_unique(self, table: str) -> bool:
        return event_id_enforced_unique(self.con, table)


def as_runner(con: duckdb.DuckDBPyConnection | SqlRunner) -> SqlRunner:
    """Where the statistics queries run: a warehouse (``armor_ab.store.warehouse``: it names its
    ``dialect``), or a DuckDB connection or anything that acts like one (the store's report cursor)."""
    if isinstance(getattr(con, "dialect", None), str) and callable(getattr(con, "execute", None)):
        return con
    if isinstance(con, duckdb.DuckDBPyConnection) or callable(getattr(con, "execute", None)):
        return DuckDBRunner(con)
    raise TypeError(f"not a DuckDB connection or a warehouse: {con!r}")


MAX_KEY_SALTS = 4  # visitor-key hashes tried before giving up (a collision is ~3e-8 per million visitors)


def load_sums(
    con: duckdb.DuckDBPyConnection | SqlRunner,
    experiment: str,
    *,
    start: datetime | None,
    end: datetime,
    cap_percentile: float | None = None,
    pre_days: int = 14,
    segments: Sequence[str] = (),
    source: str | Relation | None = None,
    dedup: bool | None = None,
    variants: Sequence[str] | None = None,
    caps: Mapping[str, Capping | None] | None = None,
    bot_user_agents: bool = True,
    max_views_per_day: int | None = None,
    conversion_window_days: int | None = None,
    roi_window_days: int = 3,
    max_age_days: int = 27,
    exposures: str = "any",
) -> ExperimentSums:
    """Run the query for one experiment (the rules are in this module's docstring).

    ``cap_percentile``: the optional event-level dwell cap (None: off). ``caps``: the per-visitor
    cap of each variable of ``CAPPABLE`` (``AnalysisSpec.variable_caps``); a variable missing
    from the mapping, or mapped to None, is not capped; ``caps=None`` means ``DEFAULT_CAPS``.
    ``variants``: the configured variants (None: every variant seen is reported).
    ``dedup=None`` deduplicates only when the table does not enforce unique event ids.
    ``exposures``: ``"server"`` lets in only visitors an exposure not posted with a client key vouches
    for (the table needs a ``source`` column); ``"any"`` (default here) reads every exposure alike.
    """
    if cap_percentile is not None and not 0.0 < cap_percentile <= 1.0:
        raise ValueError(f"cap_percentile must be in (0, 1] or None, got {cap_percentile!r}")
    if pre_days < 1:
        raise ValueError(f"pre_days must be >= 1, got {pre_days!r}")
    if max_views_per_day is not None and max_views_per_day < 0:
        raise ValueError(f"max_views_per_day must be >= 0 or None, got {max_views_per_day!r}")
    if conversion_window_days is not None and conversion_window_days < 1:
        raise ValueError(f"conversion_window_days must be >= 1 or None, got {conversion_window_days!r}")
    if roi_window_days < 1:
        raise ValueError(f"roi_window_days must be >= 1, got {roi_window_days!r}")
    if max_age_days < 0:
        raise ValueError(f"max_age_days must be >= 0, got {max_age_days!r}")
    if isinstance(variants, str):
        raise ValueError("variants must be a sequence of variant keys, not one string")
    var_caps = _check_caps(DEFAULT_CAPS if caps is None else caps)
    start_us, end_us = _epoch_us(start or _FAR_PAST), _epoch_us(end)
    if start_us > end_us:
        raise ValueError(f"window start {start} is after its end {end}")
    segments = list(dict.fromkeys(segments))
    runner = as_runner(con)
    d = get_dialect(runner.dialect)
    source = source or getattr(runner, "table", "events")
    check_source(source)
    if dedup is None:
        dedup = not (source.unique if isinstance(source, Relation) else runner.event_ids_unique(source))
    end_day = end_us // DAY_US
    max_age = max_age_days if conversion_window_days is None else min(max_age_days, conversion_window_days - 1)
    params: dict[str, object] = {
        "exp": experiment,
        "start": start_us,
        "lo": start_us - pre_days * DAY_US,
        "end": end_us,
        "end_day": end_day,
        "pre": int(pre_days),
        "roi": int(roi_window_days),
        "max_age": int(max_age),
        "pct": float(cap_percentile) if cap_percentile is not None else None,
        "variants": [str(v) for v in variants] if variants is not None else None,
        "max_views": int(max_views_per_day) if max_views_per_day is not None else None,
        "cw": int(conversion_window_days) if conversion_window_days is not None else None,
        **{f"cap_{v}": float(c.value) for v, c in var_caps.items() if c is not None},
    }
    for salt in range(MAX_KEY_SALTS):
        query = _query_text(
            segments, dedup=dedup, source=source, event_cap=cap_percentile is not None,
            caps={v: c.type if c is not None else None for v, c in var_caps.items()},
            variants=variants is not None, bot_user_agents=bot_user_agents,
            rate_limit=max_views_per_day is not None, conversion_window=conversion_window_days is not None,
            exposures=exposures, d=d, salt=salt,
        )
        names, rows = run_query(runner, d, query, params)
        key_col = names.index("visitors")
        collisions = sum(int(r[key_col] or 0) for r in rows if r[0] == "keys")
        if not collisions:
            break
    else:
        raise RuntimeError(f"visitor keys (64-bit hashes of user_id) collided under {MAX_KEY_SALTS} salts")

    col = {name: i for i, name in enumerate(names)}
    sum_idx = [col[c] for c in SUM_COLUMNS]
    flag_idx = [col["grp_day"], *(col[f"grp_g{i}"] for i in range(len(segments)))]
    daily: dict[str, dict[date, VisitorSums]] = {}
    seg: dict[str, dict[str, dict[str, VisitorSums]]] = {name: {} for name in segments}
    age_sums: dict[str, dict[int, VisitorSums]] = {}
    unknown: dict[str, int] = {}
    paused: dict[str, int] = {}
    bots = dict.fromkeys(BOT_REASONS, 0)
    multi = client_only = 0
    event_cap: float | None = None
    used_caps: dict[str, float | None] = dict.fromkeys(CAPPABLE)
    for row in rows:
        part = row[col["part"]]
        if part in ("sums", "age"):
            sums = VisitorSums(tuple(float(row[i]) for i in sum_idx))
            variant, day = row[col["variant"]], row[col["day"]]
            if part == "age":
                age_sums.setdefault(variant, {})[int(day)] = sums
            elif row[flag_idx[0]] == 0:  # the (variant, day) grouping set
                daily.setdefault(variant, {})[_EPOCH + timedelta(days=int(day))] = sums
            else:
                for i, name in enumerate(segments):
                    value = row[col[f"g{i}"]]
                    if row[flag_idx[1 + i]] == 0 and value is not None:
                        seg[name].setdefault(str(value), {})[variant] = sums
        elif part == "excluded":
            reason, count = row[col["reason"]], int(row[col["visitors"]])
            if reason == "multi":
                multi += count
            elif reason == "client":
                client_only += count
            elif reason == "unknown":
                unknown[row[col["variant"]]] = unknown.get(row[col["variant"]], 0) + count
            elif reason == "paused":
                paused[row[col["variant"]]] = paused.get(row[col["variant"]], 0) + count
            else:
                bots[reason] += count
        elif part == "caps":
            event_cap = None if row[col["cap_event"]] is None else float(row[col["cap_event"]])
            for v in CAPPABLE:
                value = row[col[f"cap_{v}"]]
                used_caps[v] = None if value is None else float(value)
    ages = _ages(daily, age_sums, end_day, max_age)
    return ExperimentSums(
        cap=event_cap, daily=daily, segments=seg, multi_variant_visitors=multi, deduplicated_in_sql=dedup,
        unknown_variant_visitors=unknown, bot_visitors=bots, caps=used_caps, ages=ages,
        client_only_visitors=client_only, paused_visitors=paused,
    )


def _ages(
    daily: dict[str, dict[date, VisitorSums]], age_sums: dict[str, dict[int, VisitorSums]], end_day: int, max_age: int
) -> dict[str, dict[int, VisitorSums]]:
    """Per-age sums with their ``n``: every visitor whose age-k day ended before the analysis end.

    The visitors without activity that day count too, which is why ``n`` comes from the entries
    per day (the daily rows' ``n``) rather than from the activity rows SQL aggregated.
    """
    n_index = SUM_COLUMNS.index("n")
    out: dict[str, dict[int, VisitorSums]] = {}
    for variant, days in daily.items():
        entries = [((d - _EPOCH).days, s.n) for d, s in days.items() if s.n]
        for k in range(max_age + 1):
            n = sum(count for day0, count in entries if day0 + k < end_day)
            if n == 0:
                break  # fewer visitors qualify at every later age
            values = list(age_sums.get(variant, {}).get(k, VisitorSums.zero()).values)
            values[n_index] = float(n)
            out.setdefault(variant, {})[k] = VisitorSums(tuple(values))
    return out
