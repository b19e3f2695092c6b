"""Paused visitors and changed pages, through a real DuckDB file and the whole report.

* Visitors first exposed while the experiment was paused (``properties.paused = true``) saw no
  treatment: the analysis leaves them out in every arm and counts them (``data.paused_visitors``, the
  ``paused`` check). The effect estimate then equals an independent numpy/scipy computation on the
  visitors that were not paused, and the report of the same log without those visitors.
* An item whose served page changed during the test in an ARMOR variant (two ``page`` digests, or
  the ARMOR page and a fallback) is named in a ``page_changes`` warning; control's copy changing is
  not, nor is an experiment whose every item kept one page. ``fallbacks`` warns on the share of
  ARMOR-arm visitors served control's copy.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from scipy import stats as sps

from armor_ab.event_schema import COLUMN_NAMES
from armor_ab.experiments.models import ExperimentSpec
from armor_ab.reporting.models import ExperimentReport
from armor_ab.reporting.report import experiment_report
from armor_ab.stats.pages import load_served_pages
from armor_ab.stats.quality import quality_checks
from armor_ab.stats.sql import load_sums
from armor_ab.store.db import connect
from armor_ab.store.experiments import ExperimentRecord, get_experiment, upsert_experiment
from armor_ab.store.schema import ensure_schema

START = datetime(2026, 2, 2, tzinfo=UTC)
END = START + timedelta(days=4)
ARMS = ("control", "armor")


def digest(*parts: object) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


class Log:
    """Event rows for one experiment, inserted as the store's columns."""

    def __init__(self, experiment: str) -> None:
        self.experiment = experiment
        self.rows: list[dict] = []

    def add(self, user: str, typ: str, ts: datetime, variant: str | None = None, *, item: str | None = None,
            value: float | None = None, props: dict | None = None, source: str = "server") -> None:
        self.rows.append({"event_id": str(uuid.uuid4()), "experiment": self.experiment, "variant": variant,
                          "user_id": user, "item_id": item, "type": typ, "value": value, "ts": ts,
                          "received_at": ts, "properties": json.dumps(props) if props is not None else None,
                          "source": source})

    def expose(self, user: str, ts: datetime, variant: str, item: str, **props: object) -> None:
        self.add(user, "exposure", ts, variant, item=item, props=props)

    def into(self, con: duckdb.DuckDBPyConnection) -> None:
        arrow = pa.Table.from_pylist(self.rows)  # noqa: F841 - DuckDB reads the local variable by name
        names = ", ".join(COLUMN_NAMES)  # the row columns: commit_seq takes the table's DEFAULT
        con.execute(f"INSERT INTO events ({names}) SELECT {names} FROM arrow")


def spec(key: str) -> ExperimentSpec:
    return ExperimentSpec.model_validate({
        "key": key,
        "name": "paused and changed pages",
        "variants": [{"key": "control", "weight": 0.5},
                     {"key": "armor", "weight": 0.5, "content": {"source": "armor", "prompt": "Describe {title}."}}],
        "metrics": {"primary": "dwell_time_per_visitor"},
        "analysis": {"cuped": False, "capping_default": None, "min_runtime_days": 1, "min_visitors_per_variant": 10},
    })


def add_experiment(con: duckdb.DuckDBPyConnection, key: str) -> ExperimentRecord:
    upsert_experiment(con, spec(key))
    con.execute("UPDATE experiments SET status = 'stopped', started_at = ?, stopped_at = ? WHERE key = ?",
                [START, END, key])
    return get_experiment(con, key)


# ---- the paused experiment, and the same log without its paused visitors ------------------------------

N_KEPT, N_PAUSED = 150, 30


def _paused_logs() -> tuple[Log, Log, dict[str, list[float]], dict[str, list[float]]]:
    """The log with paused visitors, the same log without them, and each arm's per-visitor dwell totals
    of the visitors the analysis keeps (the reference) and of every visitor."""
    rng = np.random.default_rng(11)
    full, clean = Log("paused"), Log("paused-clean")
    kept: dict[str, list[float]] = {arm: [] for arm in ARMS}
    everyone: dict[str, list[float]] = {arm: [] for arm in ARMS}

    def visitor(user: str, arm: str, t0: datetime, first: dict, later: dict | None, dwell: list[float],
                keep: bool) -> None:
        item = f"item-{int(rng.integers(5))}"
        for log in (full, clean) if keep else (full,):
            log.expose(user, t0, arm, item, **first)
            if later is not None:  # a second exposure, two hours later (a re-bucketing logs one)
                log.expose(user, t0 + timedelta(hours=2), arm, item, **later)
            for k, ms in enumerate(dwell):
                log.add(user, "page_view", t0 + timedelta(minutes=k + 1), arm, item=item)
                log.add(user, "dwell", t0 + timedelta(minutes=k + 1, seconds=30), arm, item=item, value=ms)
            log.add(user, "dwell", t0 - timedelta(hours=1), arm, item=item, value=999_999.0)  # before t0: not counted
        everyone[arm].append(float(sum(dwell)))
        if keep:
            kept[arm].append(float(sum(dwell)))

    for arm in ARMS:
        scale = 60_000.0 if arm == "control" else 66_000.0
        for i in range(N_KEPT):
            t0 = START + timedelta(minutes=int(rng.integers(3 * 24 * 60)))
            dwell = list(rng.exponential(scale, size=int(rng.integers(1, 4))))
            page = {"page": digest(arm, "v1"), "device": "desktop"}
            later = {"paused": True} if i == 0 else None  # paused only later: still counted
            if i == 1:
                page["paused"] = "true"  # a string, not the flag: counted
            visitor(f"{arm}-{i}", arm, t0, page, later, dwell, keep=True)
        for i in range(N_PAUSED):  # paused: control's copy everywhere, and (for armor) much longer dwell
            t0 = START + timedelta(days=3, minutes=int(rng.integers(12 * 60)))
            dwell = list(rng.exponential(scale * (5 if arm == "armor" else 1), size=3))
            first = {"paused": True, "page": digest("control", "v1")}
            if arm == "armor":
                first["fallback"] = "paused"
            visitor(f"{arm}-paused-{i}", arm, t0, first, None, dwell, keep=False)
    return full, clean, kept, everyone


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory):
    path: Path = tmp_path_factory.mktemp("paused") / "armor_ab.duckdb"
    con = connect(path)
    full, clean, kept, everyone = _paused_logs()
    full.into(con)
    clean.into(con)
    _pages_log().into(con)
    _steady_log().into(con)
    for key in ("paused", "paused-clean", "pages", "steady"):
        add_experiment(con, key)
    yield con, kept, everyone
    con.close()


@pytest.fixture(scope="module")
def con(db):
    return db[0]


@pytest.fixture(scope="module")
def paused_reports(con) -> tuple[dict, dict]:
    full = experiment_report(con, get_experiment(con, "paused"), now=END)
    clean = experiment_report(con, get_experiment(con, "paused-clean"), now=END)
    return full, clean


def _primary(report: dict) -> dict:
    return next(e for e in report["results"] if e["metric"] == "dwell_time_per_visitor")


def test_paused_visitors_are_excluded_and_counted(con, paused_reports) -> None:
    report, clean = paused_reports
    ExperimentReport.model_validate(report)
    assert report["data"]["paused_visitors"] == {"control": N_PAUSED, "armor": N_PAUSED}
    assert clean["data"]["paused_visitors"] == {}
    assert report["visitors"] == clean["visitors"] == {"control": N_KEPT, "armor": N_KEPT}
    check = next(c for c in report["data_quality"]["checks"] if c["name"] == "paused")
    assert check["value"] == 2 * N_PAUSED and check["status"] == "warn"  # 60 of 360: above 10%
    assert "60 visitors (16.67%) first exposed while the experiment was paused" in check["message"]
    assert "armor 30, control 30" in check["message"]
    assert next(c for c in clean["data_quality"]["checks"] if c["name"] == "paused")["status"] == "ok"
    # The other exclusions are not touched by it.
    assert report["data"]["bot_visitors"] == {"user_agent": 0, "rate": 0}
    assert report["data"]["multi_variant_visitors"] == 0


def test_the_effect_equals_the_one_without_the_paused_visitors(db, paused_reports) -> None:
    _, kept, everyone = db
    report, clean = paused_reports
    got, same = _primary(report), _primary(clean)
    # An independent reference: Welch's test on the kept visitors' dwell totals.
    c, t = (np.asarray(kept[arm]) for arm in ARMS)
    assert (got["baseline_n"], got["n"]) == (len(c), len(t)) == (N_KEPT, N_KEPT)
    assert got["baseline_mean"] == pytest.approx(c.mean(), rel=1e-9)
    assert got["mean"] == pytest.approx(t.mean(), rel=1e-9)
    assert got["lift_abs"] == pytest.approx(t.mean() - c.mean(), rel=1e-9)
    se = np.sqrt(c.var(ddof=1) / len(c) + t.var(ddof=1) / len(t))
    assert got["se_abs"] == pytest.approx(se, rel=1e-9)
    assert got["p_value"] == pytest.approx(sps.ttest_ind(t, c, equal_var=False).pvalue, rel=1e-6)
    # The same log without those visitors gives the same estimate, interval and test.
    for key in ("lift_abs", "se_abs", "lift_rel", "p_value", "df"):
        assert got[key] == pytest.approx(same[key], rel=1e-12), key
    assert got["ci_rel"] == pytest.approx(same["ci_rel"], rel=1e-12)
    assert got["sequential"]["ci_rel"] == pytest.approx(same["sequential"]["ci_rel"], rel=1e-12)
    # Counting them would have moved the estimate a lot (their armor dwell is five times longer).
    naive = np.mean(everyone["armor"]) - np.mean(everyone["control"])
    assert abs(naive - got["lift_abs"]) > 2 * got["se_abs"]


def test_a_paused_exposure_only_excludes_when_first() -> None:
    log = Log("first-only")
    for i in range(3):
        log.expose(f"a{i}", START + timedelta(hours=i), "armor", "x", page="p")
    log.expose("a0", START + timedelta(days=1), "armor", "x", paused=True)  # later: no matter
    log.expose("b0", START + timedelta(hours=5), "armor", "x", paused=True)  # first: out
    log.add("b0", "exposure", START + timedelta(hours=6), "armor", item="x")  # and stays out
    log.expose("c0", START + timedelta(hours=5), "control", "x", paused=True)
    log.expose("d0", START + timedelta(hours=1), "control", "x", paused=False)  # false: counted
    mem = duckdb.connect()
    ensure_schema(mem)
    log.into(mem)
    sums = load_sums(mem, "first-only", start=START, end=END, caps={}, variants=list(ARMS))
    assert sums.paused_visitors == {"armor": 1, "control": 1}
    assert sums.totals["armor"].n == 3 and sums.totals["control"].n == 1
    # A bot first exposed while paused counts once, as a bot.
    log2 = Log("bot-paused")
    log2.expose("z", START, "armor", "x", paused=True, bot=True)
    log2.into(mem)
    both = load_sums(mem, "bot-paused", start=START, end=END, caps={})
    assert both.bot_visitors["user_agent"] == 1 and both.paused_visitors == {}
    assert load_sums(mem, "bot-paused", start=START, end=END, caps={}, bot_user_agents=False).paused_visitors == {
        "armor": 1}


# ---- pages that changed during the test ------------------------------------------------------------


def _pages_log() -> Log:
    """``pages``: in armor, item-0 got a new page mid-test (6 then 4 visitors) and item-1 served a fallback
    to 3 of 8; item-2 kept one page. Control's copy of item-0 changed too (not the ARMOR pages' change).
    Paused visitors of item-2 got control's copy (excluded: no change)."""
    log = Log("pages")
    t = START + timedelta(hours=1)

    def many(prefix: str, n: int, variant: str, item: str, **props: object) -> None:
        nonlocal t
        for i in range(n):
            t += timedelta(minutes=7)
            log.expose(f"{prefix}{i}", t, variant, item, **props)

    many("a", 6, "armor", "item-0", page=digest("armor", "item-0", 1))
    many("b", 4, "armor", "item-0", page=digest("armor", "item-0", 2))
    many("c", 5, "armor", "item-1", page=digest("armor", "item-1", 1))
    many("d", 3, "armor", "item-1", page=digest("control", "item-1"), fallback="missing")
    many("e", 2, "armor", "item-2", page=digest("armor", "item-2", 1))
    many("f", 4, "armor", "item-2", page=digest("control", "item-2"), fallback="paused", paused=True)
    many("g", 5, "control", "item-0", page=digest("control", "item-0", 1))
    many("h", 5, "control", "item-0", page=digest("control", "item-0", 2))
    many("i", 3, "armor", "item-3")  # written before pages were recorded: left out
    return log


def _steady_log() -> Log:
    """``steady``: every item kept one page in every variant."""
    log = Log("steady")
    for i in range(30):
        item = f"item-{i % 3}"
        arm = ARMS[i % 2]
        log.expose(f"v{i}", START + timedelta(minutes=10 * i), arm, item, page=digest(arm, item))
    return log


@pytest.fixture(scope="module")
def pages_report(con) -> dict:
    return experiment_report(con, get_experiment(con, "pages"), now=END)


def _check(report: dict, name: str) -> dict:
    return next(c for c in report["data_quality"]["checks"] if c["name"] == name)


def test_a_changed_armor_page_is_named(pages_report) -> None:
    report = pages_report
    ExperimentReport.model_validate(report)
    served = report["data"]["served_pages"]
    assert served["variants"] == ["armor"] and served["changed_items"] == 2
    assert served["visitors"] == {"armor": 20} and served["fallback_visitors"] == {"armor": 3}
    assert served["fallback_reasons"] == {"missing": 3}
    item0, item1 = served["items"]
    assert (item0["item_id"], item0["variant"], item0["visitors"]) == ("item-0", "armor", 10)
    assert item0["pages"] == [{"page": digest("armor", "item-0", 1), "fallback": None, "visitors": 6},
                              {"page": digest("armor", "item-0", 2), "fallback": None, "visitors": 4}]
    assert (item1["item_id"], item1["visitors"]) == ("item-1", 8)
    assert item1["pages"] == [{"page": digest("armor", "item-1", 1), "fallback": None, "visitors": 5},
                              {"page": digest("control", "item-1"), "fallback": "missing", "visitors": 3}]
    check = _check(report, "page_changes")
    assert check["status"] == "warn" and check["value"] == 2
    msg = check["message"]
    assert "changed during the test for 2 items in armor" in msg
    assert f"'item-0' in armor (page {digest('armor', 'item-0', 1)[:12]}: 6 visitors; " in msg
    assert f"page {digest('armor', 'item-0', 2)[:12]}: 4 visitors)" in msg
    assert f"control's copy {digest('control', 'item-1')[:12]} (fallback 'missing'): 3 visitors" in msg
    assert "item-2" not in msg  # its paused visitors' fallback is no change
    fallbacks = _check(report, "fallbacks")
    assert fallbacks["status"] == "warn" and fallbacks["value"] == 3
    assert "3 visitors of 20 in the ARMOR variants (15.00%) first served control's copy (missing 3)" in fallbacks["message"]
    assert report["data_quality"]["clean"]  # warnings, not failures


def test_no_warning_when_every_item_kept_its_page(con) -> None:
    report = experiment_report(con, get_experiment(con, "steady"), now=END)
    ExperimentReport.model_validate(report)
    served = report["data"]["served_pages"]
    assert served["changed_items"] == 0 and served["items"] == [] and served["visitors"] == {"armor": 15}
    assert _check(report, "page_changes")["status"] == "ok"
    assert "Every item kept one page per ARMOR variant throughout (15 visitors checked)" in _check(
        report, "page_changes")["message"]
    assert _check(report, "fallbacks")["status"] == "ok" and _check(report, "fallbacks")["value"] == 0


def test_control_copy_changes_are_not_flagged(con) -> None:
    # In "pages", control's copy of item-0 changed; read as an ARMOR variant, it would be.
    as_armor = load_served_pages(con, "pages", ["control"], start=START, end=END)
    assert as_armor.changed_items == 1 and as_armor.items[0].item_id == "item-0"
    only_armor = load_served_pages(con, "pages", ["armor"], start=START, end=END)
    assert {(i.item_id, i.variant) for i in only_armor.items} == {("item-0", "armor"), ("item-1", "armor")}
    # No ARMOR variant at all: nothing checked, every check ok.
    none = load_served_pages(con, "pages", [], start=START, end=END)
    assert none.variants == () and none.changed_items == 0


def test_the_list_of_items_is_bounded() -> None:
    log = Log("many")
    for k in range(25):
        for v in range(3):  # item k: versions with 3 + k, 2, 1 visitors... all changed
            for i in range(1 + v + (k if v == 0 else 0)):
                log.expose(f"u{k}-{v}-{i}", START + timedelta(minutes=k * 100 + v * 10 + i), "armor", f"it-{k:02d}",
                           page=digest(k, v))
    mem = duckdb.connect()
    ensure_schema(mem)
    log.into(mem)
    pages = load_served_pages(mem, "many", ["armor"], start=START, end=END, max_pages=2)
    assert pages.changed_items == 25 and len(pages.items) == 20
    assert [i.item_id for i in pages.items[:2]] == ["it-24", "it-23"]  # most visitors first
    assert all(len(i.pages) == 2 and i.omitted_pages == 1 for i in pages.items)
    assert pages.items[0].pages[0].visitors == 25 and pages.items[0].visitors == 25 + 2 + 3
    checks = quality_checks(srm={"flag": False, "p_value": 1.0}, included_visitors=0, unknown={}, multi=0, bots={},
                            caps={}, multi_warn_share=0.01, days_elapsed=1.0, min_runtime_days=1.0,
                            visitors_per_variant={"armor": 0}, min_visitors_per_variant=1, pages=pages)
    msg = next(c for c in checks if c.name == "page_changes").message
    assert "for 25 items in armor" in msg and msg.count("' in armor (") == 5 and ", and 20 more." in msg
    assert ", and 1 more version)" in msg


def test_client_posted_pages_do_not_count_with_server_exposures(con) -> None:
    log = Log("forged")
    for i in range(3):
        log.expose(f"s{i}", START + timedelta(minutes=i), "armor", "x", page=digest("real"))
    log.add("f0", "exposure", START + timedelta(minutes=9), "armor", item="x", props={"page": digest("fake")},
            source="client")
    mem = duckdb.connect()
    ensure_schema(mem)
    log.into(mem)
    assert load_served_pages(mem, "forged", ["armor"], start=START, end=END, exposures="server").changed_items == 0
    assert load_served_pages(mem, "forged", ["armor"], start=START, end=END, exposures="any").changed_items == 1
