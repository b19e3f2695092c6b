"""The SQL sufficient statistics equal a plain numpy/Python computation on the same generated events.

The generator deliberately hits every rule of the analysis contract: exposures before the window
start and after its end, a second exposure in another variant, exposures without a variant,
events before the first exposure (some on the same UTC day, some on the day the pre-window starts,
some older than the pre-window), an event at exactly the exposure time, events after the window,
dwell outliers for the cap, another experiment's events, and (for the table without a primary
key) duplicated event ids.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from armor_ab.stats.sql import build_query, event_id_enforced_unique, load_sums
from armor_ab.stats.suffstats import CROSS, POST, PRE, SUM_COLUMNS, VisitorSums
from armor_ab.store.schema import EVENT_COLUMNS, ensure_schema

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
) -> Events:
    rng = np.random.default_rng(seed)
    s_us, e_us = _us(start), _us(end)
    cols: dict[str, list] = {k: [] for k in Events.__dataclass_fields__}

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
        t0 = int(rng.integers(s_us - DAY, e_us + DAY))  # some outside the window
        props = {"device": devices[int(rng.integers(3))], "category": categories[int(rng.integers(3))]}
        if rng.random() < 0.3:
            props["plan"] = "pro" if rng.random() < 0.5 else "free"
        if rng.random() < 0.1:
            del props["device"]
        add(user, "exposure", t0, v, props=json.dumps(props))
        if rng.random() < 0.05:  # exposed again later in another variant: keeps the first
            other = variants[(variants.index(v) + 1) % len(variants)]
            add(user, "exposure", t0 + int(rng.integers(1, 3 * DAY)), other, props=json.dumps({"device": "tv"}))
        if rng.random() < 0.05:  # an exposure before the window start: ignored
            add(user, "exposure", s_us - int(rng.integers(1, 5 * DAY)), variants[0], props="{}")
        if rng.random() < 0.03:  # outside coverage: no variant, never an entry
            add(user, "exposure", t0 - int(rng.integers(1, DAY)), None, props="{}")
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
    for i in range(30):  # another experiment on the same visitors: never counted
        add(f"u{i}", "page_view", s_us + DAY, "control", exp="other")
        add(f"u{i}", "exposure", s_us, "control", exp="other", props="{}")
    return Events(**cols)


def insert(con: duckdb.DuckDBPyConnection, events: Events, table: str = "events") -> None:
    arrow = events.table()  # noqa: F841 - DuckDB reads the local variable by name
    names = ", ".join(name for name, _ in EVENT_COLUMNS)
    con.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM arrow")


# ---- the reference: the contract implemented directly, per visitor, in Python/numpy -----------------


def reference(
    events: Events,
    *,
    experiment: str = "exp",
    start: datetime = START,
    end: datetime = END,
    pct: float = 0.99,
    pre_days: int = PRE_DAYS,
    segments: tuple[str, ...] = ("device", "category", "plan"),
    upto: int | None = None,
) -> dict:
    """Per-variant sums (and per segment), counting only data up to ``upto`` (epoch µs) when given."""
    s_us, e_us = _us(start), _us(end)
    seen: set[str] = set()
    rows = []
    for i in range(len(events)):
        if events.experiment[i] != experiment or events.event_id[i] in seen:
            continue
        seen.add(events.event_id[i])
        rows.append(i)
    ts = np.array([events.ts[i] for i in rows])
    typ = [events.type[i] for i in rows]
    in_window = (ts >= s_us - pre_days * DAY) & (ts <= e_us)
    dwell_values = [
        events.value[i] for j, i in enumerate(rows)
        if typ[j] == "dwell" and events.value[i] is not None and s_us <= ts[j] <= e_us
    ]
    cap = float(np.quantile(dwell_values, pct)) if dwell_values else None
    horizon = e_us if upto is None else min(e_us, upto)

    exposures: dict[str, list[tuple[int, str, dict]]] = {}
    for j, i in enumerate(rows):
        if typ[j] == "exposure" and events.variant[i] is not None and s_us <= ts[j] <= e_us:
            props = json.loads(events.properties[i] or "{}")
            exposures.setdefault(events.user_id[i], []).append((int(ts[j]), events.variant[i], props))
    first = {u: min(xs, key=lambda x: x[0]) for u, xs in exposures.items()}
    multi_users = {u for u, xs in exposures.items() if len({v for _, v, _ in xs}) > 1}

    post = {u: dict.fromkeys(POST, 0.0) for u in first}
    pre = {u: dict.fromkeys(POST, 0.0) for u in first}
    for j, i in enumerate(rows):
        user = events.user_id[i]
        if user not in first or not in_window[j] or typ[j] == "exposure":
            continue
        t0 = first[user][0]
        if t0 <= ts[j] <= horizon:
            bucket = post[user]
        elif t0 - pre_days * DAY <= ts[j] < t0:
            bucket = pre[user]
        else:
            continue
        value = events.value[i]
        if typ[j] == "page_view":
            bucket["views"] += 1
        elif typ[j] == "dwell" and value is not None:
            bucket["dwell"] += min(value, cap)
        elif typ[j] == "inquiry":
            bucket["inq"] += 1
            bucket["inqv"] += value or 0.0
    for table in (post, pre):
        for vals in table.values():
            vals["any"] = float(vals["inq"] > 0)

    def sums(users: list[str]) -> dict[str, float]:
        out = dict.fromkeys(SUM_COLUMNS, 0.0)
        for u in users:
            x = {**post[u], **{f"q_{k}": v for k, v in pre[u].items()}}
            out["n"] += 1
            for var in (*POST, *PRE):
                out[f"s_{var}"] += x[var]
                out[f"ss_{var}"] += x[var] ** 2
            for a, b in CROSS:
                out[f"x_{a}__{b}"] += x[a] * x[b]
        return out

    entered = [u for u, f in first.items() if f[0] <= horizon]
    by_variant: dict[str, list[str]] = {}
    for u in entered:
        by_variant.setdefault(first[u][1], []).append(u)
    seg: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for key in segments:
        groups: dict[tuple[str, str], list[str]] = {}
        for u in entered:
            value = first[u][2].get(key)
            if value is not None:
                groups.setdefault((str(value), first[u][1]), []).append(u)
        seg[key] = {}
        for (value, variant), users in groups.items():
            seg[key].setdefault(value, {})[variant] = sums(users)
    multi = sum(1 for u in entered if u in multi_users)
    return {
        "cap": cap,
        "totals": {v: sums(us) for v, us in by_variant.items()},
        "segments": seg,
        "multi": multi,
    }


def assert_sums_equal(got: VisitorSums, want: dict[str, float]) -> None:
    for name in SUM_COLUMNS:
        assert got[name] == pytest.approx(want[name], rel=1e-9, abs=1e-6), name


# ---- tests ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def events() -> Events:
    return generate_events(seed=7, visitors=500)


@pytest.fixture(scope="module")
def con(events: Events) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    ensure_schema(con)
    insert(con, events)
    # The same rows again, twice over for a tenth of them, in a table that does not enforce event_id.
    con.execute("CREATE TABLE raw_events AS SELECT * FROM events")
    con.execute("INSERT INTO raw_events SELECT * FROM events USING SAMPLE 10 PERCENT (bernoulli, 3)")
    return con


def _load(con, **kw):
    return load_sums(
        con, "exp", start=START, end=END, cap_percentile=kw.pop("pct", 0.99), pre_days=PRE_DAYS,
        segments=kw.pop("segments", ("device", "category", "plan")), **kw,
    )


def test_generator_hits_every_rule(events: Events) -> None:
    # Sanity of the fixture itself: the edge cases exist, or the comparison proves little.
    exp = [i for i in range(len(events)) if events.experiment[i] == "exp"]
    assert sum(events.type[i] == "exposure" and events.variant[i] is None for i in exp) > 5
    assert sum(events.ts[i] > _us(END) for i in exp) > 50
    assert sum(events.ts[i] < _us(START) for i in exp) > 50


def test_totals_match_reference(con, events: Events) -> None:
    got = _load(con)
    want = reference(events)
    assert got.cap == pytest.approx(want["cap"], rel=1e-12)
    assert set(got.totals) == set(want["totals"])
    for variant, sums in want["totals"].items():
        assert_sums_equal(got.totals[variant], sums)
    assert got.multi_variant_visitors == want["multi"] > 0
    assert got.deduplicated_in_sql is False


def test_segments_match_reference(con, events: Events) -> None:
    got = _load(con)
    want = reference(events)
    for key in ("device", "category", "plan"):
        assert set(got.segments[key]) == set(want["segments"][key])
        for value, by_variant in want["segments"][key].items():
            assert set(got.segments[key][value]) == set(by_variant)
            for variant, sums in by_variant.items():
                assert_sums_equal(got.segments[key][value][variant], sums)


def test_daily_cumulative_matches_reference(con, events: Events) -> None:
    got = _load(con)
    days = got.days()
    assert days[0] == START.date() and days[-1] == END.date()
    for day, _ in got.cumulative("control")[::3]:
        end_of_day = _us(datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)) - 1
        want = reference(events, upto=end_of_day)
        for variant in ("control", "treatment"):
            cum = dict(got.cumulative(variant))[day]
            assert_sums_equal(cum, want["totals"].get(variant, dict.fromkeys(SUM_COLUMNS, 0.0)))
    # The last day's cumulative row is the total (up to the order of floating-point additions).
    total = got.totals["treatment"]
    assert_sums_equal(got.cumulative("treatment")[-1][1], {c: total[c] for c in SUM_COLUMNS})


@pytest.mark.parametrize("pct", [0.5, 0.9, 1.0])
def test_cap_percentile(con, events: Events, pct: float) -> None:
    got = _load(con, pct=pct)
    want = reference(events, pct=pct)
    assert got.cap == pytest.approx(want["cap"], rel=1e-12)
    assert_sums_equal(got.totals["control"], want["totals"]["control"])


def test_duplicates_are_removed_when_the_table_does_not_enforce_event_id(con, events: Events) -> None:
    assert event_id_enforced_unique(con, "events")
    assert not event_id_enforced_unique(con, "raw_events")
    assert con.execute("SELECT count(*) - count(DISTINCT event_id) FROM raw_events").fetchone()[0] > 100
    got = _load(con, source="raw_events")
    assert got.deduplicated_in_sql is True
    want = reference(events)
    for variant, sums in want["totals"].items():
        assert_sums_equal(got.totals[variant], sums)
    # And the same table read without deduplication really would count twice.
    wrong = _load(con, source="raw_events", dedup=False)
    assert wrong.totals["control"]["s_views"] > want["totals"]["control"]["s_views"]


def test_open_window_and_empty_experiment(con, events: Events) -> None:
    got = load_sums(con, "exp", start=None, end=END, pre_days=PRE_DAYS, segments=())
    # With no start, exposures before START count too: more visitors than the windowed analysis.
    windowed = _load(con)
    assert sum(s.n for s in got.totals.values()) > sum(s.n for s in windowed.totals.values())
    empty = load_sums(con, "no-such-experiment", start=START, end=END)
    assert empty.totals == {} and empty.cap is None and empty.days() == []


def test_any_segment_name_is_read_safely() -> None:
    con = duckdb.connect()
    ensure_schema(con)
    keys = ["item category", "a.b", 'we"ird', "o'k); DROP TABLE events; --", "back\\slash", "$x", "ünï"]
    events = generate_events(seed=2, visitors=40)
    events.properties = [
        json.dumps({k: f"v{j % 2}" for k in keys}) if p is not None else None for j, p in enumerate(events.properties)
    ]
    insert(con, events)
    got = load_sums(con, "exp", start=START, end=END, pre_days=PRE_DAYS, segments=keys)
    for key in keys:
        assert set(got.segments[key]) == {"v0", "v1"}, key
    assert con.execute("SELECT count(*) FROM events").fetchone()[0] == len(events)
    with pytest.raises(ValueError):
        build_query([""], dedup=False)


def test_misuse_raises(con) -> None:
    with pytest.raises(ValueError):
        build_query([], dedup=False, source="events; DROP TABLE events")
    with pytest.raises(ValueError):
        load_sums(con, "exp", start=END, end=START)
    with pytest.raises(ValueError):
        load_sums(con, "exp", start=START, end=END, cap_percentile=0.0)
    with pytest.raises(ValueError):
        load_sums(con, "exp", start=START, end=datetime(2025, 3, 13))  # naive timestamp


def test_visitor_sums_merge_and_shape() -> None:
    a = VisitorSums(tuple(float(i) for i in range(len(SUM_COLUMNS))))
    assert (a + a)["n"] == 0.0 and (a + a)["s_views"] == 2.0
    assert a + VisitorSums.zero() == a
    with pytest.raises(ValueError):
        VisitorSums((1.0, 2.0))
    with pytest.raises(ValueError):
        a.metric("revenue")
