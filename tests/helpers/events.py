"""Generated events and their reference sums: a plain numpy/Python computation of the analysis contract.

Shared by the SQL tests (``test_stats_sql``, ``test_stats_report``, ``test_data_quality_sql``).

The generator deliberately hits every rule of the analysis contract: exposures before the window
start and after its end, a second exposure in another variant, exposures without a variant,
events before the first exposure (some on the same UTC day, some on the day the pre-window starts,
some older than the pre-window), an event at exactly the exposure time, events after the window,
dwell outliers for the caps, another experiment's events, (for the table without a primary key)
duplicated event ids, and with ``dirty`` the data-quality cases: variants the experiment does not
have, exposures flagged ``bot: true`` (the first one or a later one, with or without a variant,
and look-alikes that are not the JSON boolean), and bursts of page views around the bot-rate limit.
The reference applies every rule of ``armor_ab.stats.sql``'s contract visitor by visitor.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa

from armor_ab.event_schema import COLUMN_NAMES
from armor_ab.experiments.models import CAPPABLE, Capping
from armor_ab.stats.suffstats import CROSS, POST, PRE, ROI_WINDOW, SUM_COLUMNS

US = 1_000_000
DAY = 86_400 * US
START = datetime(2025, 3, 3, 9, 30, tzinfo=UTC)
END = datetime(2025, 3, 13, 17, 0, tzinfo=UTC)
PRE_DAYS = 2


def _us(ts: datetime) -> int:
    return int((ts - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))


@dataclass
class Events:
    """Generated events as columns (timestamps in epoch µs)."""

    event_id: list[str]
    experiment: list[str]
    variant: list[str | None]
    user_id: list[str]
    type: list[str]
    value: list[float | None]
    ts: list[int]
    properties: list[str | None]
    source: list[str | None] | None = None  # who wrote each row (None: every row the server's own)

    def __len__(self) -> int:
        return len(self.ts)

    def table(self) -> pa.Table:
        ts = pa.array(self.ts, type=pa.timestamp("us", tz="UTC"))
        return pa.table(
            {
                "event_id": self.event_id,
                "experiment": self.experiment,
                "variant": self.variant,
                "user_id": self.user_id,
                "item_id": [None] * len(self),
                "type": self.type,
                "value": pa.array(self.value, type=pa.float64()),
                "ts": ts,
                "received_at": ts,
                "properties": self.properties,
                "source": self.source if self.source is not None else ["server"] * len(self),
            }
        )


def generate_events(
    seed: int = 0,
    visitors: int = 400,
    variants: tuple[str, ...] = ("control", "treatment"),
    experiment: str = "exp",
    start: datetime = START,
    end: datetime = END,
    effect: float = 0.0,
    dirty: bool = False,
) -> Events:
    """Generated events; ``dirty`` adds the data-quality cases (bots both ways, unknown variants, heavy viewers).

    Without ``dirty`` the random stream is the one other tests were written against.
    """
    rng = np.random.default_rng(seed)
    s_us, e_us = _us(start), _us(end)
    cols: dict[str, list] = {k: [] for k in Events.__dataclass_fields__ if k != "source"}

    def add(user, typ, ts, variant=None, value=None, props=None, exp=experiment):
        cols["event_id"].append(str(uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | len(cols["ts"]))))
        cols["experiment"].append(exp)
        cols["variant"].append(variant)
        cols["user_id"].append(user)
        cols["type"].append(typ)
        cols["value"].append(value)
        cols["ts"].append(int(ts))
        cols["properties"].append(props)

    devices, categories = ["mobile", "desktop", "tablet"], ["pumps", "valves", "seals"]
    for i in range(visitors):
        user = f"u{i}"
        v = variants[int(rng.integers(len(variants)))]
        if dirty and rng.random() < 0.04:
            v = "ghost"  # a variant the experiment does not have (a stale client, a typo)
        t0 = int(rng.integers(s_us - DAY, e_us + DAY))  # some outside the window
        props = {"device": devices[int(rng.integers(3))], "category": categories[int(rng.integers(3))]}
        if rng.random() < 0.3:
            props["plan"] = "pro" if rng.random() < 0.5 else "free"
        if rng.random() < 0.1:
            del props["device"]
        if dirty:
            r = rng.random()
            if r < 0.05:
                props["bot"] = True  # flagged by the API's User-Agent check
            elif r < 0.08:
                props["bot"] = "true" if r < 0.065 else False  # not the JSON boolean true: not a bot
        add(user, "exposure", t0, v, props=json.dumps(props))
        if rng.random() < 0.05:  # exposed again later in another variant: excluded as multi-variant
            other = variants[(variants.index(v) + 1) % len(variants)] if v in variants else variants[0]
            add(user, "exposure", t0 + int(rng.integers(1, 3 * DAY)), other, props=json.dumps({"device": "tv"}))
        if rng.random() < 0.05:  # an exposure before the window start: ignored
            add(user, "exposure", s_us - int(rng.integers(1, 5 * DAY)), variants[0], props="{}")
        if rng.random() < 0.03:  # outside coverage: no variant, never an entry
            add(user, "exposure", t0 - int(rng.integers(1, DAY)), None, props="{}")
        if dirty and rng.random() < 0.03:  # a later exposure (same variant, or none) carries the bot flag
            add(user, "exposure", t0 + int(rng.integers(1, 2 * DAY)), v if rng.random() < 0.5 else None,
                props=json.dumps({"bot": True}))
        k = int(rng.poisson(7))
        lift = 1.0 + (effect if v != variants[0] else 0.0)
        for _ in range(k):
            r = rng.random()
            if r < 0.15:
                off = -int(rng.integers(1, (PRE_DAYS + 1) * DAY))  # before exposure, some beyond the pre-window
            elif r < 0.22:
                off = -int(rng.integers(1, 6 * 3600 * US))  # shortly before: often the same UTC day
            elif r < 0.25:
                off = 0  # at exactly the exposure time: counts
            else:
                off = int(rng.integers(0, 6 * DAY))
            typ = rng.choice(["page_view", "dwell", "inquiry"], p=[0.45, 0.45, 0.10])
            value = None
            if typ == "dwell":
                value = float(rng.lognormal(10, 1) * lift)
                if rng.random() < 0.03:
                    value *= 50  # outliers the cap must tame
                if rng.random() < 0.02:
                    value = None
            elif typ == "inquiry" and rng.random() < 0.6:
                value = float(rng.integers(50, 500))
            add(user, str(typ), t0 + off, v if rng.random() < 0.5 else None, value=value)
        # The pre-window's first day: events on both sides of t0 - PRE_DAYS x 24 h.
        if rng.random() < 0.1:
            edge = t0 - PRE_DAYS * DAY
            add(user, "page_view", edge + int(rng.integers(-3600 * US, 3600 * US)))
            add(user, "dwell", edge + int(rng.integers(-3600 * US, 3600 * US)), value=float(rng.lognormal(10, 1)))
        if dirty and rng.random() < 0.06:
            # A heavy viewer: a burst of page views on one day, around the bot-rate limit (30 in the
            # tests), some of it possibly before the exposure (which must not count).
            burst = t0 + int(rng.integers(-2 * 3600 * US, 3 * DAY))
            for _ in range(int(rng.integers(20, 60))):
                add(user, "page_view", burst + int(rng.integers(0, 3600 * US)))
                if rng.random() < 0.3:
                    add(user, "dwell", burst + int(rng.integers(0, 3600 * US)), value=float(rng.lognormal(8, 1)))
    for i in range(30):  # another experiment on the same visitors: never counted
        add(f"u{i}", "page_view", s_us + DAY, "control", exp="other")
        add(f"u{i}", "exposure", s_us, "control", exp="other", props="{}")
    return Events(**cols, source=["server"] * len(cols["ts"]))


def insert(con: duckdb.DuckDBPyConnection, events: Events, table: str = "events") -> None:
    arrow = events.table()  # noqa: F841 - DuckDB reads the local variable by name
    names = ", ".join(COLUMN_NAMES)  # the row columns: commit_seq takes the table's DEFAULT
    con.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM arrow")


# ---- the reference: the contract implemented directly, per visitor, in Python/numpy -----------------

DAILY = ("views", "dwell", "inq", "inqv")  # the capped, day-by-day variables


def _zero() -> dict[str, float]:
    return dict.fromkeys(SUM_COLUMNS, 0.0)


def _add_visitor(out: dict[str, float], x: dict[str, float]) -> None:
    """One visitor's values (every variable of SUM_COLUMNS) into the sums."""
    out["n"] += 1
    for var in (*POST, *PRE, *ROI_WINDOW):
        out[f"s_{var}"] += x[var]
        out[f"ss_{var}"] += x[var] ** 2
    for a, b in CROSS:
        out[f"x_{a}__{b}"] += x[a] * x[b]


def reference(
    events: Events,
    *,
    experiment: str = "exp",
    start: datetime = START,
    end: datetime = END,
    cap_percentile: float | None = None,
    pre_days: int = PRE_DAYS,
    segments: tuple[str, ...] = ("device", "category", "plan"),
    variants: tuple[str, ...] | None = None,
    caps: dict[str, Capping | None] | None = None,
    bot_user_agents: bool = True,
    max_views_per_day: int | None = None,
    conversion_window_days: int | None = None,
    roi_window_days: int = 3,
    max_age_days: int = 27,
    upto: int | None = None,
) -> dict:
    """Per-variant sums (and per segment, per age), counting only data up to ``upto`` (epoch µs) when given.

    Written from the rules, visitor by visitor; the same keyword arguments as ``load_sums``.
    """
    caps = dict.fromkeys(CAPPABLE, Capping()) if caps is None else {v: caps.get(v) for v in CAPPABLE}
    s_us, e_us = _us(start), _us(end)
    end_day = e_us // DAY
    horizon = e_us if upto is None else min(e_us, upto)

    # Unique events of the experiment inside [start - pre, end].
    seen: set[str] = set()
    ev = []
    for i in range(len(events)):
        if events.experiment[i] != experiment or events.event_id[i] in seen:
            continue
        seen.add(events.event_id[i])
        if s_us - pre_days * DAY <= events.ts[i] <= e_us:
            ev.append((events.user_id[i], events.type[i], events.ts[i], events.variant[i], events.value[i],
                       events.properties[i]))

    # The optional event-level dwell cap.
    dwell_values = [val for _, typ, ts, _, val, _ in ev if typ == "dwell" and val is not None and ts >= s_us]
    event_cap = float(np.quantile(dwell_values, cap_percentile)) if cap_percentile and dwell_values else None

    # Exposures in the window: the first one naming a variant decides; every one may carry bot=true.
    first: dict[str, tuple[int, str, dict]] = {}
    arms: dict[str, set[str]] = {}
    flagged: set[str] = set()
    for user, typ, ts, variant, _, props in ev:
        if typ != "exposure" or ts < s_us:
            continue
        p = json.loads(props or "{}")
        if p.get("bot") is True:
            flagged.add(user)
        if variant is None:
            continue
        arms.setdefault(user, set()).add(variant)
        if user not in first or ts < first[user][0]:
            first[user] = (ts, variant, p)

    # Each visitor's events, split into post-exposure days and the pre-exposure window.
    post_days: dict[str, dict[int, dict[str, float]]] = {u: {} for u in first}
    pre = {u: dict.fromkeys(DAILY, 0.0) for u in first}
    window_inq: dict[str, dict[int, float]] = {u: {} for u in first}  # inquiries in the ROI window, by day
    for user, typ, ts, _, value, _ in ev:
        if user not in first or typ == "exposure":
            continue
        t0 = first[user][0]
        if ts >= t0:
            day = ts // DAY
            bucket = post_days[user].setdefault(day, dict.fromkeys(DAILY, 0.0))
            if typ == "inquiry" and day < t0 // DAY + roi_window_days:
                window_inq[user][day] = window_inq[user].get(day, 0.0) + 1
        elif ts >= t0 - pre_days * DAY:
            bucket = pre[user]
        else:
            continue
        if typ == "page_view":
            bucket["views"] += 1
        elif typ == "dwell" and value is not None:
            bucket["dwell"] += value if event_cap is None else min(value, event_cap)
        elif typ == "inquiry":
            bucket["inq"] += 1
            bucket["inqv"] += value or 0.0

    # Exclusions, each visitor under its first reason.
    excluded: dict[str, str] = {}
    unknown: dict[str, int] = {}
    for user, (_, variant, _) in first.items():
        busiest = max((d["views"] for d in post_days[user].values()), default=0.0)
        if len(arms[user]) > 1:
            excluded[user] = "multi"
        elif variants is not None and variant not in variants:
            excluded[user] = "unknown"
            unknown[variant] = unknown.get(variant, 0) + 1
        elif bot_user_agents and user in flagged:
            excluded[user] = "user_agent"
        elif max_views_per_day is not None and busiest > max_views_per_day:
            excluded[user] = "rate"
    included = [u for u in first if u not in excluded]

    def counted_days(user: str) -> dict[int, dict[str, float]]:
        """The post-exposure days inside the conversion window."""
        day0 = first[user][0] // DAY
        last = day0 + conversion_window_days if conversion_window_days else float("inf")
        return {d: vals for d, vals in post_days[user].items() if d < last}

    # Per-visitor caps from the included visitors' totals (zeros included), pooled over variants.
    cap_values: dict[str, float | None] = {}
    for var in DAILY:
        cap = caps[var]
        totals = [sum(vals[var] for vals in counted_days(u).values()) for u in included]
        if cap is None or (cap.type == "percentile" and not totals):
            cap_values[var] = None
        elif cap.type == "percentile":
            cap_values[var] = float(np.quantile(totals, cap.value))
        else:
            cap_values[var] = cap.value

    def capped(var: str, value: float) -> float:
        return value if cap_values[var] is None else min(value, cap_values[var])

    def values(user: str) -> dict[str, float]:
        """The visitor's variables as of ``horizon``."""
        day0 = first[user][0] // DAY
        x: dict[str, float] = {}
        raw = {var: 0.0 for var in DAILY}
        for day, vals in counted_days(user).items():
            if day * DAY <= horizon:  # whole days: the query's rows are (visitor, day)
                for var in DAILY:
                    raw[var] += vals[var]
        for var in DAILY:
            x[var] = capped(var, raw[var])
            x[f"q_{var}"] = capped(var, pre[user][var])
        x["any"] = float(raw["inq"] > 0)
        x["q_any"] = float(pre[user]["inq"] > 0)
        mature = day0 + roi_window_days <= end_day
        x["mature"] = float(mature)
        # As of the horizon: the window's inquiries so far (the daily series of wq is not meaningful).
        so_far = sum(n for day, n in window_inq[user].items() if day * DAY <= horizon)
        x["wq"] = capped("inq", so_far) if mature else 0.0
        return x

    entered = [u for u in included if first[u][0] <= horizon]
    by_variant: dict[str, list[str]] = {}
    for u in entered:
        by_variant.setdefault(first[u][1], []).append(u)
    totals = {}
    for variant, users in by_variant.items():
        totals[variant] = _zero()
        for u in users:
            _add_visitor(totals[variant], values(u))
    seg: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for key in segments:
        seg[key] = {}
        for u in entered:
            value = first[u][2].get(key)
            if value is not None:
                out = seg[key].setdefault(str(value), {}).setdefault(first[u][1], _zero())
                _add_visitor(out, values(u))

    # Ages: the values of the single day day0 + k, for every visitor whose day ended in time.
    last_age = max_age_days if conversion_window_days is None else min(max_age_days, conversion_window_days - 1)
    ages: dict[str, dict[int, dict[str, float]]] = {}
    for u in included:
        day0, days = first[u][0] // DAY, counted_days(u)
        running = dict.fromkeys(DAILY, 0.0)
        for k in range(last_age + 1):
            if day0 + k >= end_day:
                break
            today = days.get(day0 + k, dict.fromkeys(DAILY, 0.0))
            x = dict.fromkeys((*POST, *PRE, *ROI_WINDOW), 0.0)
            for var in DAILY:
                before = running[var]
                running[var] += today[var]
                x[var] = capped(var, running[var]) - capped(var, before)
            x["any"] = float(today["inq"] > 0)
            _add_visitor(ages.setdefault(first[u][1], {}).setdefault(k, _zero()), x)

    bots = {"user_agent": 0, "rate": 0}
    for reason in excluded.values():
        if reason in bots:
            bots[reason] += 1
    return {
        "cap": event_cap,
        "caps": cap_values,
        "totals": totals,
        "segments": seg,
        "ages": ages,
        "multi": sum(1 for r in excluded.values() if r == "multi"),
        "unknown": unknown,
        "bots": bots,
    }
