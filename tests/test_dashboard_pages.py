"""Every dashboard page as a Streamlit ``AppTest`` against a real API over a real DuckDB file with
simulated visitors: the figures shown must be the API's, formatted."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from types import SimpleNamespace

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from armor_ab.dashboards.lib import figures, fmt, specs, ui
from armor_ab.dashboards.lib import health as health_lib
from armor_ab.dashboards.lib.api import ApiClient, ApiError
from armor_ab.experiments.assignment import Assigner
from armor_ab.experiments.models import ExperimentSpec
from armor_ab.reporting.verdict import decide_report
from tests.helpers.dashboard import (
    APP,
    EXP,
    GUARDED,
    GUARDED_PAGES,
    GUARDED_SPAN,
    PENDING_ITEMS,
    TRUE_DWELL_LIFT,
    VIEWS,
    DashboardPlatform,
    seed_guarded,
    start_platform,
)
from tests.helpers.platform import free_port

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def plat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardPlatform]:
    p = start_platform(tmp_path_factory, "dashboard-pages", seed=seed_guarded)
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def page(plat: DashboardPlatform, monkeypatch: pytest.MonkeyPatch):
    """``page("results", scope="read")``: the page run once (no sign-in: key from the environment)."""

    def run(name: str, scope: str = "admin", experiment: str | None = EXP, auth: bool = False) -> AppTest:
        monkeypatch.setenv(ui.ENV_API, plat.url)
        monkeypatch.setenv(ui.ENV_KEY, plat.keys[scope])
        monkeypatch.setenv(ui.ENV_NO_AUTH, "0" if auth else "1")
        ui.clear_cache()
        at = AppTest.from_file(str(VIEWS / f"{name}.py"), default_timeout=180)
        if experiment:
            at.query_params["experiment"] = experiment
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return run


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def texts(elements) -> list[str]:  # noqa: ANN001 - an AppTest element list
    return [e.value for e in elements]


def results(plat: DashboardPlatform, key: str = EXP, **params: object) -> dict:
    return plat.get(f"/v1/experiments/{key}/results", **params)  # type: ignore[return-value]


# Numbers written for machines, not people: a float's tail ("50000.0", "0.123456", "14.3 days"), or a
# whole number of 1,000 and more without separators ("50000", "1500 visitors"). Years and clock times
# ("2026-11-14 14:58 UTC") and parts of keys ("P-01") are not numbers of this kind.
RAW_NUMBER = re.compile(
    r"(?<![\w.,:/-])(?:\d{4,}\.\d+|\d+\.\d{4,}|\d+\.\d+(?= ?(?:days?|visitors?|months?)\b)|\d{5,}"
    r"|[1-9]\d{3}(?![\d-]| ?UTC))(?![\w.,:/-]*\d)")


def page_texts(at: AppTest) -> list[str]:
    """Every figure-bearing text of a page: metric values, markdown, captions, alerts, progress text and
    the string cells of its tables."""
    out = [m.value for m in at.metric]
    for elements in (at.markdown, at.caption, at.info, at.success, at.warning, at.error, at.title, at.subheader):
        out += texts(elements)
    out += [p.proto.text for p in at.get("progress")]
    for df in at.dataframe:
        out += [str(v) for col in df.value.columns for v in df.value[col] if isinstance(v, str)]
    return out


def assert_human_numbers(at: AppTest) -> None:
    """No raw float or unseparated large number anywhere on the page, and no float cell in a table."""
    raw = [(t, RAW_NUMBER.findall(t)) for t in page_texts(at) if RAW_NUMBER.search(t)]
    assert raw == [], raw
    for df in at.dataframe:
        floats = [c for c in df.value.columns if df.value[c].dtype.kind == "f"]
        assert floats == [], f"float columns shown raw: {floats}"


def signed_pct(x: float) -> str:
    return f"{x * 100:+.1f}%"


def dollars(x: float) -> str:
    return f"{'-' if x < 0 else ''}${abs(x):,.0f}"


def whole_days(x: float, up: bool = False) -> str:
    n = math.ceil(x - 1e-9) if up else round(x)
    return f"{n} day{'' if n == 1 else 's'}"


def test_raw_number_pattern() -> None:
    for raw in ("50000.0", "0.123456", "50000", "1500 visitors", "14.3 days", "53753.1000", "x 1234.5"):
        assert RAW_NUMBER.search(raw), raw
    for ok in ("50,000", "1,500 visitors", "+9.4%", "0.336", "<0.001", "2026-11-14 14:58 UTC", "$1,346,815",
               "14 days", "5%", "Pump P-01", "/v1/power", "per 1,000 visitors", "95% CI +5.2% to +13.6%"):
        assert not RAW_NUMBER.search(ok), ok


# ---- Experiments -------------------------------------------------------------------------------------


def test_experiments_page_lists_every_experiment_with_the_apis_figures(page, plat) -> None:
    at = page("experiments", scope="read", experiment=None)
    listed = plat.get("/v1/experiments")
    report = results(plat)
    table = at.dataframe[0].value
    assert list(table["Experiment"]) == [e["key"] for e in listed]
    row = table[table["Experiment"] == EXP].iloc[0]
    exp = next(e for e in listed if e["key"] == EXP)
    assert row["Status"] == "running"
    assert row["Started"] == fmt.timestamp(exp["started_at"]) and row["Started"].endswith(" UTC")
    assert row["Visitors"] == f"control {report['visitors']['control']:,} · armor {report['visitors']['armor']:,}"
    assert row["Total visitors"] == sum(report["visitors"].values()) == 1500
    assert '"Total visitors"' in at.dataframe[0].proto.columns and "localized" in at.dataframe[0].proto.columns
    assert row["SRM"] == "ok" and report["srm"]["flag"] is False
    assert row["Verdict"] == fmt.decision(report["verdict"]["decision"])
    assert row["Headline"] == report["verdict"]["headline"]
    running = sum(e["status"] == "running" for e in listed)
    assert metrics(at) == {"Experiments": f"{len(listed):,}", "Running": f"{running:,}", "Sample ratio mismatch": "0",
                           "Critical or paused": "0"}
    assert not at.error
    assert_human_numbers(at)


# ---- Results -----------------------------------------------------------------------------------------


def test_results_page_shows_the_apis_lift_ci_p_and_chance_to_win(page, plat) -> None:
    at = page("results", scope="read")
    report = results(plat)
    shown = metrics(at)
    captions = texts(at.caption)
    for e in report["results"]:
        label = f"{fmt.metric_label(e['metric'])} · {e['variant']} vs {e['baseline']}"
        assert shown[label] == f"{e['lift_rel'] * 100:+.1f}%"
        assert figures.metric_caption(e, report["alpha"]) in captions
        lo, hi = e["ci_rel"]
        assert f"95% CI {lo * 100:+.1f}% to {hi * 100:+.1f}%" in figures.metric_caption(e, report["alpha"])
    # The known effect: +8% dwell is inside the interval, which the sequential test already separates from 0.
    dwell = next(e for e in report["results"] if e["metric"] == "dwell_time_per_view")
    assert dwell["ci_rel"][0] < TRUE_DWELL_LIFT < dwell["ci_rel"][1]
    assert f":green-badge[{figures.significance(dwell).label}]" in texts(at.markdown)
    # The table: every cell is the JSON formatted.
    table = at.dataframe[0].value.to_dict("records")
    assert table == figures.results_rows(report)
    assert table[0]["p (adjusted)"] == fmt.p_value(dwell["p_value_adjusted"])
    assert table[0]["Chance to win"] == fmt.probability(dwell["bayesian"]["chance_to_win"])
    # The verdict, and no SRM banner (the split is fine).
    assert any(report["verdict"]["headline"] in v.replace("\\", "") for v in texts(at.info) + texts(at.success)
               + texts(at.warning))
    assert not at.error
    # The estimate over time: the chart's line is the API's time series.
    charts = at.get("vega_lite_chart")
    assert len(charts) == 3  # over time, by days since exposure, by segment
    ages = json.loads(charts[1].proto.spec)
    age_line = next(layer for layer in ages["layer"] if layer["mark"]["type"] == "line")
    by_age = next(s for s in report["by_age"] if s["metric"] == "dwell_time_per_view")
    assert [p["age"] for p in age_line["data"]["values"]] == [
        p["age_days"] for p in by_age["points"] if p["lift_rel"] is not None]
    # Each data-quality check is one line on the page.
    for check in report["data_quality"]["checks"]:
        assert any(check["message"].split(":")[0] in v for v in texts(at.markdown)), check
    spec = json.loads(charts[0].proto.spec)
    line = next(layer for layer in spec["layer"] if layer["mark"]["type"] == "line")
    series = next(s for s in report["timeseries"] if s["metric"] == "dwell_time_per_view")
    # (approx: DuckDB's parallel sums differ in the last bits from one query to the next)
    assert [p["lift"] for p in line["data"]["values"]] == pytest.approx(
        [p["lift_rel"] for p in series["points"] if p["lift_rel"] is not None], rel=1e-9)
    # Segments: device by default.
    seg = at.dataframe[1].value.to_dict("records")
    assert seg == figures.segment_rows(report, "device") and {r["device"] for r in seg} == {"mobile", "desktop"}


def test_results_page_writes_every_figure_for_people(page, plat) -> None:
    at = page("results", scope="read")
    report = results(plat)
    v = report["visitors"]
    header = at.caption[0].value
    assert f"visitors control {v['control']:,} · armor {v['armor']:,} · " in header
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC to ", header)
    dwell = next(e for e in report["results"] if e["metric"] == "dwell_time_per_view")
    label = f"Dwell time per view · {dwell['variant']} vs {dwell['baseline']}"
    assert metrics(at)[label] == signed_pct(dwell["lift_rel"])
    lo, hi = dwell["ci_rel"]
    assert any(c.startswith(f"95% CI {signed_pct(lo)} to {signed_pct(hi)} · p (adjusted) ") for c in texts(at.caption))
    row = at.dataframe[0].value.to_dict("records")[report["results"].index(dwell)]
    assert row["control mean"] == f"{dwell['baseline_mean'] / 1000:.1f} s" and row["Lift"] == signed_pct(dwell["lift_rel"])
    power = report["power"]
    assert power["total_visitors"] > 1000  # so the separator shows
    progress = at.get("progress")[0].proto.text
    assert progress == (f"{power['visitors']:,} of {power['total_visitors']:,} visitors planned "
                        f"(MDE {power['mde'] * 100:g}%, power {power['power'] * 100:g}%); "
                        f"about {whole_days(power['days_remaining'], up=True)} left")
    plan = next(c for c in texts(at.caption) if c.startswith("Plan ("))
    assert f"{power['total_visitors']:,} visitors for the " in plan
    assert f"about {whole_days(power['planned_days'], up=True)} at the observed " in plan
    assert f"{round(power['visitors_per_day']):,} visitors/day" in plan
    assert_human_numbers(at)


def test_results_cuped_toggle_and_segment_choice(page, plat) -> None:
    at = page("results", scope="read")
    assert at.toggle(key="results_cuped").value is True
    at.toggle(key="results_cuped").set_value(False).run()
    assert not at.exception
    off = results(plat, cuped="false")
    assert "CUPED off" in at.caption[0].value
    assert at.dataframe[0].value.to_dict("records") == figures.results_rows(off)
    at.selectbox(key="results_segment").set_value("category").run()
    assert at.dataframe[1].value.to_dict("records") == figures.segment_rows(off, "category")


def test_srm_banner_blocks_a_ship_reading(page, plat) -> None:
    """A 50/50 experiment that got 400 vs 200 visitors: the SRM banner shows, and never "ship"."""
    yaml_text = (specs.TEMPLATE.replace("key: my-experiment", "key: srm-check")
                 .replace("name: ARMOR pages for one more category", "name: Broken split"))
    admin = {**plat.headers("admin"), "Content-Type": "application/yaml"}
    assert httpx.post(f"{plat.url}/v1/experiments", content=yaml_text, headers=admin).status_code == 201
    assert httpx.post(f"{plat.url}/v1/experiments/srm-check/start", headers=plat.headers("admin")).status_code == 200
    # The broken split comes from which visitors reach the pages: 400 visitors the server assigns to control and
    # 200 it assigns to armor, each exposed by the server itself (GET …/assignment), as when a redirect drops
    # half of one arm's visitors before the page loads. Visitors are picked by the experiment's own assignment.
    client = plat.headers("client")
    public = httpx.get(f"{plat.url}/v1/experiments/srm-check", headers=plat.headers("read")).json()
    assigner = Assigner.from_experiment(
        SimpleNamespace(spec=ExperimentSpec.model_validate(public["spec"]), effective_seed=public["effective_seed"]))
    chosen: dict[str, list[str]] = {"control": [], "armor": []}
    wanted = {"control": 400, "armor": 200}
    for i in range(10_000):
        variant = assigner.assign(f"srm-{i}").variant
        if variant in chosen and len(chosen[variant]) < wanted[variant]:
            chosen[variant].append(f"srm-{i}")
    assert {v: len(u) for v, u in chosen.items()} == wanted
    with httpx.Client(base_url=plat.url, headers=client, timeout=30) as http:
        for variant, users in chosen.items():
            for user in users:
                got = http.get("/v1/experiments/srm-check/assignment", params={"user_id": user}).json()["variant"]
                assert got == variant
    events = []
    for variant, users in chosen.items():
        for n, user in enumerate(users):
            for j, (kind, value) in enumerate((("page_view", None), ("dwell", float(30_000 + 97 * n % 20_000)))):
                events.append({"event_id": f"00000000-0000-4000-8000-{len(events):06d}{j:06d}", "experiment": "srm-check",
                               "variant": variant, "user_id": user, "type": kind, "value": value})
    for start in range(0, len(events), 900):
        r = httpx.post(f"{plat.url}/v1/events", json={"events": events[start:start + 900]}, headers=client)
        assert r.status_code == 200 and "refused" not in r.json(), r.text
    report = results(plat, "srm-check")
    assert report["srm"]["flag"] is True and report["verdict"]["decision"] != "ship"
    at = page("results", scope="read", experiment="srm-check")
    assert figures.srm_message(report["srm"]) in texts(at.error)
    assert any("Do not ship on these numbers" in e for e in texts(at.error))
    assert figures.reading(report).decision != "ship"
    assert not any(v.startswith("**Ship**") for v in texts(at.success))


# ---- ROI ---------------------------------------------------------------------------------------------


def test_roi_page_shows_the_executive_figures_and_a_what_if_that_is_not_saved(page, plat) -> None:
    at = page("roi", scope="read")
    report = results(plat)
    roi = report["roi"]
    assert roi["status"] == "ok", roi
    shown = metrics(at)
    assert shown["Expected NPV"] == fmt.money(roi["npv"]["expected"]) and shown["Expected NPV"].startswith(("$", "-$"))
    assert shown["P(NPV > 0)"] == fmt.probability(roi["prob_npv_positive"])
    assert shown["Expected loss if shipped"] == fmt.money(roi["expected_loss"])
    assert shown["Break-even effect"] == figures.small_pct(roi["break_even_lift_rel"])
    assert shown["Discounted payback"] == figures.payback_figure(roi).value != "0 months"
    assert shown["Incremental profit / month"] == fmt.money(roi["incremental_profit_per_month"]["expected"])
    if roi["roi_pct"]["shown"]:
        assert shown["ROI"] == fmt.roi_pct(roi["roi_pct"]["expected"])
    else:  # no misleading ROI %: the page says why and shows the NPV range instead
        assert "ROI" not in shown and figures.roi_pct_note(roi) in texts(at.info)
    assert not {"P(ROI > 0)", "Payback", "NPV"} & set(shown)  # the old, misleading figures are gone
    captions = texts(at.caption)
    assert f"95% interval {fmt.interval(roi['npv']['ci'], fmt.money)}" in captions
    assert f"within the tolerance of {fmt.money(roi['max_expected_loss'])}" in " ".join(captions) or (
        f"above the tolerance of {fmt.money(roi['max_expected_loss'])}" in " ".join(captions))
    assert figures.breakeven_text(report, roi) in captions  # break-even next to the effect's CI and the MDE
    assert f"experiment's MDE {report['roi'].get('mde', 0.05) * 100:g}%" in figures.breakeven_text(report, roi)
    assert_human_numbers(at)
    # Exact text, written here independently of fmt: money with $ and separators, percentages, whole months.
    assert shown["Expected NPV"] == dollars(roi["npv"]["expected"])
    assert shown["Incremental profit / month"] == dollars(roi["incremental_profit_per_month"]["expected"])
    a = roi["assumptions"]
    likely = lambda x: x["likely"] if isinstance(x, dict) else x  # noqa: E731
    visitors = likely(a["monthly_visitors"])
    assert visitors >= 10_000  # the separator shows
    assumptions_line = next(c for c in captions if c.startswith("Assumptions (likely values): "))
    assert assumptions_line.startswith(
        f"Assumptions (likely values): {round(visitors):,} new visitors/month, inquiry-to-order "
        f"{likely(a['inquiry_to_order']) * 100:g}%, margin {dollars(likely(a['margin_per_order']))}/order, "
        f"one-off costs {dollars(roi['costs']['one_off_total'])}, running costs "
        f"{dollars(roi['costs']['monthly_total'])}/month, horizon {a['horizon_months']} months. ")
    assert any(c.startswith(f"Over {roi['horizon_months']} months, discounted.") for c in captions)
    assert len(at.get("vega_lite_chart")) == 3  # break-even, the NPV distribution and the tornado
    hist = json.loads(at.get("vega_lite_chart")[1].proto.spec)
    assert [b["count"] for b in hist["layer"][0]["data"]["values"]] == roi["histogram"]["counts"]
    # The form starts from the experiment's assumptions: the demo's margin is a range.
    margin = roi["assumptions"]["margin_per_order"]
    assert margin == {"low": 1000.0, "likely": 1500.0, "high": 2000.0}
    assert at.number_input(key="roi_margin_per_order").value == 1500.0
    assert (at.number_input(key="roi_margin_per_order_low").value,
            at.number_input(key="roi_margin_per_order_high").value) == (1000.0, 2000.0)
    assert at.number_input(key="roi_pages_low").value is None
    # What-if: a higher margin.
    at.number_input(key="roi_margin_per_order").set_value(3000.0)
    at.number_input(key="roi_margin_per_order_high").set_value(3500.0)
    next(b for b in at.button if b.label == "Run what-if").click().run()
    assert not at.exception, [e.value for e in at.exception]
    edited = {**roi["assumptions"], "margin_per_order": {"low": 1000.0, "likely": 3000.0, "high": 3500.0}}
    whatif = plat.post("/v1/roi", {"assumptions": edited, "effect": roi["effect"], "experiment": EXP})
    whatif_verdict = whatif.pop("verdict")
    shown = metrics(at)
    assert shown["Expected NPV"] == fmt.money(whatif["npv"]["expected"]) != fmt.money(roi["npv"]["expected"])
    assert shown["P(NPV > 0)"] == fmt.probability(whatif["prob_npv_positive"])
    assert shown["Expected loss if shipped"] == fmt.money(whatif["expected_loss"])
    assert any("What-if: 1 assumption(s) changed (Margin per order)" in v for v in texts(at.info))
    assert_human_numbers(at)
    # The verdict is the API's, decided with the what-if ROI by the report's rules: the dashboard decides nothing.
    assert whatif_verdict == decide_report({**report, "roi": whatif})
    assert any(whatif_verdict["headline"] in v.replace("\\", "") for v in texts(at.info) + texts(at.success)
               + texts(at.warning) + texts(at.error))
    # A what-if that cannot pay is never a ship, whatever the report said with the saved assumptions.
    ruinous = {**roi["assumptions"], "engineering_cost": 1e9}
    ruined = plat.post("/v1/roi", {"assumptions": ruinous, "effect": roi["effect"], "experiment": EXP})
    assert ruined["verdict"]["decision"] != "ship"
    assert ruined["verdict"] == decide_report({**report, "roi": {k: v for k, v in ruined.items() if k != "verdict"}})
    # Not saved: the experiment still has its own assumptions; a read key cannot save.
    assert plat.get(f"/v1/experiments/{EXP}")["spec"]["roi"]["margin_per_order"] == margin
    assert at.button(key="roi_save").disabled
    # Half a range is refused in words, before anything is computed.
    at.number_input(key="roi_pages_low").set_value(10.0)
    next(b for b in at.button if b.label == "Run what-if").click().run()
    assert "Assumption not valid: Catalog pages: give both low and high, or neither" in texts(at.error)


def test_roi_saving_puts_the_new_roi_block_through_the_admin_api(page, plat) -> None:
    original = plat.get(f"/v1/experiments/{EXP}")["spec"]
    at = page("roi", scope="admin")
    try:
        at.number_input(key="roi_pages").set_value(80.0)
        at.checkbox(key="roi_content_would_be_handwritten").check()
        next(b for b in at.button if b.label == "Run what-if").click().run()
        at.button(key="roi_save").click().run()
        assert not at.exception
        saved = plat.get(f"/v1/experiments/{EXP}")["spec"]["roi"]
        assert saved["pages"] == 80.0 and saved["content_would_be_handwritten"] is True
        assert saved["engineering_cost"] == original["roi"]["engineering_cost"]  # ranges survive the round trip
        assert any("Saved the assumptions" in v for v in texts(at.success))
        roi = results(plat)["roi"]
        assert roi["assumptions"]["pages"] == 80.0 and roi["costs"]["savings"]["counted"] is True
    finally:
        r = httpx.put(f"{plat.url}/v1/experiments/{EXP}", json=original, headers=plat.headers("admin"))
        assert r.status_code == 200, r.text


# ---- Design ------------------------------------------------------------------------------------------


def test_design_power_calculator_uses_the_baseline_from_past_data(page, plat) -> None:
    at = page("design", scope="read")
    report = results(plat)
    power = report["power"]
    assert at.number_input(key="power_mean").value == pytest.approx(power["baseline_mean"])
    assert at.number_input(key="power_sd").value == pytest.approx(power["baseline_sd"])
    assert any("Baseline from past data" in v for v in texts(at.info))
    plan = plat.post("/v1/power", {"baseline_mean": power["baseline_mean"], "baseline_sd": power["baseline_sd"],
                                   "mde": 0.05, "alpha": 0.05, "power": 0.8, "variants": 2})
    shown = metrics(at)
    assert shown["Detectable effect (MDE)"] == "5%"
    assert shown["Visitors per variant"] == f"{plan['n_per_variant']:,}" == fmt.count(power["n_per_variant"])
    assert plan["total_visitors"] >= 1000 and shown["Total visitors"] == f"{plan['total_visitors']:,}"
    vpd = at.number_input(key="power_vpd").value
    assert shown["Days at this traffic"] == whole_days(plan["total_visitors"] / vpd, up=True)
    assert f"At {round(vpd):,} visitors/day, alpha 5%, power 80%, 2 variants." in texts(at.caption)
    assert any(re.fullmatch(rf"So far: {power['visitors']:,} visitors in \d+ days?\.", c) for c in texts(at.caption))
    note = next(v for v in texts(at.info) if "Baseline from past data" in v)
    assert f"over {power['visitors']:,} visitors; traffic {round(power['visitors_per_day']):,} visitors/day." in note
    assert_human_numbers(at)
    # The other way round: 30 days at this traffic -> the MDE, then the API's plan for that MDE.
    at.radio(key="power_mode").set_value("Days → detectable effect (MDE)").run()
    at.number_input(key="power_days").set_value(30.0).run()
    shown = metrics(at)
    mde = float(shown["Detectable effect (MDE)"].rstrip("%")) / 100
    assert re.fullmatch(r"\d+ days", shown["Days at this traffic"]) and int(shown["Days at this traffic"][:-5]) <= 30
    assert_human_numbers(at)
    # The smallest effect that fits: a slightly smaller one needs more than 30 days (the API's plan).
    smaller = plat.post("/v1/power", {"baseline_mean": power["baseline_mean"], "baseline_sd": power["baseline_sd"],
                                      "mde": mde * 0.98, "visitors_per_day": vpd})
    assert smaller["days"] > 30.0 * 0.98
    assert at.get("vega_lite_chart")


def test_design_creates_and_edits_an_experiment_through_the_api(page, plat) -> None:
    at = page("design", scope="admin")
    # The editor opens with the selected experiment's YAML, valid, and downloadable.
    assert "key: catalog-interleaved" in at.text_area(key="design_yaml").value
    assert any(v.startswith("Valid:") for v in texts(at.success))
    at.radio(key="design_mode").set_value("New experiment").run()
    assert at.text_area(key="design_yaml").value == specs.TEMPLATE
    at.text_area(key="design_yaml").input(specs.TEMPLATE.replace("key: my-experiment", "key: Bad Key")).run()
    assert any("field `key`" in w for w in texts(at.warning)) and at.button(key="design_save").disabled
    new = specs.TEMPLATE.replace("key: my-experiment", "key: dash-new")
    at.text_area(key="design_yaml").input(new).run()
    at.button(key="design_save").click().run()
    assert not at.exception, [e.value for e in at.exception]
    created = plat.get("/v1/experiments/dash-new")
    assert created["status"] == "draft" and created["spec"]["roi"]["margin_per_order"] == 1500.0
    assert any("Saved `dash-new`" in v for v in texts(at.success))
    # Now editing it: rename and save (PUT).
    assert at.radio(key="design_mode").value == "Edit the selected experiment"
    edited = at.text_area(key="design_yaml").value.replace("name: ARMOR pages for one more category",
                                                             "name: Renamed from the dashboard")
    at.text_area(key="design_yaml").input(edited).run()
    at.button(key="design_save").click().run()
    assert not at.exception
    assert plat.get("/v1/experiments/dash-new")["spec"]["name"] == "Renamed from the dashboard"


# ---- Content -----------------------------------------------------------------------------------------


def _armor_user(plat: DashboardPlatform) -> str:
    for i in range(1000):
        r = httpx.get(f"{plat.url}/v1/experiments/{EXP}/assignment", params={"user_id": f"content-{i}"},
                      headers=plat.headers("client"))
        if r.json()["variant"] == "armor":
            return f"content-{i}"
    raise AssertionError("nobody in armor")


def test_content_page_approving_changes_what_the_api_serves(page, plat) -> None:
    user = _armor_user(plat)
    served = lambda: httpx.get(f"{plat.url}/v1/experiments/{EXP}/content",  # noqa: E731
                               params={"user_id": user, "item_id": PENDING_ITEMS[0]},
                               headers=plat.headers("client")).json()
    before = served()
    assert (before["source"], before["fallback"]) == ("catalog", "unapproved")
    at = page("content", scope="admin")
    assert at.caption[0].value.startswith(f"{len(PENDING_ITEMS)} pending · 0 approved · 0 rejected · 0 stale generated "
                                         "pages; 0 blocked by the guardrails")
    assert ":gray-badge[checks: not run]" in texts(at.markdown)
    assert any(re.search(r"generated \d{4}-\d\d-\d\d \d\d:\d\d UTC · prompt: ", c) for c in texts(at.caption))
    assert_human_numbers(at)
    assert at.selectbox(key="content_item").value == PENDING_ITEMS[0]
    assert at.image and at.image[0].value, "the generated page's picture is shown"
    assert ":orange-badge[generated page: pending]" in texts(at.markdown)
    assert "**Visitors see:** the catalog copy (fallback: unapproved)" in texts(at.markdown)
    at.button(key="content_approve_armor").click().run()
    assert not at.exception
    assert any("pumps-01 · armor: approved" in v for v in texts(at.success))
    after = served()
    assert after["source"] == "armor" and after["fallback"] is None
    assert [s["type"] for s in after["content"]["segments"]] == ["text", "image", "text"]
    assert "**Visitors see:** the generated page" in texts(at.markdown)
    review = plat.get(f"/v1/experiments/{EXP}/content/review", item_id=PENDING_ITEMS[0])
    assert review[0]["status"] == "approved"


def test_content_page_with_a_read_key_shows_pages_but_no_review_buttons(page, plat) -> None:
    at = page("content", scope="read")
    at.selectbox(key="content_filter").set_value("all").run()
    assert at.selectbox(key="content_item").options == sorted(PENDING_ITEMS)
    assert not [b for b in at.button if b.key and b.key.startswith("content_")]
    assert any("needs an admin key" in c for c in texts(at.caption))


def test_content_page_shows_the_catalog_item_beside_its_pages(page, plat) -> None:
    """The item as imported (photo, name, category, specs, today's copy), read through the API, next to
    the generated pages: what a reviewer compares them against."""
    item = plat.get(f"/v1/catalog/items/{PENDING_ITEMS[0]}")
    at = page("content", scope="read")
    at.selectbox(key="content_filter").set_value("all").run()  # whatever earlier tests reviewed
    at.selectbox(key="content_item").set_value(PENDING_ITEMS[0]).run()
    assert not at.exception
    assert item["name"] in [h.value for h in at.subheader]
    assert f"catalog item {fmt.md_escape(item['id'])} · {fmt.md_escape(item['category'])}" in texts(at.caption)
    assert fmt.md_escape(item["description"]) in texts(at.markdown)
    specs_md = next(m for m in texts(at.markdown) if m.startswith("- **"))
    for label, value in item["specs"].items():
        assert f"**{fmt.md_escape(label)}:** {fmt.md_escape(value)}" in specs_md
    assert at.image and len(at.image) >= 2, "the catalog photo and the generated page's picture"
    assert_human_numbers(at)
    at.selectbox(key="content_item").set_value(PENDING_ITEMS[1]).run()
    assert not at.exception
    assert plat.get(f"/v1/catalog/items/{PENDING_ITEMS[1]}")["name"] in [h.value for h in at.subheader]


# ---- Guardrails: verdicts and checks on the Content page, health, pause --------------------------------


def _guarded_user(plat: DashboardPlatform, variant: str = "armor") -> str:
    for i in range(1000):
        r = httpx.get(f"{plat.url}/v1/experiments/{GUARDED}/assignment", params={"user_id": f"guarded-{i}"},
                      headers=plat.headers("client"))
        if r.json()["variant"] == variant:
            return f"guarded-{i}"
    raise AssertionError(f"nobody in {variant}")


def _served(plat: DashboardPlatform, user: str, item: str) -> tuple[str, str | None]:
    """(source, fallback) of what a visitor gets for ``item`` of the guarded experiment."""
    r = httpx.get(f"{plat.url}/v1/experiments/{GUARDED}/content", params={"user_id": user, "item_id": item},
                  headers=plat.headers("client"))
    assert r.status_code == 200, r.text
    return r.json()["source"], r.json()["fallback"]


def test_content_page_shows_a_failing_pages_checks_with_its_evidence_highlighted(page, plat) -> None:
    at = page("content", scope="admin", experiment=GUARDED)
    at.selectbox(key="content_filter").set_value("all").run()
    # The filter by failing check: one failing page per check, as the API's `failing` says.
    rows = plat.get(f"/v1/experiments/{GUARDED}/content/review")
    options = at.selectbox(key="content_check").options
    assert [o for o in options if o.startswith("failing: ")] == [
        f"failing: {name} (1)" for name in sorted({n for r in rows for n in r["failing"]})]
    at.selectbox(key="content_check").set_value("failing:terms").run()
    assert at.selectbox(key="content_item").options == ["motors-03"]
    at.selectbox(key="content_check").set_value("verdict:pass").run()
    assert at.selectbox(key="content_item").options == sorted(i for i, (v, _) in GUARDED_PAGES.items() if v == "pass")
    at.selectbox(key="content_check").set_value("failing:spec_fidelity").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="content_item").options == ["valves-03"]
    assert at.selectbox(key="content_item").value == "valves-03"
    # The page's verdict and every check's status, action and reason, as the API stored them.
    row = next(r for r in rows if r["item_id"] == "valves-03")
    assert row["verdict"] == "fail" and row["failing"] == ["spec_fidelity", "image_sanity"]
    md = texts(at.markdown)
    assert ":red-badge[checks: fail (blocked)]" in md and ":orange-badge[generated page: pending]" in md
    spec = next(r for r in row["checks"]["results"] if r["check"] == "spec_fidelity")
    assert spec["status"] == "fail" and spec["action"] == "block" and "10 bar" in spec["reason"]
    line = next(m for m in md if "**spec\\_fidelity**" in m)
    assert line.startswith(":red-badge[fail] **spec\\_fidelity** · blocks the page · " + fmt.md_escape(spec["reason"]))
    assert f"“{GUARDED_SPAN}”" in line
    assert any(m.startswith(":orange-badge[fail] **image\\_sanity** · warns only · ") for m in md)
    assert any(m.startswith(":green-badge[pass] **terms** · warns only · ") for m in md)
    # The evidence span, found by its offsets into the page's text, is marked where it is: in the second
    # text segment, after the picture; the picture's evidence is named next to it.
    text = "".join(s["text"] for s in row["content"]["segments"] if s["type"] == "text")
    (ev,) = spec["evidence"]
    assert text[ev["start"]:ev["end"]] == GUARDED_SPAN
    assert f"Rated :red-background[{GUARDED_SPAN}], size DN20." in [m.strip() for m in md]
    assert "Valve V-03, a gate valve for chemical dosing." in md  # the first segment: nothing to mark
    assert any(m.startswith(":orange-background[Picture 1] **image\\_sanity** (fail): picture 1 is blank") for m in md)
    # It cannot be approved: the button is disabled and says why; the API refuses it with a clear message.
    approve = at.button(key="content_approve_armor")
    assert approve.disabled and "fails spec_fidelity" in (approve.help or "")
    assert any("Cannot be approved: it fails spec_fidelity" in e for e in texts(at.error))
    assert "Pending · not reviewed yet" in texts(at.caption)
    with pytest.raises(ApiError) as refused:
        ApiClient(plat.url, plat.keys["admin"]).review(GUARDED, "approved", item_id="valves-03", variant="armor")
    assert (refused.value.status, refused.value.code) == (409, "guardrail_failed")
    message = ui.review_error_text(refused.value)
    assert message.startswith("Not approved: cannot approve a page that fails a blocking check: valves-03 (armor) "
                              "fails spec\\_fidelity")
    # The auto-approved page says who approved it.
    at.selectbox(key="content_check").set_value("any").run()
    at.selectbox(key="content_item").set_value("pumps-01").run()
    assert ":green-badge[checks: pass]" in texts(at.markdown)
    assert any(c.startswith("Approved automatically by the guardrails") for c in texts(at.caption))
    assert_human_numbers(at)


def test_approve_all_that_pass_approves_the_passing_pages_and_skips_the_rest(page, plat) -> None:
    user = _guarded_user(plat)
    before = plat.get(f"/v1/experiments/{GUARDED}/content/review")
    assert {r["item_id"]: (r["verdict"], r["status"]) for r in before} == GUARDED_PAGES
    assert _served(plat, user, "pumps-02") == ("catalog", "unapproved")
    at = page("content", scope="admin", experiment=GUARDED)
    button = at.button(key="content_approve_passing")
    assert button.label == "Approve all that pass (2)" and not button.disabled
    button.click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert ("Approved 2 pages that pass every check (1 already approved); skipped 2 pending pages that do not "
            "pass (1 blocked (fail), 1 warn): review those one by one.") in texts(at.success)
    after = {r["item_id"]: r for r in plat.get(f"/v1/experiments/{GUARDED}/content/review")}
    assert {i: r["status"] for i, r in after.items()} == {
        "pumps-01": "approved", "pumps-02": "approved", "pumps-03": "approved", "motors-03": "pending",
        "valves-03": "pending"}
    assert after["pumps-02"]["reviewed_by"] == "test-admin" and after["pumps-02"]["reviewed_at"]
    # What visitors get now: the passing pages; the others still fall back to the catalog copy.
    assert {i: _served(plat, user, i) for i in GUARDED_PAGES} == {
        "pumps-01": ("armor", None), "pumps-02": ("armor", None), "pumps-03": ("armor", None),
        "motors-03": ("catalog", "unapproved"), "valves-03": ("catalog", "guardrail")}
    assert at.button(key="content_approve_passing").disabled  # nothing left that passes
    at.selectbox(key="content_filter").set_value("approved").run()
    at.selectbox(key="content_item").set_value("pumps-02").run()
    assert any(c.startswith("Approved by test-admin (key ") and c.endswith(" UTC") for c in texts(at.caption))


def test_experiments_page_shows_pages_per_status_and_the_health_of_each(page, plat) -> None:
    at = page("experiments", scope="read", experiment=None)
    table = at.dataframe[0].value
    for key in (EXP, GUARDED):
        health = plat.get(f"/v1/experiments/{key}/health")
        row = table[table["Experiment"] == key].iloc[0]
        assert row["Health"] == health_lib.status_label(health)
        by_status = health["content"]["by_status"]
        assert {s: int(row[s.capitalize()]) for s in ("pending", "approved", "rejected", "stale")} == {
            s: by_status.get(s, 0) for s in ("pending", "approved", "rejected", "stale")}
        assert int(row["Blocked"]) == health["content"]["by_verdict"]["fail"]
    row = table[table["Experiment"] == GUARDED].iloc[0]
    assert (row["Health"], int(row["Blocked"])) == ("ok", 1)
    assert int(row["Pending"]) + int(row["Approved"]) == len(GUARDED_PAGES)
    assert_human_numbers(at)


def test_pause_and_resume_on_the_design_page_switch_the_armor_arm(page, plat) -> None:
    user = _guarded_user(plat)
    assert _served(plat, user, "pumps-01") == ("armor", None)
    at = page("design", scope="admin", experiment=GUARDED)
    assert any(v.startswith("Health: ok") for v in texts(at.success))
    try:
        at.text_input(key="design_pause_cause").input("Wrong pressures on the valve pages")
        at.button(key="design_pause").click().run()
        assert not at.exception, [e.value for e in at.exception]
        state = plat.get(f"/v1/experiments/{GUARDED}")
        assert state["paused_at"] and state["pause_cause"] == "Wrong pressures on the valve pages"
        assert _served(plat, user, "pumps-01") == ("catalog", "paused")
        assert any(v.startswith(f"Paused `{GUARDED}` at ") and "(cause: Wrong pressures on the valve pages)" in v
                   for v in texts(at.success))
        assert any(e.startswith("Health: warn; paused since ") and "Wrong pressures on the valve pages" in e
                   for e in texts(at.error))
        # Everywhere else it stands out too: the Experiments page names it, Results has it on top.
        overview = page("experiments", scope="admin", experiment=None)  # admin: the Design page runs on with it
        assert any(e.startswith(f"`{GUARDED}`: health: warn; paused since ") and "Wrong pressures" in e
                   for e in texts(overview.error))
        alarming = [e["key"] for e in plat.get("/v1/experiments")
                    if (h := plat.get(f"/v1/experiments/{e['key']}/health"))["status"] == "critical" or h["paused"]]
        assert GUARDED in alarming and metrics(overview)["Critical or paused"] == str(len(alarming))
        results_page = page("results", scope="admin", experiment=GUARDED)
        assert results_page.error and results_page.error[0].value.startswith("Health: warn; paused since ")
        # Resume: the generated page is served again.
        assert at.button(key="design_resume")
        at.text_input(key="design_resume_note").input("Valve pages fixed")
        at.button(key="design_resume").click().run()
        assert not at.exception, [e.value for e in at.exception]
        assert f"Resumed `{GUARDED}`: its ARMOR arms serve their approved generated pages again." in texts(at.success)
        assert _served(plat, user, "pumps-01") == ("armor", None)
        assert plat.get(f"/v1/experiments/{GUARDED}/health")["paused"] is False
        assert at.button(key="design_pause")
    finally:
        httpx.post(f"{plat.url}/v1/experiments/{GUARDED}/resume", json={}, headers=plat.headers("admin"))


def test_results_page_has_the_health_box_on_top(page, plat) -> None:
    at = page("results", scope="read", experiment=GUARDED)
    health = plat.get(f"/v1/experiments/{GUARDED}/health")
    assert health["status"] == "ok" and not health["paused"]
    assert "Health: ok, no problems." in texts(at.success)
    at = page("results", scope="read")  # the simulated one: whatever its live health says, it is on top
    boxes = [v for v in texts(at.error) + texts(at.warning) + texts(at.success) if v.startswith("Health: ")]
    assert len(boxes) == 1


# ---- The client's typed answers ----------------------------------------------------------------------


def test_the_client_returns_the_apis_models(plat) -> None:
    from armor_ab.api.schemas import CatalogItemPublic, CatalogItemsPublic, ExperimentPublic
    from armor_ab.dashboards.lib.api import ApiClient, ApiError
    from armor_ab.reporting.models import ExperimentReport, PowerPlanPublic

    client = ApiClient(plat.url, plat.keys["read"])
    exps = client.experiments()
    assert exps and all(isinstance(e, ExperimentPublic) for e in exps)
    assert client.experiment(EXP).key == EXP and client.experiment(EXP).status == "running"
    report = client.results(EXP)
    assert isinstance(report, ExperimentReport) and report.verdict is not None
    served = results(plat)
    assert report.verdict.model_dump(mode="json") == served["verdict"]  # the API's verdict, read as it is
    assert figures.as_json(report)["visitors"] == served["visitors"]
    plan = client.power(baseline_mean=served["power"]["baseline_mean"], baseline_sd=served["power"]["baseline_sd"],
                        mde=0.05, visitors_per_day=100.0)
    assert isinstance(plan, PowerPlanPublic) and plan.status == "ok"
    items = client.catalog_items(category="pumps", limit=3)
    assert isinstance(items, CatalogItemsPublic) and items.total == 7 and [i.id for i in items.items] == [
        "pumps-01", "pumps-02", "pumps-03"]
    item = client.catalog_item("pumps-01")
    assert isinstance(item, CatalogItemPublic) and item == items.items[0]
    assert client.image(item.image)[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ApiError) as missing:
        client.catalog_item("no-such-item")
    assert (missing.value.status, missing.value.code) == (404, "item_not_found")
    assert plan.model_dump(mode="json") == plat.post("/v1/power", {
        "baseline_mean": served["power"]["baseline_mean"], "baseline_sd": served["power"]["baseline_sd"],
        "mde": 0.05, "visitors_per_day": 100.0})


# ---- Sign-in, errors, the entrypoint -----------------------------------------------------------------


def test_sign_in_is_required_and_checked(page, plat) -> None:
    at = page("results", auth=True)
    assert not at.metric and any("Sign in" in v for v in texts(at.info))
    for key, why in (("aab_nope_nope", "unknown"), (plat.keys["client"], "client key")):
        at.text_input(key="signin_key").input(key)
        next(b for b in at.button if b.label == "Sign in").click().run()
        assert not at.exception and not at.metric
        assert why in at.sidebar.error[0].value
    at.text_input(key="signin_key").input(plat.keys["read"])
    next(b for b in at.button if b.label == "Sign in").click().run()
    assert not at.exception
    assert at.session_state[ui.SESSION_SCOPE] == "read"
    assert at.metric, "the results show once signed in"
    at.button(key="signout_button").click().run()
    assert not at.metric and ui.SESSION_KEY not in at.session_state


def test_api_down_is_a_clear_message_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ui.ENV_API, f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv(ui.ENV_KEY, "aab_any_key")
    monkeypatch.setenv(ui.ENV_NO_AUTH, "1")
    for name in ("experiments", "results", "roi", "design", "content"):
        ui.clear_cache()
        at = AppTest.from_file(str(VIEWS / f"{name}.py"), default_timeout=60).run()
        assert not at.exception
        assert len(at.error) == 1 and "is not reachable" in at.error[0].value and "armor-ab serve" in at.error[0].value


def test_the_entrypoint_opens_the_experiments_page(plat, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ui.ENV_API, plat.url)
    monkeypatch.setenv(ui.ENV_KEY, plat.keys["read"])
    monkeypatch.setenv(ui.ENV_NO_AUTH, "1")
    at = AppTest.from_file(str(APP), default_timeout=180).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Experiments"
