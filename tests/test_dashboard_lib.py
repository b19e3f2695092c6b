"""Unit tests of the dashboards' importable logic: formatting, figure extraction, charts, exports,
the API client's errors, the YAML helpers and the `armor-ab dashboard` command line."""

from __future__ import annotations

import csv
import io
from copy import deepcopy

import altair as alt
import httpx
import pytest
from PIL import Image
from typer.testing import CliRunner

from armor_ab.api.schemas import ExperimentPublic
from armor_ab.cli import app as cli_app
from armor_ab.cli.dashboard import APP, dashboard_env, streamlit_command
from armor_ab.dashboards.lib import assumptions, charts, checks, export, figures, fmt, health, specs
from armor_ab.dashboards.lib.api import ApiClient, ApiError, ApiUnavailable, _error_from
from armor_ab.experiments.loader import load_experiment_file
from armor_ab.roi.assumptions import RoiAssumptions
from armor_ab.roi.engine import EffectInput, compute_roi
from armor_ab.stats.power import sequential_sample_size
from tests.helpers.platform import DEMO_EXPERIMENT, free_port

# ---- a small report in the API's shape ---------------------------------------------------------------


def entry(metric: str = "dwell_time_per_view", lift: float | None = 0.094, seq=(0.029, 0.16), status: str = "ok",
          p: float | None = 4.5e-6) -> dict:
    return {
        "metric": metric, "variant": "armor", "baseline": "control", "n": 1487, "baseline_n": 1513,
        "mean": 58830.9, "baseline_mean": 53753.1, "lift_rel": lift, "ci_rel": [0.052, 0.136] if lift else None,
        "p_value": p, "p_value_adjusted": None if p is None else 2 * p, "status": status, "cuped": False,
        "sequential": {"ci_rel": list(seq) if seq else None, "p_value": 0.0004},
        "bayesian": {"chance_to_win": 0.999995},
    }


ROI = compute_roi(RoiAssumptions(), EffectInput(0.05, 0.004, 0.002, window_days=3))
# The demo's old cost base (fine-tuning only) and a noisy effect: no ROI %, no payback month.
ROI_SMALL = compute_roi(RoiAssumptions(engineering_cost=0, finetune_runs=0, pages=0),
                        EffectInput(0.05, 0.001, 0.004, window_days=3))


def report(srm_flag: bool = False, decision: str = "ship") -> dict:
    return {
        "experiment": "x", "name": "X", "status": "running", "alpha": 0.05, "primary_metric": "dwell_time_per_view",
        "primary_variant": "armor", "visitors": {"control": 1513, "armor": 1487},
        "srm": {"flag": srm_flag, "p_value": 1e-5 if srm_flag else 0.63, "observed": {"control": 1513, "armor": 1487},
                "expected": {"control": 1500.0, "armor": 1500.0}},
        "results": [entry(), entry("inquiry_rate", -0.14, (-0.55, 0.27), p=0.336)],
        "timeseries": [{"metric": "dwell_time_per_view", "variant": "armor", "points": [
            {"date": "2026-11-15", "n": 33, "baseline_n": 57, "lift_rel": None, "ci_rel": None,
             "sequential_ci_rel": None, "p_value": None},
            {"date": "2026-11-16", "n": 135, "baseline_n": 176, "lift_rel": 0.042, "ci_rel": [-0.08, 0.17],
             "sequential_ci_rel": [-0.23, 0.32], "p_value": 0.49}]}],
        "segments": [{"segment": "device", "value": "mobile", "visitors": {"armor": 806, "control": 838},
                      "results": [{"metric": "dwell_time_per_view", "variant": "armor", "n": 806, "baseline_n": 838,
                                   "lift_rel": 0.091, "ci_rel": [0.034, 0.147], "p_value": 0.001, "status": "ok"}]},
                     {"segment": "device", "value": None, "omitted_values": 3}],
        "power": {"status": "ok", "metric": "dwell_time_per_view", "baseline_mean": 53753.1, "baseline_sd": 28574.9,
                  "visitors": 3000, "visitors_per_day": 200.0, "days_remaining": 2.75},
        "roi": ROI,
        "verdict": {"decision": decision, "headline": f"{decision} headline", "reasons": ["r1"]},
    }


# ---- fmt ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fn", "value", "text"), [
    (fmt.pct, 0.0945, "+9.4%"), (fmt.pct, -0.14, "-14.0%"), (fmt.pct, None, "—"), (fmt.pct, float("nan"), "—"),
    (fmt.p_value, 4.5e-6, "<0.001"), (fmt.p_value, 0.33617, "0.336"), (fmt.p_value, None, "—"),
    (fmt.probability, 0.999995, ">99.9%"), (fmt.probability, 0.15004, "15.0%"), (fmt.probability, 0.0, "<0.1%"),
    (fmt.count, 1513, "1,513"), (fmt.money, -1346814.75, "-$1,346,815"), (fmt.money, 1375770.2, "$1,375,770"),
    (fmt.money_short, -1346814.75, "-$1.35M"), (fmt.money_short, 8400, "$8.4k"), (fmt.roi_pct, -22833.25, "-22,833%"),
    (fmt.months, 1.0, "1 month"), (fmt.months, 3.0, "3 months"), (fmt.days, 2.75, "3 days"), (fmt.days, 1.2, "1 day"),
    (fmt.days, 14.0, "14 days"), (fmt.visitors, 50000.0, "50,000 visitors"), (fmt.visitors, 1, "1 visitor"),
    (fmt.per_day, 1071.4, "1,071 visitors/day"), (fmt.share, 0.05, "5%"), (fmt.share, 0.025, "2.5%"),
    (fmt.share, 0.8, "80%"), (fmt.number, 53753.1, "53,753"), (fmt.pct, 12.5, "+1,250.0%"),
])
def test_formatting(fn, value, text) -> None:  # noqa: ANN001
    assert fn(value) == text


def test_formatting_in_context() -> None:
    assert fmt.interval([0.052, 0.136]) == "+5.2% to +13.6%"
    assert fmt.interval(None) == fmt.interval([None, 0.1]) == "—"
    assert fmt.interval([-100.0, 200.0], fmt.money) == "-$100 to $200"
    assert fmt.months(None, 12) == "not within 12 months"
    assert (fmt.days(30.01, up=True), fmt.days(30.0, up=True), fmt.days(None)) == ("31 days", "30 days", "—")
    assert [fmt.input_format(x) for x in (53753.1, 1.5, 0.05, None)] == ["%0.0f", "%0.2f", "%0.4f", "%0.2f"]
    assert fmt.metric_value("dwell_time_per_view", 53753.1) == "53.8 s"
    assert fmt.metric_value("inquiry_rate", 0.05551) == "5.55%"
    assert fmt.metric_label("dwell_time_per_view") == "Dwell time per view"
    assert fmt.metric_label("inquiry_rate") == "Inquiry rate"
    assert fmt.timestamp("2026-11-14T14:58:12.408727+00:00") == "2026-11-14 14:58 UTC"
    assert fmt.decision("keep_running") == "Keep running" and fmt.decision(None) == "—"
    assert fmt.status_words("zero_denominator") == "no page views yet"


def test_markdown_escaping_keeps_generated_copy_plain() -> None:
    assert fmt.md_escape("Costs $5, *not* [a link](x) <b>") == "Costs \\$5, \\*not\\* \\[a link\\](x) \\<b\\>"
    assert fmt.md_escape("- not a list\n1. nor this") == "\\- not a list\n\\1. nor this"
    assert fmt.md_escape("+9.4% (p)") == "+9.4% (p)"


# ---- figures -----------------------------------------------------------------------------------------


def test_srm_blocks_a_ship_reading_and_says_what_to_do() -> None:
    ok = figures.reading(report())
    assert (ok.decision, ok.srm_blocked) == ("ship", False)
    broken = figures.reading(report(srm_flag=True))
    assert broken.decision == "keep_running" and broken.srm_blocked
    assert broken.headline.startswith("Do not ship yet")
    stop = figures.reading(report(srm_flag=True, decision="stop"))
    assert stop.decision == "stop" and stop.srm_blocked
    msg = figures.srm_message(report(srm_flag=True)["srm"])
    assert "control 1,513 (expected 1,500)" in msg and "Do not ship" in msg


def test_significance_reads_the_sequential_interval() -> None:
    assert figures.significance(entry()).label == "Significant: better"
    assert figures.significance(entry(seq=(-0.3, -0.01))) == figures.Significance("Significant: worse", "red")
    assert figures.significance(entry(seq=(-0.01, 0.3))).label == "Not significant"
    assert figures.significance(entry(status="zero_denominator")).label == "No result: no page views yet"


def test_results_rows_and_captions_are_the_json_formatted() -> None:
    r = report()
    rows = figures.results_rows(r)
    assert rows[0] == {
        "Metric": "Dwell time per view", "Variant": "armor", "control mean": "53.8 s", "Variant mean": "58.8 s",
        "Lift": "+9.4%", "95% CI": "+5.2% to +13.6%", "p-value": "<0.001", "p (adjusted)": "<0.001",
        "Sequential CI": "+2.9% to +16.0%", "Chance to win": ">99.9%", "Significance": "Significant: better",
        "CUPED": "off",
    }
    assert figures.metric_caption(r["results"][1], 0.05) == "95% CI +5.2% to +13.6% · p (adjusted) 0.672 · chance to win >99.9%"
    assert figures.ci_label(0.1) == "90% CI"


def test_overview_timeseries_segments() -> None:
    r = report()
    def exp(key: str, status: str, spec: dict) -> ExperimentPublic:
        return ExperimentPublic(key=key, status=status, bucket_version=1, effective_seed="s", created_at="t",
                                updated_at="t", started_at=None, stopped_at=None, spec=spec)

    row = figures.overview_row(exp("x", "running", {"name": "X"}), r)
    assert row["Visitors"] == "control 1,513 · armor 1,487" and row["Total visitors"] == 3000
    assert row["SRM"] == "ok" and row["Verdict"] == "Ship"
    missing = figures.overview_row(exp("y", "draft", {}), None, problem="no data")
    assert missing["Verdict"] == "—" and missing["Headline"] == "no data"
    ts = figures.timeseries_rows(r, "dwell_time_per_view", "armor")
    assert ts == [{"date": "2026-11-16", "lift": 0.042, "ci_low": -0.08, "ci_high": 0.17, "seq_low": -0.23,
                   "seq_high": 0.32, "visitors": 311, "p_value": 0.49}]
    assert figures.timeseries_rows(r, "inquiry_rate", "armor") == []
    assert figures.segment_keys(r) == ["device"]
    assert figures.segment_rows(r, "device")[0]["Lift"] == "+9.1%"
    assert figures.segment_points(r, "device", "dwell_time_per_view", "armor")[0]["visitors"] == 1644


def test_power_defaults_and_the_inverse_mde() -> None:
    d = figures.power_defaults(report())
    assert d.from_data and d.baseline_mean == 53753.1 and "past data" in d.note
    none = figures.power_defaults({"power": {"status": "zero_denominator", "visitors_per_day": 10.0}})
    assert not none.from_data and none.baseline_mean is None and "no page views yet" in none.note
    assert figures.power_defaults(None).visitors_per_day is None
    # The inverse (days -> MDE) bisects over the plan it is given: here the sequential plan itself.
    def plan(mde: float) -> dict:
        return sequential_sample_size(53753.1, 28574.9, mde, visitors_per_day=1000.0).to_dict()

    for mde in (0.02, 0.05, 0.1):
        days = plan(mde)["days"]
        assert figures.mde_for_days(plan, days) == pytest.approx(mde, rel=0.005)
    assert figures.mde_for_days(plan, 1e-6) == 5.0  # nothing fits: the upper end


def test_roi_figures_histogram_tornado_and_assumptions() -> None:
    kf = {f.label: f for f in figures.roi_figures(ROI)}
    assert list(kf) == ["Expected NPV", "P(NPV > 0)", "Expected loss if shipped", "Break-even effect",
                        "Discounted payback", "Incremental profit / month", "ROI"]
    assert kf["Expected NPV"].value == fmt.money(ROI["npv"]["expected"]) and kf["Expected NPV"].value.startswith("$")
    lo, hi = ROI["npv"]["ci"]
    assert kf["Expected NPV"].caption == f"95% interval {fmt.money(lo)} to {fmt.money(hi)}"
    assert kf["P(NPV > 0)"].value == fmt.probability(ROI["prob_npv_positive"])
    assert kf["Expected loss if shipped"].value == fmt.money(ROI["expected_loss"])
    within = "within" if ROI["expected_loss"] <= ROI["max_expected_loss"] else "above"
    assert kf["Expected loss if shipped"].caption == f"{within} the tolerance of $2,000"
    assert kf["Break-even effect"].value == figures.small_pct(ROI["break_even_lift_rel"])
    assert (figures.small_pct(0.0022), figures.small_pct(0.052), figures.small_pct(None)) == ("+0.22%", "+5.2%", "—")
    assert kf["Break-even effect"].caption == f"{ROI['break_even_lift_abs'] * 1000:,.2f} per 1,000 visitors"
    pay = ROI["payback"]
    assert pay["status"] == "ok" and kf["Discounted payback"].value == fmt.months(pay["median_months"])
    assert kf["Discounted payback"].caption == (f"median · P(paid back within 12 months) = "
                                                f"{fmt.probability(pay['prob_within_horizon'])}")
    assert kf["Incremental profit / month"].value == fmt.money(ROI["incremental_profit_per_month"]["expected"])
    assert ROI["roi_pct"]["shown"] and kf["ROI"].value == fmt.roi_pct(ROI["roi_pct"]["expected"])
    assert figures.roi_pct_note(ROI) is None
    # No misleading figures: ROI % hidden (the note says why and gives the NPV range), payback not "0 months".
    small = {f.label: f for f in figures.roi_figures(ROI_SMALL)}
    assert "ROI" not in small
    note = figures.roi_pct_note(ROI_SMALL)
    assert note.startswith("ROI % not shown: the up-front investment ($0)")
    assert note.endswith(f"NPV 95% interval: {fmt.interval(ROI_SMALL['npv']['ci'], fmt.money)}.")
    assert small["Discounted payback"].value == "No up-front investment entered"
    assert "0 months" not in " ".join(f.value + f.caption for f in small.values())
    # Not within the horizon.
    never = {**ROI, "payback": {"status": "not_within_horizon", "median_months": None, "prob_within_horizon": 0.3,
                                "text": "x"}}
    assert figures.payback_figure(never).value == "Not within 12 months"
    # Break-even next to the measured and shrunk effects and the MDE.
    r = report()
    rows = figures.breakeven_rows({**r, "mde": 0.05}, ROI)
    e = ROI["effect"]
    assert [x["what"] for x in rows] == ["Measured effect (95% CI)", "Shrunk effect (95% interval)", "Break-even",
                                         "Experiment's MDE"]
    assert (rows[0]["low"], rows[0]["high"]) == tuple(e["ci_rel"]) and rows[3]["value"] == 0.05
    text = figures.breakeven_text({**r, "mde": 0.05}, ROI)
    assert text.startswith(f"Break-even {figures.small_pct(ROI['break_even_lift_rel'])}")
    assert f"measured effect {fmt.pct(e['lift_rel'])} (95% CI {fmt.interval(e['ci_rel'])})" in text
    assert text.endswith("experiment's MDE 5%")
    assert figures.mde_of({"power": {"mde": 0.03}}) == 0.03 and figures.mde_of({}, {"mde": {"rel": 0.1}}) == 0.1
    bins = figures.histogram_rows(ROI)
    assert len(bins) == 40 and sum(b["count"] for b in bins) == ROI["draws"]
    rows = figures.tornado_rows(ROI, top=5)
    assert len(rows) == 5 and rows[0]["name"] == ROI["sensitivity"]["items"][0]["name"] == "effect"
    assert rows[0]["label"] == "Effect (95% posterior interval)"
    assert any(x["label"].endswith(" (±25%)") for x in rows)  # fixed assumptions say their swing is a default
    costs = {x["Item"]: x["Amount"] for x in figures.cost_rows(ROI)}
    assert costs["Total up-front investment"] == fmt.money(ROI["costs"]["one_off_total"]) == "$20,689"
    assert costs["Engineering and integration"] == "$20,000"
    assert figures.roi_ready(ROI) and not figures.roi_ready({"status": "too_few_units", "reason": "x"})
    assert figures.assumptions_text(ROI).startswith(
        "Assumptions (likely values): 50,000 new visitors/month, inquiry-to-order 20%, margin $1,500/order, "
        f"one-off costs {fmt.money(ROI['costs']['one_off_total'])}, ")
    assert "horizon 12 months." in figures.assumptions_text(ROI)
    assert not hasattr(figures, "whatif_verdict")  # the verdict is the API's (the report's), never computed here


def test_dashboards_compute_nothing_the_api_serves() -> None:
    """No statistics, verdict or store code in the dashboards' process: figures come from the API."""
    import re
    from pathlib import Path

    root = Path(figures.__file__).resolve().parents[1]
    banned = re.compile(r"armor_ab\.(stats|roi\.verdict|reporting\.verdict|store)\b")
    offenders = [f"{p.relative_to(root)}:{i}" for p in root.rglob("*.py")
                 for i, line in enumerate(p.read_text().splitlines(), 1) if banned.search(line)]
    assert offenders == []


def test_assumption_fields_follow_the_model() -> None:
    fields = assumptions.fields()
    assert [f.name for f in fields] == list(RoiAssumptions.model_fields)
    by = {f.name: f for f in fields}
    assert by["horizon_months"].integer and by["horizon_months"].maximum == 120 and not by["horizon_months"].rangeable
    assert by["margin_per_order"].rangeable and by["margin_per_order"].group == "value"
    assert by["content_would_be_handwritten"].kind == "bool" and not by["material_investment"].rangeable
    assert by["inquiry_to_order"].label == "Inquiry-to-order rate" and by["inquiry_to_order"].maximum == 1
    assert list(assumptions.groups()) == ["value", "one_off", "monthly", "savings", "decision"]
    assert assumptions.defaults_from(None) == RoiAssumptions().model_dump(mode="json")
    defaults = assumptions.defaults_from({"pages": 80, "hourly_rate": 70})  # an old key is mapped
    assert defaults["pages"] == 80 and defaults["copywriting_hourly_rate"] == 70
    assert assumptions.changed({**defaults, "pages": 40}, defaults) == ["pages"]
    # Widgets: a likely value plus optional low/high; both set make a range, one alone is a problem.
    state = assumptions.widget_values({**defaults, "margin_per_order": {"low": 1000, "likely": 1500, "high": 2000}})
    assert (state["roi_margin_per_order"], state["roi_margin_per_order_low"]) == (1500.0, 1000.0)
    assert state["roi_pages_low"] is None and state["roi_horizon_months"] == 12
    values, problem = assumptions.collect(state)
    assert problem is None and values["margin_per_order"] == {"low": 1000.0, "likely": 1500.0, "high": 2000.0}
    ok, problem = assumptions.validate(values)
    assert problem is None and ok["margin_per_order"] == {"low": 1000.0, "likely": 1500.0, "high": 2000.0}
    _, problem = assumptions.collect({**state, "roi_pages_low": 10.0})
    assert problem == "Catalog pages: give both low and high, or neither"
    ok, problem = assumptions.validate({**defaults, "inquiry_to_order": 1.5})
    assert ok is None and problem == "Inquiry-to-order rate: must be <= 1, got 1.5"
    _, problem = assumptions.validate({**defaults, "pages": {"low": 50, "likely": 40, "high": 60}})
    assert problem.startswith("Catalog pages: a range needs low <= likely <= high")


# ---- charts and exports ------------------------------------------------------------------------------


def test_chart_builders_give_valid_vega_lite_with_the_data() -> None:
    r = report()
    built = [
        charts.timeseries_chart(figures.timeseries_rows(r, "dwell_time_per_view", "armor")),
        charts.histogram_chart(figures.histogram_rows(ROI), ROI["histogram"]["of"]),
        charts.tornado_chart(figures.tornado_rows(ROI), ROI["sensitivity"]["metric"]),
        charts.breakeven_chart(figures.breakeven_rows({"mde": 0.05}, ROI)),
        charts.segment_chart(figures.segment_points(r, "device", "dwell_time_per_view", "armor")),
        charts.power_curve([{"mde": 0.05, "days": 17.8, "total_visitors": 3550}], 0.05),
    ]
    for chart in built:
        assert isinstance(chart, alt.LayerChart)
        spec = chart.to_dict()  # validates against the Vega-Lite schema
        assert spec["layer"][0]["data"]["values"]
    hist = built[1].to_dict()["layer"][0]["data"]["values"]
    assert [b["count"] for b in hist] == ROI["histogram"]["counts"]


def test_csv_export_has_every_figure() -> None:
    ranged = compute_roi(RoiAssumptions(margin_per_order={"low": 1000, "likely": 1500, "high": 2000}),
                         EffectInput(0.05, 0.004, 0.002, window_days=3))
    data = export.roi_csv("x", ranged, verdict={"decision": "ship", "headline": "Ship it"}, whatif=True)
    rows = list(csv.reader(io.StringIO(data.decode())))
    assert rows[0] == ["section", "name", "value", "ci_low", "ci_high"]
    by = {(r[0], r[1]): r[2:] for r in rows[1:]}
    assert by[("experiment", "assumptions")][0] == "what-if (not saved)"
    assert float(by[("figure", "npv")][0]) == ranged["npv"]["expected"]
    assert [float(v) for v in by[("figure", "npv")][1:]] == ranged["npv"]["ci"]
    assert float(by[("figure", "expected_loss")][0]) == ranged["expected_loss"]
    assert float(by[("figure", "prob_npv_positive")][0]) == ranged["prob_npv_positive"]
    assert by[("figure", "payback_text")][0] == ranged["payback"]["text"]
    assert float(by[("cost (one-off)", "engineering")][0]) == 20_000.0
    assert float(by[("assumption", "pages")][0]) == 40.0
    assert [float(v) for v in by[("assumption", "margin_per_order")]] == [1500.0, 1000.0, 2000.0]
    assert float(by[("effect", "prior.sd_rel")][0]) == 0.1
    assert sum(1 for r in rows if r[0].startswith("sensitivity")) == len(ranged["sensitivity"]["items"])
    hidden = export.roi_csv("x", ROI_SMALL)
    assert b"roi_pct,not shown: investment_not_material" in hidden


def test_png_summary_is_one_landscape_page() -> None:
    png = export.summary_png("ARMOR pages", "x", ROI, {"decision": "keep_running", "headline": "Keep running: " * 12},
                             primary=entry(), whatif_changes=["pages"])
    assert export.summary_png("ARMOR pages", "x", ROI_SMALL, None)[:4] == b"\x89PNG"
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.size == (1600, 1000) and img.mode == "RGB"
    assert img.getpixel((80, 200)) == export.COLORS["keep_running"]  # the verdict band's colour
    assert len(img.getcolors(1_000_000)) > 50  # text, bars: not a blank page


# ---- guardrail checks and live health ----------------------------------------------------------------


def check(name: str, status: str, action: str = "block", reason: str = "r", evidence=()) -> dict:  # noqa: ANN001
    return {"check": name, "status": status, "action": action, "reason": reason, "evidence": list(evidence)}


def stored(item: str, status: str = "pending", verdict: str | None = "pass", failing=(), **extra) -> dict:  # noqa: ANN001
    return {"item_id": item, "variant": "armor", "status": status, "verdict": verdict, "failing": list(failing),
            "checks": None, "reviewed_by": None, "reviewed_key": None, "reviewed_at": None, **extra}


def test_evidence_spans_are_highlighted_in_the_escaped_text() -> None:
    assert checks.highlight("Ask *now*: 16 bar", [checks.Span(11, 17, "red")]) == (
        "Ask \\*now\\*: :red-background[16 bar]")
    # Markdown in the span and around it stays plain text; the colon before a directive is escaped.
    assert checks.highlight("Cost: $5 [x]", [checks.Span(6, 12, "orange")]) == (
        "Cost: :orange-background[\\$5 \\[x\\]]")
    assert checks.highlight("Cost:$5", [checks.Span(5, 7, "red")]) == "Cost\\::red-background[\\$5]"
    # Overlapping spans: the worse colour wins where they overlap.
    assert checks.highlight("abcdefgh", [checks.Span(0, 4, "orange"), checks.Span(2, 6, "red")]) == (
        ":orange-background[ab]:red-background[cdef]gh")
    # A span across a line break is marked line by line; an offset past the text is ignored here.
    assert checks.highlight("one\ntwo", [checks.Span(1, 6, "red"), checks.Span(40, 50, "red")]) == (
        "o:red-background[ne]\n:red-background[tw]o")
    # Offsets are into the page's text, its text segments joined: the second segment starts at 4.
    segments = [{"type": "text", "text": "Pump"}, {"type": "image", "url": "/v1/images/x"},
                {"type": "text", "text": " 7.5 kW _fast_"}]
    results = [check("spec_fidelity", "fail", evidence=[{"text": "7.5 kW", "start": 5, "end": 11}]),
               check("terms", "fail", "warn", evidence=[{"text": "Pump", "start": 0, "end": 4}]),
               check("modality", "pass", evidence=[{"text": "ignored", "start": 0, "end": 2}]),
               check("image_sanity", "warn", "block", evidence=[{"text": "picture 1 is blank", "image": 0,
                                                                  "score": 0.0}])]
    parts = checks.highlighted_segments(segments, results)
    assert parts[0] == {"type": "text", "markdown": ":orange-background[Pump]"}
    assert (parts[1]["type"], parts[1]["number"]) == ("image", 1)
    assert parts[2] == {"type": "text", "markdown": " :red-background[7.5 kW] \\_fast\\_"}
    assert checks.unplaced_spans(segments, results) == []
    assert checks.unplaced_spans([{"type": "text", "text": "Pump"}], results) == ["spec_fidelity: 7.5 kW"]
    notes = checks.picture_notes(results)
    assert notes == {1: [":orange-background[Picture 1] **image\\_sanity** (warn): picture 1 is blank (score 0.00)"]}
    assert checks.text_spans(results) == [checks.Span(5, 11, "red"), checks.Span(0, 4, "orange")]


def test_check_lines_filters_and_review_words() -> None:
    results = [check("terms", "pass", "warn", "no blocked term"),
               check("spec_fidelity", "fail", reason="says 16 bar; the catalog's pressure is 10 bar",
                     evidence=[{"text": "16 bar", "start": 52, "end": 58}])]
    lines = checks.check_lines(results)
    assert lines[0] == (":red-badge[fail] **spec\\_fidelity** · blocks the page · says 16 bar; the catalog's pressure "
                        "is 10 bar  \nEvidence: “16 bar” (characters 52 to 58)")
    assert lines[1] == ":green-badge[pass] **terms** · warns only · no blocked term"
    blocked = stored("valves-03", verdict="fail", failing=["spec_fidelity"], checks={"results": results})
    warned = stored("motors-03", verdict="warn", failing=["terms"])
    rows = [blocked, warned, stored("pumps-01", "approved"), stored("pumps-02"), stored("x", verdict=None)]
    assert checks.block_reason(blocked).startswith("Cannot be approved: it fails spec_fidelity, so it is never served")
    assert checks.block_reason(warned) is None
    assert checks.verdict_label("fail") == "checks: fail (blocked)" and checks.verdict_label(None) == "checks: not run"
    options = checks.filter_options(rows)
    assert list(options)[-2:] == ["failing:spec_fidelity", "failing:terms"]
    assert options["failing:terms"] == "failing: terms (1)"
    pick = lambda status, f: [r["item_id"] for r in rows if checks.row_matches(r, status, f)]  # noqa: E731
    assert pick("all", "failing:terms") == ["motors-03"]
    assert pick("pending", "verdict:pass") == ["pumps-02"] and pick("all", "verdict:none") == ["x"]
    assert pick("approved", checks.ANY) == ["pumps-01"]
    assert checks.status_counts(rows) == {"pending": 4, "approved": 1, "rejected": 0, "stale": 0, "blocked": 1}
    assert checks.passing_to_approve(rows) == 1
    assert checks.review_text(stored("a")) == "Pending · not reviewed yet"
    assert checks.review_text(stored("a", "approved", reviewed_by="guardrails")).startswith(
        "Approved automatically by the guardrails")
    assert checks.review_text(stored("a", "rejected", reviewed_by="ann", reviewed_key="k1",
                                     reviewed_at="2026-11-14T14:58:03+00:00")) == (
        "Rejected by ann (key k1) · 2026-11-14 14:58 UTC")
    assert checks.review_text(stored("a", "approved", reviewed_by="bob", reviewed_key="cli")) == (
        "Approved by bob from the command line")
    # The bulk approve, read against the pages before it.
    msg = checks.bulk_message({"changed": 2, "status": "approved", "skipped": 0}, rows)
    assert msg == ("Approved 2 pages that pass every check (1 already approved); skipped 3 pending pages that do not "
                   "pass (1 blocked (fail), 1 warn, 1 not checked): review those one by one.")
    assert checks.bulk_message({"changed": 1, "skipped": 0}, [stored("p")]) == (
        "Approved 1 page that pass every check; skipped 0 pending pages that do not pass.")


def test_health_in_words() -> None:
    assert health.readable("p95 is 1,152,243 s (> 300 s) over 9164 events, 0.25 > 0.2") == (
        "p95 is 1,152,243 s (> 300 s) over 9,164 events, 0.25 > 0.2")
    assert health.readable("paused since 2026-11-14T14:58:03+00:00: x") == "paused since 2026-11-14 14:58 UTC: x"
    ok = {"status": "ok", "paused": False, "problems": [], "content": {
        "by_status": {"pending": 3, "approved": 1}, "by_verdict": {"pass": 2, "warn": 1, "fail": 1, "unchecked": 0}}}
    b = health.box(ok)
    assert (b.level, health.markdown(b)) == ("success", "Health: ok, no problems.")
    critical = {**ok, "status": "critical", "problems": [
        {"code": "bot_share", "severity": "warn", "message": "20 of 25 visitors are bots"},
        {"code": "srm_mismatch", "severity": "critical", "message": "split 1200 vs 800"},
        {"code": "paused", "severity": "warn", "message": "paused since …"}],
        "paused": True, "paused_at": "2026-11-14T14:58:03+00:00", "pause_cause": "srm_mismatch: *split*"}
    b = health.box(critical, name="exp-1")
    assert b.level == "error"
    assert health.markdown(b) == (
        "`exp-1`: health: critical, 2 problems; paused since 2026-11-14 14:58 UTC: its ARMOR arms serve control's "
        "copy until someone resumes it (cause: srm\\_mismatch: \\*split\\*):\n"
        "- critical: split 1,200 vs 800\n- 20 of 25 visitors are bots")
    assert health.box({**ok, "status": "warn", "problems": critical["problems"][:1]}).level == "warning"
    assert health.status_label(critical) == "critical · paused"
    assert health.page_counts(ok) == {"Pending": 3, "Approved": 1, "Rejected": 0, "Stale": 0, "Blocked": 1}
    row = health.with_health({"Experiment": "x", "Status": "running", "Total visitors": 3, "Name": "X"}, ok)
    assert list(row) == ["Experiment", "Status", "Health", "Total visitors", "Pending", "Approved", "Rejected",
                         "Stale", "Blocked", "Name", "Problems"]
    missing = health.with_health({"Experiment": "x", "Status": "running", "Total visitors": 3}, None, "refused")
    assert (missing["Health"], missing["Problems"], missing["Blocked"]) == ("—", "refused", None)
    state = {"key": "x", "status": "running", "paused": True, "paused_at": "2026-11-14T14:58:03+00:00",
             "pause_cause": "wrong specs", "changed": True}
    assert health.paused_text(state) == ("Paused `x` at 2026-11-14 14:58 UTC: its ARMOR arms serve control's copy "
                                         "until someone resumes it (cause: wrong specs).")
    assert health.paused_text({**state, "changed": False}).endswith("nothing changed.")
    assert health.resumed_text({**state, "paused": False, "changed": True}).startswith("Resumed `x`")


# ---- API client, YAML helpers, CLI -------------------------------------------------------------------


def test_api_errors_keep_the_apis_code_and_field() -> None:
    body = {"error": {"code": "validation_error", "message": "bad", "field": "key"}}
    err = _error_from(httpx.Response(422, json=body))
    assert (err.status, err.code, err.message, err.field) == (422, "validation_error", "bad", "key")
    plain = _error_from(httpx.Response(500, text="boom"))
    assert (plain.code, plain.message) == ("http_error", "boom")
    with pytest.raises(ApiUnavailable, match="not reachable"):
        ApiClient(f"http://127.0.0.1:{free_port()}", "k", timeout=2).experiments()
    assert issubclass(ApiError, Exception)


def test_yaml_round_trip_of_the_demo_experiment() -> None:
    spec = load_experiment_file(DEMO_EXPERIMENT).model_dump(mode="json")
    text = specs.to_yaml(spec)
    assert "null" not in text
    again, problem = specs.validate_yaml(text)
    assert problem is None and again == spec
    assert specs.validate_yaml(specs.TEMPLATE)[1] is None
    broken = deepcopy(specs.TEMPLATE).replace("weight: 0.5, content: {source: catalog}", "weight: 0.7, content: {source: catalog}")
    assert "weights must sum to 1" in specs.validate_yaml(broken)[1]
    assert specs.validate_yaml("key: [")[1].startswith("invalid YAML")
    assert "`armor`" not in specs.summary(spec) and "catalog-interleaved" in specs.summary(spec)


def test_dashboard_command_line() -> None:
    cmd = streamlit_command(APP, host="127.0.0.1", port=8600, headless=True)
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4] == str(APP) and APP.is_file()
    assert "--server.headless" in cmd and cmd[cmd.index("--server.headless") + 1] == "true"
    assert cmd[cmd.index("--browser.gatherUsageStats") + 1] == "false"
    env = dashboard_env("http://api:1", no_auth=True, base={"PYTHONPATH": "/x"})
    assert env["ARMOR_AB_API"] == "http://api:1" and env["ARMOR_AB_DASHBOARD_NO_AUTH"] == "1"
    assert env["PYTHONPATH"] == "/x"  # armor_ab is installed: the dashboard needs no path of its own
    runner = CliRunner()
    help_text = runner.invoke(cli_app, ["dashboard", "--help"]).output
    assert "--no-auth" in help_text and "--api" in help_text and "--port" in help_text
    refused = runner.invoke(cli_app, ["dashboard", "--no-auth"], env={"ARMOR_AB_KEY": ""})
    assert refused.exit_code == 2 and "ARMOR_AB_KEY" in refused.output
