"""The SQL sufficient statistics equal a plain numpy/Python computation on the same generated events.

The generated events and the visitor-by-visitor reference live in ``tests/helpers/events.py``,
whose docstring lists every rule of the analysis contract they exercise.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from armor_ab.experiments.models import CAPPABLE, Capping
from armor_ab.stats.sql import build_query, event_id_enforced_unique, load_sums
from armor_ab.stats.suffstats import SUM_COLUMNS, RatioStats, VisitorSums
from armor_ab.store.schema import ensure_schema
from tests.helpers.events import (
    END,
    PRE_DAYS,
    START,
    Events,
    _us,
    _zero,
    generate_events,
    insert,
    reference,
)


def assert_sums_equal(got: VisitorSums, want: dict[str, float]) -> None:
    for name in SUM_COLUMNS:
        assert got[name] == pytest.approx(want[name], rel=1e-9, abs=1e-6), name


# ---- tests ------------------------------------------------------------------------------------------

# The settings the comparisons run under: every rule on, caps that bite (a 500-visitor fixture's
# 0.999 quantile would cap one visitor), and variations that switch rules off or shorten windows.
SETTINGS = {
    "all-rules": dict(
        variants=("control", "treatment"),
        caps={"views": Capping(type="absolute", value=6.0), "dwell": Capping(value=0.9),
              "inq": Capping(value=0.95), "inqv": None},
        max_views_per_day=30, roi_window_days=3,
    ),
    "windows": dict(
        cap_percentile=0.99, bot_user_agents=False,
        caps={"views": Capping(value=0.9), "dwell": Capping(value=0.8), "inq": Capping(value=0.97),
              "inqv": Capping(value=0.95)},
        conversion_window_days=2, roi_window_days=2, max_age_days=3,
    ),
    "one-day": dict(
        variants=("control",), caps={}, max_views_per_day=40, conversion_window_days=1, roi_window_days=5,
    ),
    "defaults": {},
}


@pytest.fixture(scope="module")
def events() -> Events:
    return generate_events(seed=7, visitors=500, dirty=True)


@pytest.fixture(scope="module")
def con(events: Events) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    ensure_schema(con)
    insert(con, events)
    # The same rows again, twice over for a tenth of them, in a table that does not enforce event_id.
    con.execute("CREATE TABLE raw_events AS SELECT * FROM events")
    con.execute("INSERT INTO raw_events SELECT * FROM events USING SAMPLE 10 PERCENT (bernoulli, 3)")
    return con


def _load(con, settings: str = "all-rules", **kw):
    return load_sums(
        con, "exp", start=START, end=END, pre_days=PRE_DAYS,
        segments=kw.pop("segments", ("device", "category", "plan")), **{**SETTINGS[settings], **kw},
    )


def _reference(events: Events, settings: str = "all-rules", **kw) -> dict:
    return reference(events, **{**SETTINGS[settings], **kw})


def test_generator_hits_every_rule(events: Events, con) -> None:
    # Sanity of the fixture itself: the edge cases exist, or the comparison proves little.
    exp = [i for i in range(len(events)) if events.experiment[i] == "exp"]
    assert sum(events.type[i] == "exposure" and events.variant[i] is None for i in exp) > 5
    assert sum(events.ts[i] > _us(END) for i in exp) > 50
    assert sum(events.ts[i] < _us(START) for i in exp) > 50
    want = _reference(events)
    assert want["multi"] > 5 and want["unknown"]["ghost"] > 5
    assert want["bots"]["user_agent"] > 10 and want["bots"]["rate"] > 3
    assert sum(1 for i in exp if '"bot": "true"' in (events.properties[i] or "")) > 3  # a string: not a bot
    assert 0 < want["totals"]["control"]["s_mature"] < want["totals"]["control"]["n"]
    assert want["totals"]["control"]["s_wq"] > 0
    # The caps bite: some visitors above each, so capping changes the sums.
    uncapped = _reference(events, caps={})
    for var in ("views", "dwell", "inq"):
        assert want["totals"]["control"][f"s_{var}"] < uncapped["totals"]["control"][f"s_{var}"], var
    # Without the conversion window some visitors' later days count; with one day, fewer events do.
    one_day = _reference(events, "one-day")
    assert one_day["totals"]["control"]["s_views"] < _reference(events, "one-day", conversion_window_days=None)[
        "totals"]["control"]["s_views"]


@pytest.mark.parametrize("settings", list(SETTINGS))
def test_totals_match_reference(con, events: Events, settings: str) -> None:
    got = _load(con, settings)
    want = _reference(events, settings)
    if want["cap"] is None:
        assert got.cap is None
    else:
        assert got.cap == pytest.approx(want["cap"], rel=1e-12)
    assert set(got.caps) == set(CAPPABLE)
    for var in CAPPABLE:
        if want["caps"][var] is None:
            assert got.caps[var] is None, var
        else:
            assert got.caps[var] == pytest.approx(want["caps"][var], rel=1e-9), var
    assert set(got.totals) == set(want["totals"])
    for variant, sums in want["totals"].items():
        assert_sums_equal(got.totals[variant], sums)
    assert got.multi_variant_visitors == want["multi"] > 0
    assert got.unknown_variant_visitors == want["unknown"]
    assert got.bot_visitors == want["bots"]
    assert got.deduplicated_in_sql is False


@pytest.mark.parametrize("settings", ["all-rules", "windows"])
def test_segments_match_reference(con, events: Events, settings: str) -> None:
    got = _load(con, settings)
    want = _reference(events, settings)
    for key in ("device", "category", "plan"):
        assert set(got.segments[key]) == set(want["segments"][key])
        for value, by_variant in want["segments"][key].items():
            assert set(got.segments[key][value]) == set(by_variant)
            for variant, sums in by_variant.items():
                assert_sums_equal(got.segments[key][value][variant], sums)


@pytest.mark.parametrize("settings", ["all-rules", "windows"])
def test_daily_cumulative_matches_reference(con, events: Events, settings: str) -> None:
    got = _load(con, settings)
    days = got.days()
    assert days[0] == START.date() and days[-1] == END.date()
    for day, _ in got.cumulative("control")[::3]:
        end_of_day = _us(datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)) - 1
        want = _reference(events, settings, upto=end_of_day)
        for variant in ("control", "treatment"):
            cum = dict(got.cumulative(variant))[day]
            assert_sums_equal(cum, want["totals"].get(variant, _zero()))
    # The last day's cumulative row is the total (up to the order of floating-point additions).
    total = got.totals["treatment"]
    assert_sums_equal(got.cumulative("treatment")[-1][1], {c: total[c] for c in SUM_COLUMNS})


@pytest.mark.parametrize("settings", list(SETTINGS))
def test_ages_match_reference(con, events: Events, settings: str) -> None:
    got = _load(con, settings)
    want = _reference(events, settings)
    assert set(got.ages) == set(want["ages"])
    for variant, by_age in want["ages"].items():
        assert set(got.ages[variant]) == set(by_age), variant
        for age, sums in by_age.items():
            assert_sums_equal(got.ages[variant][age], sums)
    # Age 0 holds every visitor who entered before the analysis end's day; older ages fewer.
    control = got.ages["control"]
    assert control[0].n >= control[max(control)].n > 0


def test_roi_window_metric(con, events: Events) -> None:
    got = _load(con)
    want = _reference(events)["totals"]["control"]
    stats = got.totals["control"].metric("inquiries_per_visitor_window", cuped=True)  # no pre values: plain
    assert isinstance(stats, RatioStats)
    assert stats.n == want["n"]
    assert stats.sum_x == pytest.approx(want["s_wq"]) and stats.sum_y == pytest.approx(want["s_mature"])
    assert stats.sum_xy == pytest.approx(want["x_wq__mature"])
    # The window only closes for visitors who entered roi_window_days before the end's day.
    longer = _load(con, roi_window_days=30)
    assert longer.totals["control"]["s_mature"] == 0.0 and longer.totals["control"]["s_wq"] == 0.0


@pytest.mark.parametrize("pct", [0.5, 0.9, 1.0])
def test_cap_percentile(con, events: Events, pct: float) -> None:
    got = _load(con, cap_percentile=pct)
    want = _reference(events, cap_percentile=pct)
    assert got.cap == pytest.approx(want["cap"], rel=1e-12)
    assert_sums_equal(got.totals["control"], want["totals"]["control"])


def test_duplicates_are_removed_when_the_table_does_not_enforce_event_id(con, events: Events) -> None:
    assert event_id_enforced_unique(con, "events")
    assert not event_id_enforced_unique(con, "raw_events")
    assert con.execute("SELECT count(*) - count(DISTINCT event_id) FROM raw_events").fetchone()[0] > 100
    got = _load(con, source="raw_events")
    assert got.deduplicated_in_sql is True
    want = _reference(events)
    for variant, sums in want["totals"].items():
        assert_sums_equal(got.totals[variant], sums)
    assert got.bot_visitors == want["bots"]
    # And the same table read without deduplication really would count twice.
    wrong = _load(con, source="raw_events", dedup=False, caps={})
    assert wrong.totals["control"]["s_views"] > _reference(events, caps={})["totals"]["control"]["s_views"]


def test_open_window_and_empty_experiment(con, events: Events) -> None:
    got = load_sums(con, "exp", start=None, end=END, pre_days=PRE_DAYS, segments=())
    # With no start, exposures before START count too: more visitors than the windowed analysis.
    windowed = load_sums(con, "exp", start=START, end=END, pre_days=PRE_DAYS, segments=())
    assert sum(s.n for s in got.totals.values()) > sum(s.n for s in windowed.totals.values())
    empty = load_sums(con, "no-such-experiment", start=START, end=END)
    assert empty.totals == {} and empty.cap is None and empty.days() == [] and empty.ages == {}
    assert empty.caps == dict.fromkeys(CAPPABLE) and empty.bot_visitors == {"user_agent": 0, "rate": 0}
    assert empty.multi_variant_visitors == 0 and empty.unknown_variant_visitors == {}


def test_any_segment_name_is_read_safely() -> None:
    con = duckdb.connect()
    ensure_schema(con)
    keys = ["item category", "a.b", 'we"ird', "o'k); DROP TABLE events; --", "back\\slash", "$x", "ünï", "$pct"]
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
        build_query([], dedup=False, caps={"clicks": "percentile"})
    with pytest.raises(ValueError):
        load_sums(con, "exp", start=END, end=START)
    with pytest.raises(ValueError):
        load_sums(con, "exp", start=START, end=END, cap_percentile=0.0)
    with pytest.raises(ValueError):
        load_sums(con, "exp", start=START, end=datetime(2025, 3, 13))  # naive timestamp
    with pytest.raises(ValueError):
        load_sums(con, "exp", start=START, end=END, caps={"any": Capping()})  # the 0/1 indicator is never capped
    with pytest.raises(ValueError):
        load_sums(con, "exp", start=START, end=END, conversion_window_days=0)
    with pytest.raises(ValueError):
        load_sums(con, "exp", start=START, end=END, variants="control")


def test_visitor_sums_merge_and_shape() -> None:
    a = VisitorSums(tuple(float(i) for i in range(len(SUM_COLUMNS))))
    assert (a + a)["n"] == 0.0 and (a + a)["s_views"] == 2.0
    assert a + VisitorSums.zero() == a
    with pytest.raises(ValueError):
        VisitorSums((1.0, 2.0))
    with pytest.raises(ValueError):
        a.metric("revenue")
