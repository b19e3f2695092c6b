"""The reads behind an experiment's live health (``armor_ab.services.health``): a few cheap queries, no report.

``health_reads`` runs in the database process's read pool (``AppState.read``), never on the writer:

* the experiment's visitors by the day of their first exposure, classified the way the analysis
  classifies them (``armor_ab.stats.sql``: only exposures naming a variant, in the window
  [start, end]; excluded as ``client`` (``exposures="server"``: only client-posted exposures name
  the visitor), ``multi``, ``unknown`` variant or ``user_agent`` bot, first reason first). The
  rate-limited bots (``bots.max_views_per_day``) are not told apart here: that needs every page
  view, which is the report's work;
* exposure and event counts over the last hour and since the start, and the ingestion lag
  (``received_at - ts``) of the client-sent events received lately;
* the experiment's stored pages by review status and by guardrail verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import duckdb

DAY_US = 86_400_000_000
US = 1_000_000
_EPOCH = date(1970, 1, 1)
VERDICTS = ("pass", "warn", "fail")


def _us(ts: datetime) -> int:
    if ts.tzinfo is None:
        raise ValueError(f"timestamps must be timezone-aware, got {ts!r}")
    delta = ts - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * US + delta.microseconds


@dataclass(frozen=True)
class HealthReads:
    """What the health check reads of one experiment (counts of visitors, exposures and events)."""

    # Included visitors (first exposures) per variant and UTC day: the looks of the sequential SRM test.
    daily: dict[str, dict[date, int]] = field(default_factory=dict)
    excluded: dict[str, int] = field(default_factory=dict)  # visitors left out, by reason
    visitors: int = 0  # every visitor with a first exposure in the window, excluded ones too
    recent_visitors: int = 0  # ... whose first exposure is at or after ``recent_from``
    recent_bots: int = 0  # ... of them flagged as a known bot (properties.bot = true)
    exposures_last_hour: int = 0
    events_last_hour: int = 0  # page_view, dwell and inquiry events
    exposures_total: int = 0
    events_total: int = 0
    lag_events: int = 0  # client-sent events received in the lag window
    lag_p50_s: float | None = None
    lag_p95_s: float | None = None
    pages_by_status: dict[str, int] = field(default_factory=dict)
    pages_by_verdict: dict[str, int] = field(default_factory=dict)  # pass, warn, fail, unchecked

    def looks(self, variants: Sequence[str]) -> list[dict[str, int]]:
        """Cumulative included visitors per variant at the end of each UTC day (oldest first, gaps filled)."""
        days = sorted({d for per_day in self.daily.values() for d in per_day})
        if not days:
            return [dict.fromkeys(variants, 0)]
        acc = dict.fromkeys(variants, 0)
        out = []
        for i in range((days[-1] - days[0]).days + 1):
            day = days[0] + timedelta(days=i)
            for v in variants:
                acc[v] += self.daily.get(v, {}).get(day, 0)
            out.append(dict(acc))
        return out


def health_reads(
    con: duckdb.DuckDBPyConnection,
    experiment: str,
    *,
    start: datetime | None,
    end: datetime,
    now: datetime,
    variants: Sequence[str],
    exposures: str = "server",
    bot_user_agents: bool = True,
    recent_from: datetime,
    lag_from: datetime,
) -> HealthReads:
    """The counts of ``HealthReads`` for ``experiment`` over the window [start, end] (no start: no window),
    all from one snapshot (one transaction: commits meanwhile do not make its counts disagree)."""
    if exposures not in ("server", "any"):
        raise ValueError(f"exposures must be server or any, got {exposures!r}")
    con.execute("BEGIN TRANSACTION")
    try:
        return _health_reads(con, experiment, start=start, end=end, now=now, variants=variants,
                             exposures=exposures, bot_user_agents=bot_user_agents, recent_from=recent_from,
                             lag_from=lag_from)
    finally:
        con.execute("ROLLBACK")  # it only read


def _health_reads(
    con: duckdb.DuckDBPyConnection, experiment: str, *, start: datetime | None, end: datetime, now: datetime,
    variants: Sequence[str], exposures: str, bot_user_agents: bool, recent_from: datetime, lag_from: datetime,
) -> HealthReads:
    pages_by_status, pages_by_verdict = _pages(con, experiment)
    lag = _lag(con, experiment, lag_from)
    if start is None or start > end:
        return HealthReads(pages_by_status=pages_by_status, pages_by_verdict=pages_by_verdict, **lag)
    window = {"exp": experiment, "start": _us(start), "end": _us(end)}
    vouched = ("coalesce(bool_or(source IS DISTINCT FROM 'client') FILTER (variant IS NOT NULL), false)"
               if exposures == "server" else "true")
    bot_reason = "WHEN ua_bot THEN 'user_agent' " if bot_user_agents else ""
    rows = con.execute(
        f"""
        WITH fe AS (
            SELECT min(tu) FILTER (variant IS NOT NULL) AS t0,
                arg_min(variant, tu) FILTER (variant IS NOT NULL) AS variant,
                min(variant) <> max(variant) AS multi,
                coalesce(bool_or(json_extract(properties, '$.bot') = 'true'), false) AS ua_bot,
                {vouched} AS vouched
            FROM (SELECT user_id, variant, epoch_us(ts) AS tu, properties, source FROM events
                  WHERE experiment = $exp AND type = 'exposure' AND epoch_us(ts) BETWEEN $start AND $end)
            GROUP BY user_id
            HAVING count(variant) > 0
        )
        SELECT variant, t0 // {DAY_US} AS day, t0 >= $recent AS recent, ua_bot,
            CASE WHEN NOT vouched THEN 'client' WHEN multi THEN 'multi'
                 WHEN NOT list_contains($variants::VARCHAR[], variant) THEN 'unknown' {bot_reason}END AS excluded,
            count(*) AS visitors
        FROM fe GROUP BY ALL
        """,
        {**window, "recent": _us(recent_from), "variants": [str(v) for v in variants]},
    ).fetchall()
    daily: dict[str, dict[date, int]] = {}
    excluded: dict[str, int] = {}
    visitors = recent = recent_bots = 0
    for variant, day, is_recent, bot, reason, n in rows:
        visitors += n
        if is_recent:
            recent += n
            recent_bots += n if bot else 0
        if reason is not None:
            excluded[reason] = excluded.get(reason, 0) + n
        else:
            per_day = daily.setdefault(variant, {})
            d = _EPOCH + timedelta(days=int(day))
            per_day[d] = per_day.get(d, 0) + n
    counts = con.execute(
        """
        SELECT count(*) FILTER (type = 'exposure'), count(*) FILTER (type <> 'exposure'),
            count(*) FILTER (type = 'exposure' AND epoch_us(ts) >= $hour),
            count(*) FILTER (type <> 'exposure' AND epoch_us(ts) >= $hour)
        FROM events WHERE experiment = $exp AND epoch_us(ts) BETWEEN $start AND $end
        """,
        {**window, "hour": _us(now - timedelta(hours=1))},
    ).fetchone()
    return HealthReads(
        daily=daily, excluded=excluded, visitors=visitors, recent_visitors=recent, recent_bots=recent_bots,
        exposures_total=int(counts[0]), events_total=int(counts[1]),
        exposures_last_hour=int(counts[2]), events_last_hour=int(counts[3]),
        pages_by_status=pages_by_status, pages_by_verdict=pages_by_verdict, **lag,
    )


def _lag(con: duckdb.DuckDBPyConnection, experiment: str, since: datetime) -> dict:
    """p50 and p95 of ``received_at - ts`` (seconds, a client clock ahead counts as 0) of the
    client-sent events received since ``since``; the server's own exposures have no lag."""
    n, q = con.execute(
        """
        SELECT count(*), quantile_cont(greatest(epoch_us(received_at) - epoch_us(ts), 0), [0.5, 0.95])
        FROM events WHERE experiment = $exp AND source = 'client' AND received_at >= $since
        """,
        {"exp": experiment, "since": since},
    ).fetchone()
    if not n:
        return {"lag_events": 0}
    return {"lag_events": int(n), "lag_p50_s": float(q[0]) / US, "lag_p95_s": float(q[1]) / US}


def _pages(con: duckdb.DuckDBPyConnection, experiment: str) -> tuple[dict[str, int], dict[str, int]]:
    rows = con.execute(
        "SELECT status, coalesce(verdict, 'unchecked'), count(*) FROM content WHERE experiment = ? GROUP BY ALL",
        [experiment],
    ).fetchall()
    by_status: dict[str, int] = {}
    by_verdict: dict[str, int] = dict.fromkeys((*VERDICTS, "unchecked"), 0)
    for status, verdict, n in rows:
        by_status[status] = by_status.get(status, 0) + n
        by_verdict[verdict] = by_verdict.get(verdict, 0) + n
    return by_status, by_verdict


def api_key_name(con: duckdb.DuckDBPyConnection, key_id: str) -> str | None:
    """The name an API key was created with (who paused or resumed through the API); None when it has none."""
    row = con.execute("SELECT name FROM api_keys WHERE key_id = ?", [key_id]).fetchone()
    return row[0] if row else None


@dataclass(frozen=True)
class HistoryRow:
    revision: int
    action: str
    status: str
    bucket_version: int
    changed_at: datetime
    note: str | None

    def public(self) -> dict:
        return {"revision": self.revision, "action": self.action, "status": self.status,
                "bucket_version": self.bucket_version, "changed_at": self.changed_at.isoformat(), "note": self.note}


def experiment_history(con: duckdb.DuckDBPyConnection, key: str) -> list[HistoryRow]:
    """Every history row of an experiment, oldest first (pause and resume carry their cause and who)."""
    rows = con.execute(
        """SELECT revision, action, status, bucket_version, changed_at, note FROM experiment_history
           WHERE key = ? ORDER BY revision""",
        [key],
    ).fetchall()
    return [HistoryRow(*r) for r in rows]
