"""Data quality before statistics, through the real DuckDB query (``load_sums``).

The headline requirement: one bot with 5,000 page views must not move an arm's dwell time per
view by 1%, whether the bot filter catches it or (filter off) only the per-visitor caps hold it.
Then small hand-made cases whose expected numbers can be read off the events: a User-Agent bot,
multi-variant and unknown-variant visitors, the conversion window, the ROI window and ages.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import pytest

from armor_ab.experiments.models import CAPPABLE, AnalysisSpec, Capping
from armor_ab.stats.sql import load_sums
from armor_ab.store.schema import ensure_schema
from tests.helpers.events import Events, insert

US = 1_000_000
DAY = 86_400 * US
START = datetime(2025, 5, 5, tzinfo=UTC)  # a Monday, 00:00 UTC
END = START + timedelta(days=14)
S_US = int(START.timestamp()) * US
VARIANTS = ("control", "treatment")


class Log:
    """Events being written for one experiment: ``add`` one row, ``into`` a database."""

    def __init__(self, experiment: str = "exp") -> None:
        self.experiment = experiment
        self.rows: list[tuple] = []

    def add(self, user: str, typ: str, ts: int, variant: str | None = None, value: float | None = None,
            props: dict | None = None) -> None:
        self.rows.append((user, typ, int(ts), variant, value, json.dumps(props) if props is not None else None))

    def expose(self, user: str, ts: int, variant: str, **props: object) -> None:
        self.add(user, "exposure", ts, variant, props=props)

    def into(self, con: duckdb.DuckDBPyConnection) -> None:
        n = len(self.rows)
        user, typ, ts, variant, value, props = (list(c) for c in zip(*self.rows, strict=True))
        insert(con, Events([str(uuid.uuid4()) for _ in range(n)], [self.experiment] * n, variant, user, typ, value,
                           ts, props))


def _db(*logs: Log) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    ensure_schema(con)
    for log in logs:
        log.into(con)
    return con


def _spec_settings(spec: AnalysisSpec = AnalysisSpec()) -> dict:
    """``load_sums``'s arguments as the report passes them from an experiment's analysis settings."""
    return dict(
        cap_percentile=spec.dwell_cap_percentile, pre_days=spec.cuped_pre_days, variants=list(VARIANTS),
        caps=spec.variable_caps(["dwell_time_per_view"]), bot_user_agents=spec.bots.user_agents,
        max_views_per_day=spec.bots.max_views_per_day, conversion_window_days=spec.conversion_window_days,
        roi_window_days=spec.roi_window_days,
    )


def _load(con: duckdb.DuckDBPyConnection, experiment: str = "exp", **kw):
    return load_sums(con, experiment, start=START, end=END, **kw)


def _dwell_per_view(sums, variant: str) -> float:
    stats = sums.totals[variant].metric("dwell_time_per_view")
    return stats.sum_x / stats.sum_y


# ---- one bot against 10,000 visitors ------------------------------------------------------------------


@pytest.fixture(scope="module")
def bot_db() -> duckdb.DuckDBPyConnection:
    """Experiments ``clean`` and ``botted``: the same 2 x 5,000 visitors, ``botted`` with one bot more."""
    rng = np.random.default_rng(11)
    logs = [Log("clean"), Log("botted")]
    for i in range(10_000):
        variant = VARIANTS[i % 2]
        t0 = S_US + int(rng.integers(0, 10 * DAY))
        views = 1 + int(rng.poisson(2.0))
        events = [("page_view", None), ("dwell", None)] * views
        times = np.sort(t0 + rng.integers(0, 3 * DAY, size=len(events)))
        dwell = rng.lognormal(np.log(20_000), 1.0, size=views)  # ms per view: median 20 s, a long tail
        for log in logs:
            log.expose(f"v{i}", t0, variant, device="desktop")
            for j, ((typ, _), ts) in enumerate(zip(events, times, strict=True)):
                log.add(f"v{i}", typ, ts, variant, float(dwell[j // 2]) if typ == "dwell" else None)
    # The bot: 5,000 page views of 1,000 ms each within a few hours of one day, and no bot User-Agent
    # (a headless browser posing as Chrome), so only the rate rule or the caps can catch it.
    bot, t0 = logs[1], S_US + 3 * DAY + 3600 * US
    bot.expose("bot", t0, "treatment", device="desktop")
    for k in range(5_000):
        bot.add("bot", "page_view", t0 + 1 + k * 2 * US, "treatment")
        bot.add("bot", "dwell", t0 + 2 + k * 2 * US, "treatment", 1_000.0)
    return _db(*logs)


def test_one_bot_moves_dwell_per_view_by_less_than_1pct_with_the_default_settings(bot_db) -> None:
    settings = _spec_settings()
    clean, botted = _load(bot_db, "clean", **settings), _load(bot_db, "botted", **settings)
    assert botted.bot_visitors == {"user_agent": 0, "rate": 1}  # more than 300 views in a day
    assert botted.totals["treatment"].n == clean.totals["treatment"].n == 5_000
    change = _dwell_per_view(botted, "treatment") / _dwell_per_view(clean, "treatment") - 1
    assert abs(change) < 0.01


def test_one_bot_moves_dwell_per_view_by_less_than_1pct_with_the_bot_filter_off(bot_db) -> None:
    settings = {**_spec_settings(), "max_views_per_day": None, "bot_user_agents": False}
    assert settings["caps"] == dict.fromkeys(CAPPABLE, Capping(type="percentile", value=0.999))
    clean, botted = _load(bot_db, "clean", **settings), _load(bot_db, "botted", **settings)
    assert botted.bot_visitors == {"user_agent": 0, "rate": 0}
    assert botted.totals["treatment"].n == 5_001  # the bot is in, held at the caps
    assert botted.caps["views"] < 20 and botted.caps["dwell"] < 5_000 * 1_000.0
    change = _dwell_per_view(botted, "treatment") / _dwell_per_view(clean, "treatment") - 1
    assert abs(change) < 0.01
    # Without the caps the same bot drags the arm's dwell per view down by a quarter.
    uncapped = {**settings, "caps": {}}
    raw = _load(bot_db, "botted", **uncapped), _load(bot_db, "clean", **uncapped)
    assert _dwell_per_view(raw[0], "treatment") / _dwell_per_view(raw[1], "treatment") - 1 < -0.15
    # The other arm is untouched either way.
    assert _dwell_per_view(botted, "control") == pytest.approx(_dwell_per_view(clean, "control"), rel=1e-3)


# ---- small cases, numbers read off the events ------------------------------------------------------------


def _visitors(log: Log, prefix: str, n: int, variant: str, views: int = 2, props: dict | None = None) -> None:
    for i in range(n):
        t0 = S_US + DAY + i * 60 * US
        log.expose(f"{prefix}{i}", t0, variant, **(props or {}))
        for k in range(views):
            log.add(f"{prefix}{i}", "page_view", t0 + (k + 1) * US, variant)


def test_a_user_agent_bot_is_excluded_and_counted() -> None:
    log = Log()
    _visitors(log, "c", 10, "control")
    _visitors(log, "t", 10, "treatment")
    _visitors(log, "b", 1, "treatment", views=7, props={"bot": True})  # as the API flags a Googlebot
    _visitors(log, "s", 1, "treatment", props={"bot": "true"})  # a string: not the flag
    # A later exposure carries the flag: the visitor is a bot from its first exposure on.
    _visitors(log, "l", 1, "control")
    log.expose("l0", S_US + 2 * DAY, "control", bot=True)
    con = _db(log)
    sums = _load(con, caps={})
    assert sums.bot_visitors == {"user_agent": 2, "rate": 0}
    assert sums.totals["treatment"].n == 11 and sums.totals["treatment"]["s_views"] == 22
    assert sums.totals["control"].n == 10
    assert sum(s.n for s in sums.daily["treatment"].values()) == 11
    assert sums.segments == {} and sums.ages["treatment"][0].n == 11
    # With the filter off the flagged visitors count like anyone else.
    off = _load(con, caps={}, bot_user_agents=False)
    assert off.bot_visitors == {"user_agent": 0, "rate": 0}
    assert off.totals["treatment"].n == 12 and off.totals["treatment"]["s_views"] == 29
    # A visitor both flagged and over the rate limit counts once, as a User-Agent bot.
    both = _load(con, caps={}, max_views_per_day=5)
    assert both.bot_visitors == {"user_agent": 2, "rate": 0}
    assert _load(con, caps={}, bot_user_agents=False, max_views_per_day=5).bot_visitors == {"user_agent": 0, "rate": 1}


def test_multi_variant_visitors_are_excluded_and_counted() -> None:
    log = Log()
    _visitors(log, "c", 10, "control", props={"device": "mobile"})
    _visitors(log, "t", 10, "treatment", props={"device": "mobile"})
    for i in range(3):  # exposed to control, then to treatment two days later
        log.expose(f"c{i}", S_US + 3 * DAY, "treatment")
    log.expose("t9", S_US + 3 * DAY, "treatment")  # the same variant again: still one variant
    log.expose("c9", END.timestamp() * US + DAY, "treatment")  # after the window: not seen
    sums = _load(_db(log), caps={}, segments=["device"])
    assert sums.multi_variant_visitors == 3
    assert sums.totals["control"].n == 7 and sums.totals["control"]["s_views"] == 14
    assert sums.totals["treatment"].n == 10
    assert sums.segments["device"]["mobile"]["control"].n == 7
    assert sum(s.n for s in sums.daily["control"].values()) == 7


def test_unknown_variants_are_excluded_and_counted_when_the_variants_are_given() -> None:
    log = Log()
    _visitors(log, "c", 4, "control")
    _visitors(log, "g", 3, "ghost")
    con = _db(log)
    assert set(_load(con).totals) == {"control", "ghost"}  # without the list: every variant seen
    sums = _load(con, variants=["control", "treatment"])
    assert set(sums.totals) == {"control"} and sums.unknown_variant_visitors == {"ghost": 3}
    assert set(sums.ages) == {"control"}


def test_conversion_window_ages_and_roi_window() -> None:
    # One control visitor entering on day 1 at 23:00 with an inquiry and a page view on each of
    # days 1..6; the analysis ends on day 6 at noon (day 6 is not complete).
    log = Log()
    t0 = S_US + DAY + 23 * 3600 * US
    log.expose("a", t0, "control")
    for k in range(6):
        day_start = S_US + (1 + k) * DAY
        log.add("a", "page_view", max(t0, day_start + 3600 * US) + US, "control")
        log.add("a", "inquiry", max(t0, day_start + 3600 * US) + 2 * US, "control", 100.0)
    log.expose("late", S_US + 5 * DAY, "control")  # entered on day 5: its 3-day ROI window is open
    con = _db(log)
    end = START + timedelta(days=6, hours=12)
    common = dict(start=START, end=end, caps={}, roi_window_days=3)
    whole = load_sums(con, "exp", **common)
    assert whole.totals["control"]["s_views"] == 6
    # W = 2: day 1 (one hour of it) and day 2 count, whatever the exposure's time of day.
    two = load_sums(con, "exp", **common, conversion_window_days=2)
    assert two.totals["control"]["s_views"] == 2 and two.totals["control"]["s_inq"] == 2
    assert two.totals["control"]["ss_views"] == 4  # visitor a: 2 views, visitor late: 0
    # The ROI window (3 days: days 1..3) has closed for a (day 1 + 3 <= day 6), not for late.
    roi = whole.totals["control"].metric("inquiries_per_visitor_window")
    assert (roi.n, roi.sum_x, roi.sum_y, roi.sum_xy) == (2, 3.0, 1.0, 3.0)
    assert two.totals["control"]["s_wq"] == 3.0  # the conversion window does not shorten the ROI's
    assert load_sums(con, "exp", **{**common, "caps": {"inq": Capping(type="absolute", value=2)}}).totals[
        "control"]["s_wq"] == 2.0  # capped with inq's cap
    # Ages: a's days 1..5 are complete (0..4), late's day 5 (age 0); day 6 is not.
    ages = whole.ages["control"]
    assert sorted(ages) == [0, 1, 2, 3, 4]
    assert [ages[k].n for k in range(5)] == [2, 1, 1, 1, 1]
    assert [ages[k]["s_views"] for k in range(5)] == [1.0] * 5
    assert ages[0]["s_any"] == 1.0 and ages[0]["s_q_views"] == 0.0 and ages[0]["s_wq"] == 0.0
    assert sorted(two.ages["control"]) == [0, 1]  # no age past the conversion window
    assert sorted(load_sums(con, "exp", **common, max_age_days=2).ages["control"]) == [0, 1, 2]
