"""One DuckDB query that turns the event log into every sufficient statistic the report needs.

What counts (the analysis contract):

* A visitor enters on its **first exposure** inside the window [start, end] that names a variant;
  its variant is that exposure's variant, its segment values (device, category, ...) are read
  from that exposure's ``properties``. Visitors exposed to more than one variant keep the first
  one and are counted in ``multi_variant_visitors``.
* Its page_view / dwell / inquiry events count from its first exposure (``ts >= t0``) to the
  window end. Events in the ``pre_days`` x 24 h before ``t0`` are its pre-exposure (CUPED)
  values; a client sends those only when it logs events before assigning.
* Dwell values are capped at the ``cap_percentile`` quantile (``quantile_cont``, linear
  interpolation, the same as ``numpy.quantile``) of every dwell value of the experiment in the window.
* Days are UTC calendar days. Day d's statistics cover all data up to the end of day d.
* Events are unique by ``event_id``: when the source table enforces it (the real ``events``
  table has it as PRIMARY KEY) nothing more is needed; otherwise the query deduplicates first.
  A blanket ``DISTINCT ON (event_id)`` costs ~2 s on 10M rows, which is why it is not always on.

How it stays fast (one pass over the events on the common path, no join against them):

1. ``fe``: each visitor's first exposure, from the exposure rows only (~1 per visitor).
2. ``s1``: the experiment's events grouped by (visitor, UTC day) once: the sums per type and the
   group's earliest and latest timestamps.
3. ``j``: each group classified as post-exposure, pre-exposure, outside, or "mixed" (the exposure
   day when something happened before the exposure, or the day the pre-window starts in). Only
   mixed groups are recomputed from their events (``fix``); with none, that join reads nothing.
4. A running sum per visitor over its days gives the cumulative value c at each active day, so
   the daily *changes* of sums of squares and cross-products are exact (c² - p² with p = c - δ);
   summing the changes over days gives the totals and, cumulated in Python, the daily series.
   Variant, segment values and the multi-variant flag travel as one small integer ("cell").
5. One small aggregation by (cell, day), then GROUPING SETS for the daily and per-segment rows.

On 1M visitors / 10M events this is ~4.5 CPU-seconds (see benchmarks/bench_analysis.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import duckdb

from armor_ab.stats.suffstats import CROSS, POST, SUM_COLUMNS, VisitorSums

DAY_US = 86_400_000_000
_EPOCH = date(1970, 1, 1)
_FAR_PAST = datetime(1900, 1, 1, tzinfo=UTC)
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True)
class ExperimentSums:
    """The query's answer: sums per variant, per variant and day, per segment value and variant."""

    cap: float | None
    daily: dict[str, dict[date, VisitorSums]]  # variant -> day -> change during that day
    segments: dict[str, dict[str, dict[str, VisitorSums]]]  # key -> value -> variant -> totals
    multi_variant_visitors: int
    deduplicated_in_sql: bool
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


def event_id_enforced_unique(con: duckdb.DuckDBPyConnection, table: str = "events") -> bool:
    """Whether the table's own PRIMARY KEY / UNIQUE constraint already guarantees one row per event_id."""
    rows = con.execute(
        """SELECT constraint_column_names FROM duckdb_constraints()
           WHERE table_name = ? AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')""",
        [table],
    ).fetchall()
    return any(list(cols) == ["event_id"] for (cols,) in rows)


def _json_path_literal(key: str) -> str:
    """A SQL string literal holding the JSON path of a top-level key, any characters escaped."""
    if not isinstance(key, str) or not key or len(key) > 200 or "\x00" in key:
        raise ValueError(f"segment name must be a non-empty string of at most 200 characters, got {key!r}")
    path = '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "'" + path.replace("'", "''") + "'"


def _post_sum(col: str) -> str:
    """The SQL expression whose sum over visitor-day rows is the column ``col`` of SUM_COLUMNS."""
    if col == "n":
        return "entry"
    kind, _, rest = col.partition("_")
    if kind == "s":
        return f"entry * {rest}" if rest.startswith("q_") else f"d_{rest}"
    if kind == "ss":
        # c² - p² with p = c - δ, written as δ(2c - δ) to avoid cancellation.
        return f"entry * {rest} * {rest}" if rest.startswith("q_") else f"d_{rest} * (2 * c_{rest} - d_{rest})"
    a, b = rest.split("__")
    if a.startswith("q_") and b.startswith("q_"):
        return f"entry * {a} * {b}"
    if b.startswith("q_"):  # post x pre: the pre value is fixed, so the change is δ_a * q_b
        return f"d_{a} * {b}"
    return f"d_{a} * c_{b} + d_{b} * c_{a} - d_{a} * d_{b}"  # c_a c_b - p_a p_b


def build_query(segments: Sequence[str], *, dedup: bool, source: str = "events") -> str:
    """The SQL text; parameters $exp, $lo, $start, $end (epoch µs), $pct and $pre (days)."""
    if not _TABLE_NAME.match(source):
        raise ValueError(f"source table {source!r} is not a plain identifier")
    assert all(a in (*POST, *(f"q_{p}" for p in POST)) for pair in CROSS for a in pair)

    seg_cols = [f"g{i}" for i in range(len(segments))]
    seg_extract = "".join(
        f",\n        json_extract_string(arg_min(properties, tu), {_json_path_literal(name)}) AS g{i}"
        for i, name in enumerate(segments)
    )
    carry = "".join(f", {c}" for c in seg_cols)
    cell_match = "".join(f" AND fe0.{c} IS NOT DISTINCT FROM cells.{c}" for c in seg_cols)
    exposure = "type = 'exposure' AND variant IS NOT NULL AND tu >= $start"
    per_type = """count(*) FILTER (type = 'page_view')::DOUBLE AS views,
        coalesce(sum(CASE WHEN value > cap.c THEN cap.c ELSE value END) FILTER (type = 'dwell'), 0) AS dwell,
        count(*) FILTER (type = 'inquiry')::DOUBLE AS inq,
        coalesce(sum(value) FILTER (type = 'inquiry'), 0) AS inqv"""
    cum_cols = ",\n        ".join(f"sum({v}) OVER w AS c_{v}" for v in ("views", "dwell", "inq", "inqv"))
    fine_sums = ",\n        ".join(f"sum({_post_sum(c)}) AS {c}" for c in SUM_COLUMNS)
    final_sums = ", ".join(f"sum({c}) AS {c}" for c in SUM_COLUMNS)
    grouping_sets = ", ".join(["(variant, day)", *(f"(variant, {c})" for c in seg_cols)])
    grouping_flags = "".join(f", GROUPING({c}) AS grp_{c}" for c in seg_cols)
    if dedup:
        src = f"""src AS MATERIALIZED (
    SELECT DISTINCT ON (event_id) user_id, variant, type, value, epoch_us(ts) AS tu, properties
    FROM {source} WHERE experiment = $exp AND epoch_us(ts) BETWEEN $lo AND $end
)"""
    else:
        src = f"""src AS NOT MATERIALIZED (
    SELECT user_id, variant, type, value, epoch_us(ts) AS tu, properties
    FROM {source} WHERE experiment = $exp AND epoch_us(ts) BETWEEN $lo AND $end
)"""
    return f"""
WITH {src},
cap AS (
    SELECT quantile_cont(value, $pct) AS c FROM src WHERE type = 'dwell' AND value IS NOT NULL AND tu >= $start
),
fe0 AS (
    SELECT user_id, min(tu) AS t0, min(tu) // {DAY_US} AS day0, arg_min(variant, tu) AS variant,
        (min(variant) <> max(variant))::DOUBLE AS multi{seg_extract}
    FROM src WHERE {exposure}
    GROUP BY user_id
),
-- The few distinct (variant, segment values, multi) combinations, numbered: the wide strings
-- then travel through the per-visitor-day steps as one integer.
cells AS (
    SELECT *, row_number() OVER () AS cell FROM (SELECT DISTINCT variant, multi{carry} FROM fe0)
),
fe AS (
    SELECT fe0.user_id, fe0.t0, fe0.day0, cells.cell, row_number() OVER () AS uid
    FROM fe0 JOIN cells ON fe0.variant = cells.variant AND fe0.multi = cells.multi{cell_match}
),
s1 AS (
    SELECT user_id, tu // {DAY_US} AS day,
        min(tu) AS mt,
        max(tu) AS mx,
        {per_type}
    FROM src CROSS JOIN cap
    GROUP BY ALL
),
j AS (
    SELECT s1.user_id, s1.day, s1.views, s1.dwell, s1.inq, s1.inqv,
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
    FROM s1 JOIN fe USING (user_id)
),
mixed AS (SELECT user_id, uid, day, t0, day0, cell FROM j WHERE part = 2),
fix AS (
    SELECT m.uid, m.day, (e.tu >= m.t0)::INTEGER AS part, m.t0, m.day0, m.cell,
        count(*) FILTER (e.type = 'page_view')::DOUBLE AS views,
        coalesce(sum(CASE WHEN e.value > cap.c THEN cap.c ELSE e.value END) FILTER (e.type = 'dwell'), 0) AS dwell,
        count(*) FILTER (e.type = 'inquiry')::DOUBLE AS inq,
        coalesce(sum(e.value) FILTER (e.type = 'inquiry'), 0) AS inqv
    FROM src e JOIN mixed m ON e.user_id = m.user_id AND e.tu // {DAY_US} = m.day CROSS JOIN cap
    WHERE e.tu >= m.t0 - $pre * {DAY_US}
    GROUP BY ALL
),
rows AS (
    SELECT uid, day, part, views, dwell, inq, inqv, day0, cell FROM j WHERE part IN (0, 1)
    UNION ALL
    SELECT uid, day, part, views, dwell, inq, inqv, day0, cell FROM fix
),
pre AS (
    SELECT uid, sum(views) AS q_views, sum(dwell) AS q_dwell, sum(inq) AS q_inq,
        (sum(inq) > 0)::DOUBLE AS q_any, sum(inqv) AS q_inqv
    FROM rows WHERE part = 0 GROUP BY uid
),
cum AS (
    SELECT uid, day, day0, cell, views, dwell, inq, inqv,
        {cum_cols}
    FROM rows WHERE part = 1
    WINDOW w AS (PARTITION BY uid ORDER BY day ROWS UNBOUNDED PRECEDING)
),
d AS (
    SELECT c.cell, c.day, (c.day = c.day0)::DOUBLE AS entry,
        c.views AS d_views, c.dwell AS d_dwell, c.inq AS d_inq, c.inqv AS d_inqv,
        c.c_views, c.c_dwell, c.c_inq, c.c_inqv,
        (c.c_inq > 0)::DOUBLE AS c_any, (c.c_inq > 0)::DOUBLE - (c.c_inq - c.inq > 0)::DOUBLE AS d_any,
        coalesce(p.q_views, 0) AS q_views, coalesce(p.q_dwell, 0) AS q_dwell, coalesce(p.q_inq, 0) AS q_inq,
        coalesce(p.q_any, 0) AS q_any, coalesce(p.q_inqv, 0) AS q_inqv
    FROM cum c LEFT JOIN pre p USING (uid)
),
fine AS (
    SELECT cell, day, sum(entry) AS entered,
        {fine_sums}
    FROM d GROUP BY ALL
)
SELECT GROUPING(day) AS grp_day{grouping_flags}, variant, day{carry}, any_value(cap.c) AS cap,
    sum(entered * multi) AS multi_n,
    {final_sums}
FROM fine JOIN cells USING (cell) CROSS JOIN cap
GROUP BY GROUPING SETS ({grouping_sets})
"""


def _epoch_us(ts: datetime) -> int:
    if ts.tzinfo is None:
        raise ValueError(f"timestamps must be timezone-aware, got {ts!r}")
    delta = ts - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def load_sums(
    con: duckdb.DuckDBPyConnection,
    experiment: str,
    *,
    start: datetime | None,
    end: datetime,
    cap_percentile: float = 0.99,
    pre_days: int = 14,
    segments: Sequence[str] = (),
    source: str = "events",
    dedup: bool | None = None,
) -> ExperimentSums:
    """Run the query for one experiment; ``dedup=None`` deduplicates only when the table does not enforce it."""
    if not 0.0 < cap_percentile <= 1.0:
        raise ValueError(f"cap_percentile must be in (0, 1], got {cap_percentile!r}")
    if pre_days < 1:
        raise ValueError(f"pre_days must be >= 1, got {pre_days!r}")
    start_us, end_us = _epoch_us(start or _FAR_PAST), _epoch_us(end)
    if start_us > end_us:
        raise ValueError(f"window start {start} is after its end {end}")
    segments = list(dict.fromkeys(segments))
    if dedup is None:
        dedup = not event_id_enforced_unique(con, source)
    params = {
        "exp": experiment,
        "start": start_us,
        "lo": start_us - pre_days * DAY_US,
        "end": end_us,
        "pct": float(cap_percentile),
        "pre": int(pre_days),
    }
    rows = con.execute(build_query(segments, dedup=dedup, source=source), params).fetchall()

    k = len(segments)
    n_flags = 1 + k
    daily: dict[str, dict[date, VisitorSums]] = {}
    seg: dict[str, dict[str, dict[str, VisitorSums]]] = {name: {} for name in segments}
    cap: float | None = None
    multi = 0
    for row in rows:
        flags = row[:n_flags]
        variant, day = row[n_flags], row[n_flags + 1]
        values = row[n_flags + 2 : n_flags + 2 + k]
        cap_value, multi_value = row[n_flags + 2 + k], row[n_flags + 3 + k]
        sums = VisitorSums(tuple(float(v) for v in row[n_flags + 4 + k :]))
        if cap_value is not None:
            cap = float(cap_value)
        if flags[0] == 0:  # the (variant, day) grouping set
            daily.setdefault(variant, {})[_EPOCH + timedelta(days=int(day))] = sums
            multi += int(round(multi_value or 0))
            continue
        for i in range(k):
            if flags[1 + i] == 0 and values[i] is not None:
                seg[segments[i]].setdefault(str(values[i]), {})[variant] = sums
    return ExperimentSums(cap=cap, daily=daily, segments=seg, multi_variant_visitors=multi, deduplicated_in_sql=dedup)
