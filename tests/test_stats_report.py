"""The experiment report end to end on a real DuckDB file, and the `report` / `power` commands."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from armor_ab.cli import app
from armor_ab.event_schema import COLUMN_NAMES
from armor_ab.experiments.models import ExperimentSpec
from armor_ab.reporting.report import experiment_report, primary_baseline
from armor_ab.stats.comparison import ComparisonOptions, compare
from armor_ab.stats.power import sample_size, sequential_sample_size
from armor_ab.stats.sql import load_sums
from armor_ab.store.db import connect
from armor_ab.store.experiments import ExperimentRecord, get_experiment, upsert_experiment
from tests.helpers.events import END, PRE_DAYS, START, generate_events, insert, reference

ROW_COLUMNS = ", ".join(COLUMN_NAMES)  # commit_seq is the database's (its DEFAULT)

METRICS = {
    "primary": "dwell_time_per_view",
    "secondary": ["inquiries_per_visitor", "dwell_time_per_visitor"],
    "guardrails": [{"metric": "inquiry_rate", "margin": 0.05}, "inquiry_value_per_visitor"],
}


def make_spec(key: str = "exp", variants=(("control", 0.5), ("treatment", 0.5)), **extra) -> ExperimentSpec:
    return ExperimentSpec.model_validate(
        {
            "key": key,
            "name": "Interleaved pages",
            "variants": [{"key": k, "weight": w} for k, w in variants],
            "metrics": METRICS,
            "segments": ["plan"],
            "analysis": {"cuped_pre_days": PRE_DAYS},
            "roi": {},
            **extra,
        }
    )


def add_experiment(con: duckdb.DuckDBPyConnection, spec: ExperimentSpec, start=START, stop=END) -> ExperimentRecord:
    upsert_experiment(con, spec)
    con.execute(
        "UPDATE experiments SET status = 'stopped', started_at = ?, stopped_at = ? WHERE key = ?", [start, stop, spec.key]
    )
    return get_experiment(con, spec.key)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stats") / "armor_ab.duckdb"
    con = connect(path)
    try:
        insert(con, generate_events(seed=3, visitors=1500, effect=0.15))
        add_experiment(con, make_spec())
        add_experiment(con, make_spec("empty"))
        three = (("control", 0.4), ("a", 0.3), ("b", 0.3))
        insert(con, generate_events(seed=4, visitors=900, variants=tuple(k for k, _ in three), experiment="three"))
        add_experiment(con, make_spec("three", variants=three))
        add_experiment(con, make_spec("skewed", variants=(("control", 0.8), ("treatment", 0.2))))
        con.execute(f"INSERT INTO events ({ROW_COLUMNS}) SELECT gen_random_uuid(), 'skewed', variant, user_id, "
                    "item_id, type, value, "
                    "ts, received_at, properties, source FROM events WHERE experiment = 'exp'")
    finally:
        con.close()
    return path


@pytest.fixture(scope="module")
def con(db: Path):
    con = connect(db, read_only=True)
    yield con
    con.close()


@pytest.fixture(scope="module")
def report(con) -> dict:
    return experiment_report(con, get_experiment(con, "exp"))


def _entry(report: dict, metric: str, variant: str = "treatment") -> dict:
    return next(r for r in report["results"] if r["metric"] == metric and r["variant"] == variant)


def test_report_is_strict_json_with_every_section(report: dict) -> None:
    text = json.dumps(report, allow_nan=False)
    assert json.loads(text) == json.loads(json.dumps(report))
    for key in ("experiment", "srm", "visitors", "results", "timeseries", "segments", "power", "roi", "verdict",
                "data_quality", "runtime", "by_age", "analysis"):
        assert key in report
    assert report["experiment"] == "exp"
    assert len(report["results"]) == 5  # five metrics x one treatment
    for r in report["results"]:
        for key in ("metric", "variant", "baseline", "n", "baseline_n", "mean", "baseline_mean", "lift_abs",
                    "lift_rel", "ci_rel", "p_value", "p_value_adjusted", "sequential", "bayesian", "status", "cuped"):
            assert key in r, key
        assert r["status"] == "ok"
        assert r["p_value_adjusted"] >= r["p_value"]
        assert r["ci_rel"][0] < r["lift_rel"] < r["ci_rel"][1]
        # The always-valid interval contains the fixed one.
        assert r["sequential"]["ci_rel"][0] < r["ci_rel"][0] and r["ci_rel"][1] < r["sequential"]["ci_rel"][1]
        assert 0 <= r["bayesian"]["chance_to_win"] <= 1 and r["bayesian"]["expected_loss"] >= 0
    assert {r["metric"] for r in report["results"] if "guardrail" in r} == {"inquiry_rate", "inquiry_value_per_visitor"}
    g = _entry(report, "inquiry_rate")["guardrail"]
    assert g["margin"] == 0.05 and g["state"] in ("passed", "pending", "breached")
    # The guardrail's bounds are the always-valid interval of the entry (one treatment: alpha unadjusted).
    assert [g["sequential_lower"], g["sequential_upper"]] == pytest.approx(_entry(report, "inquiry_rate")["sequential"]["ci_rel"])
    d = _entry(report, "dwell_time_per_view")["decision"]
    assert d["sequential_ci_rel"] == pytest.approx(_entry(report, "dwell_time_per_view")["sequential"]["ci_rel"])
    assert report["verdict"]["decision"] in ("ship", "keep_running", "stop") and report["verdict"]["reason"]
    assert report["roi"]["variant"] == "treatment" and 0 <= report["roi"]["prob_npv_positive"] <= 1
    assert {c["name"] for c in report["data_quality"]["checks"]} == {
        "srm", "unknown_variants", "multiple_variants", "bots", "paused", "page_changes", "fallbacks", "capping",
        "min_runtime", "min_sample"}
    assert all(c["status"] in ("ok", "warn", "fail") for c in report["data_quality"]["checks"])


@pytest.mark.parametrize("key", ["exp", "empty", "three", "skewed"])
def test_report_validates_against_its_schema(con, key: str) -> None:
    from armor_ab.reporting.models import ExperimentReport

    report = json.loads(json.dumps(experiment_report(con, get_experiment(con, key)), allow_nan=False))
    model = ExperimentReport.model_validate(report)
    assert model.verdict is not None and model.verdict.reason == report["verdict"]["reason"]


def test_report_numbers_match_the_reference(con, report: dict) -> None:
    ref = reference_from_db(con)
    for variant in ("control", "treatment"):
        assert report["visitors"][variant] == ref["totals"][variant]["n"]
    e = _entry(report, "dwell_time_per_view")
    t, c = ref["totals"]["treatment"], ref["totals"]["control"]
    assert e["mean"] == pytest.approx(t["s_dwell"] / t["s_views"], rel=1e-9)
    assert e["baseline_mean"] == pytest.approx(c["s_dwell"] / c["s_views"], rel=1e-9)
    inq = _entry(report, "inquiries_per_visitor")
    assert inq["mean"] == pytest.approx(t["s_inq"] / t["n"], rel=1e-9)
    assert report["srm"]["observed"] == report["visitors"]
    assert report["data"]["dwell_cap_ms"] is None and ref["cap"] is None  # the per-event cap is off by default
    assert report["data"]["caps"] == pytest.approx(ref["caps"], rel=1e-12)
    assert report["data"]["multi_variant_visitors"] == ref["multi"]


def reference_from_db(con) -> dict:
    rows = con.execute(
        "SELECT event_id::VARCHAR, experiment, variant, user_id, type, value, epoch_us(ts), properties::VARCHAR "
        "FROM events WHERE experiment = 'exp'"
    ).fetchall()
    from tests.helpers.events import Events

    cols = list(zip(*rows, strict=True))
    return reference(Events(*(list(c) for c in cols)))


def test_cuped_switch(con) -> None:
    record = get_experiment(con, "exp")
    on = experiment_report(con, record, cuped=True)
    off = experiment_report(con, record, cuped=False)
    assert not any(r["cuped"] for r in off["results"])
    assert all(r["cuped"] for r in on["results"])  # the generator logs pre-exposure events for every metric
    # Same raw means either way; CUPED only moves the adjusted ones and the intervals.
    for a, b in zip(on["results"], off["results"], strict=True):
        assert a["mean"] == pytest.approx(b["mean"], rel=1e-12)
        assert a["ci_rel"] != b["ci_rel"]


def test_timeseries_ends_at_the_totals(report: dict, con) -> None:
    days = report["data"]["days"]
    assert days == (END.date() - START.date()).days + 1
    for series in report["timeseries"]:
        assert len(series["points"]) == days
        last = series["points"][-1]
        total = _entry(report, series["metric"], series["variant"])
        assert last["lift_rel"] == pytest.approx(total["lift_rel"], rel=1e-9)
        assert last["ci_rel"] == pytest.approx(total["ci_rel"], rel=1e-9)
        assert last["sequential_ci_rel"] == pytest.approx(total["sequential"]["ci_rel"], rel=1e-9)
        ns = [p["n"] for p in series["points"]]
        assert ns == sorted(ns)  # cumulative


def test_segments(report: dict) -> None:
    keys = {s["segment"] for s in report["segments"]}
    assert keys == {"device", "category", "plan"}
    device = {s["value"]: s for s in report["segments"] if s["segment"] == "device"}
    # "tv" is the device of a later exposure that is some visitors' first one inside the window.
    assert set(device) == {"mobile", "desktop", "tablet", "tv"}
    total = sum(sum(s["visitors"].values()) for s in device.values())
    assert total < sum(report["visitors"].values())  # some visitors carry no device
    for value in ("mobile", "desktop", "tablet"):
        assert len(device[value]["results"]) == 5 and all(r["status"] == "ok" for r in device[value]["results"])


def test_power_section(report: dict, con) -> None:
    power = report["power"]
    assert power["status"] == "ok" and power["metric"] == "dwell_time_per_view"
    # The plan is for the test the verdict runs: the always-valid interval (mode "sequential").
    plan = sequential_sample_size(power["baseline_mean"], power["baseline_sd"], 0.05,
                                  visitors_per_day=power["visitors_per_day"])
    assert power["method"] == "sequential" and power["n_per_variant"] == plan.n_per_variant
    assert power["reached"] == (power["visitors"] >= plan.total_visitors)
    elapsed = (END - START).total_seconds() / 86400
    assert power["days_elapsed"] == pytest.approx(elapsed)
    assert power["days_remaining"] == pytest.approx(
        max(0.0, (plan.total_visitors - power["visitors"]) / power["visitors_per_day"])
    )
    assert report["verdict"]["days_remaining"] == pytest.approx(power["days_remaining"])
    base = primary_baseline(con, get_experiment(con, "exp"))
    assert base["baseline_sd"] == pytest.approx(power["baseline_sd"], rel=1e-12)


def test_three_variants_holm_over_the_family(con) -> None:
    report = experiment_report(con, get_experiment(con, "three"))
    assert len(report["results"]) == 10
    assert {r["variant"] for r in report["results"]} == {"a", "b"}
    from statsmodels.stats.multitest import multipletests

    ps = [r["p_value"] for r in report["results"]]
    assert [r["p_value_adjusted"] for r in report["results"]] == pytest.approx(list(multipletests(ps, method="holm")[1]))
    assert report["primary_variant"] in ("a", "b")
    assert set(report["srm"]["expected"]) == {"control", "a", "b"}
    # Two treatment arms: the verdict reads intervals at alpha / 2 (Bonferroni over the arms), wider
    # than the entry's own always-valid interval at alpha.
    for r in report["results"]:
        if r["metric"] == "dwell_time_per_view":
            d = r["decision"]
            assert d["sequential_alpha"] == d["fixed_alpha"] == pytest.approx(0.025)
            assert d["sequential_ci_rel"][0] < r["sequential"]["ci_rel"][0]
            assert d["sequential_ci_rel"][1] > r["sequential"]["ci_rel"][1]


def test_srm_flags_a_skewed_split(con) -> None:
    report = experiment_report(con, get_experiment(con, "skewed"))
    assert report["srm"]["flag"] and report["srm"]["p_value"] < 1e-6
    assert any("Sample ratio mismatch" in r for r in report["verdict"]["reasons"])


@pytest.mark.parametrize("key", ["empty", "exp"])
def test_no_data_gives_status_codes_not_nan(con, key: str) -> None:
    # "empty" has no events; "exp" asked about a moment before it started has an empty window.
    now = START - timedelta(days=1) if key == "exp" else None
    report = experiment_report(con, get_experiment(con, key), now=now)
    json.dumps(report, allow_nan=False)
    assert report["visitors"] == {"control": 0, "treatment": 0}
    assert {r["status"] for r in report["results"]} == {"too_few_units"}
    assert all(r["p_value"] is None and r["p_value_adjusted"] is None for r in report["results"])
    assert report["power"]["days_remaining"] is None
    assert report["roi"]["status"] == "too_few_units"
    assert report["verdict"]["decision"] == "keep_running"
    assert report["timeseries"][0]["points"] == [] and report["segments"] == []


def _drop(events, keep) -> None:
    for name in events.__dataclass_fields__:
        setattr(events, name, [getattr(events, name)[i] for i in keep])


def test_zero_baseline_and_zero_variance_statuses(tmp_path: Path) -> None:
    con = connect(tmp_path / "z.duckdb")
    events = generate_events(seed=5, visitors=300)
    # Nobody who ever saw control inquires: control's inquiry metrics are exactly 0.
    saw_control = {events.user_id[i] for i in range(len(events)) if events.variant[i] == "control"}
    _drop(events, [i for i in range(len(events)) if not (events.type[i] == "inquiry" and events.user_id[i] in saw_control)])
    insert(con, events)
    record = add_experiment(con, make_spec())
    report = experiment_report(con, record, cuped=False)
    json.dumps(report, allow_nan=False)
    e = _entry(report, "inquiries_per_visitor")
    assert e["status"] == "zero_baseline" and e["baseline_mean"] == 0.0
    assert e["lift_abs"] > 0 and e["p_value"] is not None and e["p_value_adjusted"] is not None
    assert e["lift_rel"] is None and e["ci_rel"] is None and e["sequential"]["ci_rel"] is None
    assert e["bayesian"]["chance_to_win"] is None
    rate = _entry(report, "inquiry_rate")
    assert rate["status"] == "zero_baseline" and rate["guardrail"]["passed"] is False
    # And with no inquiries at all, both arms are constant: no variance, no test.
    con.execute("DELETE FROM events WHERE type = 'inquiry'")
    report = experiment_report(con, record, cuped=False)
    json.dumps(report, allow_nan=False)
    e = _entry(report, "inquiries_per_visitor")
    assert e["status"] == "zero_variance" and e["p_value"] is None and e["lift_abs"] == 0.0
    con.close()


def test_report_matches_direct_computation(con, report: dict) -> None:
    record = get_experiment(con, "exp")
    sums = load_sums(con, "exp", start=START, end=END, pre_days=PRE_DAYS)
    comp = compare(sums.totals["control"], sums.totals["treatment"], "dwell_time_per_view", ComparisonOptions(alpha=0.05))
    e = _entry(report, "dwell_time_per_view")
    assert e["lift_rel"] == pytest.approx(comp.fixed.lift_rel, rel=1e-12)
    assert e["p_value"] == pytest.approx(comp.fixed.p_value, rel=1e-12)
    assert record.spec.analysis.correction == "holm"


# ---- CLI ---------------------------------------------------------------------------------------------


runner = CliRunner()


def test_cli_report_json_and_table(db: Path) -> None:
    out = runner.invoke(app, ["report", "exp", "--db", str(db), "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["experiment"] == "exp" and len(data["results"]) == 5
    off = runner.invoke(app, ["report", "exp", "--db", str(db), "--json", "--no-cuped"])
    assert not any(r["cuped"] for r in json.loads(off.stdout)["results"])
    table = runner.invoke(app, ["report", "exp", "--db", str(db)])
    assert table.exit_code == 0, table.output
    assert "dwell_time_per_view" in table.stdout and "sample ratio" in table.stdout


def test_cli_analyze_is_report(db: Path) -> None:
    new = runner.invoke(app, ["report", "exp", "--db", str(db), "--json"])
    old = runner.invoke(app, ["analyze", "exp", "--db", str(db), "--json"])
    assert old.exit_code == 0, old.output
    assert not old.stderr and not new.stderr
    a, b = json.loads(old.stdout), json.loads(new.stdout)
    assert a.keys() == b.keys() and a["verdict"] == b["verdict"] and a["visitors"] == b["visitors"]
    # DuckDB's parallel sums may differ in the last bits from one query to the next.
    assert [r["lift_rel"] for r in a["results"]] == pytest.approx([r["lift_rel"] for r in b["results"]], rel=1e-9)
    listing = runner.invoke(app, ["--help"]).stdout
    assert " report " in listing and " analyze " in listing


def test_cli_report_errors(db: Path, tmp_path: Path) -> None:
    missing = runner.invoke(app, ["report", "nope", "--db", str(db)])
    assert missing.exit_code == 2 and "no experiment 'nope'" in missing.output
    nofile = runner.invoke(app, ["report", "exp", "--db", str(tmp_path / "none.duckdb")])
    assert nofile.exit_code == 2 and "cannot open database" in nofile.output


def test_cli_report_locked_database(tmp_path: Path) -> None:
    path = tmp_path / "locked.duckdb"
    connect(path).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(path)!r}); print('ready', flush=True); "
                               "time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        out = runner.invoke(app, ["report", "exp", "--db", str(path)])
        assert out.exit_code == 2 and "in use by another process" in out.output
    finally:
        holder.kill()
        holder.wait(10)


def test_cli_power(db: Path) -> None:
    out = runner.invoke(app, ["power", "--baseline-mean", "30000", "--baseline-sd", "45000", "--mde", "0.05",
                              "--visitors-per-day", "2000", "--json"])
    assert out.exit_code == 0, out.output
    got = json.loads(out.stdout)
    plan = sequential_sample_size(30000, 45000, 0.05, visitors_per_day=2000)
    assert got["mode"] == "sequential" and got["method"] == "sequential"
    assert got["n_per_variant"] == plan.n_per_variant and got["days"] == pytest.approx(plan.days)
    fixed = json.loads(runner.invoke(app, ["power", "--baseline-mean", "30000", "--baseline-sd", "45000", "--mde",
                                           "0.05", "--visitors-per-day", "2000", "--mode", "fixed", "--json"]).stdout)
    assert fixed["n_per_variant"] == sample_size(30000, 45000, 0.05).n_per_variant
    text = runner.invoke(app, ["power", "--baseline-mean", "1", "--baseline-sd", "2", "--mde", "0.1", "--variants", "3"])
    assert text.exit_code == 0 and "visitors per variant" in text.stdout
    data = runner.invoke(app, ["power", "--experiment", "exp", "--db", str(db), "--json"])
    assert data.exit_code == 0, data.output
    d = json.loads(data.stdout)
    assert d["experiment"] == "exp" and d["metric"] == "dwell_time_per_view" and d["days"] > 0
    assert d["n_per_variant"] == sequential_sample_size(d["baseline_mean"], d["baseline_sd"], 0.05).n_per_variant
    bad = runner.invoke(app, ["power", "--mde", "0.05"])
    assert bad.exit_code == 2
    nodata = runner.invoke(app, ["power", "--experiment", "empty", "--db", str(db)])
    assert nodata.exit_code == 2 and "no usable baseline" in nodata.output
    invalid = runner.invoke(app, ["power", "--baseline-mean", "1", "--baseline-sd", "1", "--mde", "-1"])
    assert invalid.exit_code == 2


def test_report_default_now_uses_utc(con) -> None:
    report = experiment_report(con, get_experiment(con, "exp"))
    assert datetime.fromisoformat(report["generated_at"]).tzinfo is not None
    # A stopped experiment's window ends at its stop time, whatever "now" is.
    assert datetime.fromisoformat(report["window"]["end"]) == END
