"""The experiment report: every number the dashboard, the CLI and ``GET /v1/experiments/{key}/results`` show.

One SQL query (``armor_ab.stats.sql``) returns the sufficient statistics per variant, per variant
and day, and per segment value; everything else here is arithmetic on a few hundred numbers, so a
request costs one scan of the experiment's events plus a few milliseconds of Python.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import duckdb

from armor_ab.stats.analysis import Comparison, Settings, compare, entry
from armor_ab.stats.bayesian import Prior
from armor_ab.stats.frequentist import non_inferiority
from armor_ab.stats.multiple import adjust
from armor_ab.stats.power import sample_size
from armor_ab.stats.sql import ExperimentSums, load_sums
from armor_ab.stats.srm import srm_test
from armor_ab.stats.status import Status
from armor_ab.stats.suffstats import VisitorSums
from armor_ab.store.experiments import ExperimentRecord

try:  # the ROI and verdict live in armor_ab.roi; the statistics do not need them to run
    from armor_ab.roi.engine import EffectInput, compute_roi
    from armor_ab.roi.verdict import decide
except ImportError:  # pragma: no cover - only while that package is being written
    EffectInput = compute_roi = decide = None  # type: ignore[assignment,misc]

DEFAULT_SEGMENTS = ("device", "category")
MAX_SEGMENT_VALUES = 20  # per segment key, by visitors: keeps the report (and the work) bounded
MAX_TIMESERIES_DAYS = 400


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts is not None else None


def _window(record: ExperimentRecord, now: datetime) -> tuple[datetime | None, datetime]:
    if now.tzinfo is None:
        raise ValueError(f"now must be timezone-aware, got {now!r}")
    end = now if record.stopped_at is None else min(record.stopped_at, now)
    start = record.started_at
    if start is not None and start > end:  # asked about a time before the start: an empty window
        end = start
    return start, end


def _settings(record: ExperimentRecord, cuped: bool | None) -> Settings:
    spec, a = record.spec, record.spec.analysis
    return Settings(
        alpha=spec.alpha,
        cuped=a.cuped if cuped is None else cuped,
        sequential_tuning=a.sequential_tuning,
        prior=Prior(a.prior_mean, a.prior_stddev, a.prior_proper),
    )


def _results(record: ExperimentRecord, sums: ExperimentSums, settings: Settings) -> tuple[list[dict], dict]:
    """Entries per metric x treatment, with adjusted p-values and guardrail tests; also the comparisons."""
    spec = record.spec
    control = spec.control_key
    treatments = [v.key for v in spec.variants if v.key != control]
    zero = VisitorSums.zero()
    margins = {g.metric: g.margin for g in spec.metrics.guardrails}
    results, comps = [], {}
    for metric in spec.metrics.all():
        for variant in treatments:
            comp = compare(sums.totals.get(control, zero), sums.totals.get(variant, zero), metric, settings)
            comps[(metric, variant)] = comp
            item = entry(comp, variant=variant, baseline=control)
            if metric in margins:
                item["guardrail"] = non_inferiority(comp.fixed, margins[metric], spec.alpha).to_dict()
            results.append(item)
    adjusted = adjust([r["p_value"] for r in results], spec.analysis.correction)
    for item, p in zip(results, adjusted, strict=True):
        item["p_value_adjusted"] = p
    return results, comps


def _primary_variant(record: ExperimentRecord, comps: dict[tuple[str, str], Comparison]) -> str | None:
    """The treatment the verdict and ROI speak about: the best usable primary lift, else the first."""
    spec = record.spec
    treatments = [v.key for v in spec.variants if v.key != spec.control_key]
    usable = [
        (comps[(spec.metrics.primary, v)].fixed.lift_rel, v)
        for v in treatments
        if comps[(spec.metrics.primary, v)].fixed.lift_rel is not None
    ]
    if usable:
        return max(usable)[1]
    return treatments[0] if treatments else None


def _timeseries(record: ExperimentRecord, sums: ExperimentSums, settings: Settings) -> list[dict]:
    spec = record.spec
    control = spec.control_key
    base = sums.cumulative(control)[-MAX_TIMESERIES_DAYS:]
    out = []
    for variant in (v.key for v in spec.variants if v.key != control):
        cum = sums.cumulative(variant)[-MAX_TIMESERIES_DAYS:]
        for metric in spec.metrics.all():
            points = []
            for (day, c), (_, t) in zip(base, cum, strict=True):
                comp = compare(c, t, metric, settings, with_bayes=False)
                points.append(
                    {
                        "date": day.isoformat(),
                        "n": comp.pair.treatment.n,
                        "baseline_n": comp.pair.control.n,
                        "lift_rel": comp.fixed.lift_rel,
                        "ci_rel": list(comp.fixed.ci_rel) if comp.fixed.ci_rel else None,
                        "sequential_ci_rel": list(comp.sequential.ci_rel) if comp.sequential.ci_rel else None,
                        "p_value": comp.fixed.p_value,
                        "sequential_p_value": comp.sequential.p_value,
                        "status": comp.status.value,
                    }
                )
            out.append({"metric": metric, "variant": variant, "points": points})
    return out


def _segments(record: ExperimentRecord, sums: ExperimentSums, settings: Settings) -> list[dict]:
    """Per segment value: lift and CI per metric x treatment (exploratory: not multiplicity-adjusted)."""
    spec = record.spec
    control = spec.control_key
    treatments = [v.key for v in spec.variants if v.key != control]
    zero = VisitorSums.zero()
    out = []
    for key, values in sums.segments.items():
        ranked = sorted(values.items(), key=lambda kv: (-sum(s.n for s in kv[1].values()), kv[0]))
        for value, by_variant in ranked[:MAX_SEGMENT_VALUES]:
            rows = []
            for metric in spec.metrics.all():
                for variant in treatments:
                    comp = compare(by_variant.get(control, zero), by_variant.get(variant, zero), metric, settings,
                                   with_bayes=False)
                    rows.append(
                        {
                            "metric": metric,
                            "variant": variant,
                            "n": comp.pair.treatment.n,
                            "baseline_n": comp.pair.control.n,
                            "lift_abs": comp.fixed.lift_abs,
                            "lift_rel": comp.fixed.lift_rel,
                            "ci_rel": list(comp.fixed.ci_rel) if comp.fixed.ci_rel else None,
                            "p_value": comp.fixed.p_value,
                            "status": comp.status.value,
                        }
                    )
            out.append(
                {
                    "segment": key,
                    "value": value,
                    "visitors": {v: s.n for v, s in sorted(by_variant.items())},
                    "results": rows,
                }
            )
        if len(ranked) > MAX_SEGMENT_VALUES:
            out.append({"segment": key, "value": None, "omitted_values": len(ranked) - MAX_SEGMENT_VALUES})
    return out


def _traffic(record: ExperimentRecord, sums: ExperimentSums, start: datetime | None, end: datetime) -> dict:
    """Visitors so far (configured variants), days elapsed and visitors per day."""
    weights = {v.key: v.weight for v in record.spec.variants}
    total = sum(s.n for v, s in sums.totals.items() if v in weights)
    if start is not None:
        elapsed = max((end - start).total_seconds() / 86_400.0, 0.0)
    else:
        elapsed = float(len(sums.days()))
    return {"visitors": total, "days_elapsed": elapsed, "visitors_per_day": total / elapsed if elapsed > 0 else None}


def _baseline(record: ExperimentRecord, comps: dict, variant: str | None) -> dict:
    """Control mean and per-visitor sd of the primary metric, as the analysis estimates them."""
    metric = record.spec.metrics.primary
    if variant is None:
        return {"status": Status.TOO_FEW_UNITS.value, "metric": metric, "variant": None}
    pair = comps[(metric, variant)].pair
    if pair.status is not Status.OK:
        return {"status": pair.status.value, "metric": metric, "variant": variant}
    c = pair.control
    # Per-visitor sd of the (CUPED-adjusted, delta-method) estimate: what the test's variance scales with.
    sd = math.sqrt(c.var * c.n)
    return {"status": Status.OK.value, "metric": metric, "variant": variant, "baseline_mean": c.mean, "baseline_sd": sd}


def _power(record: ExperimentRecord, baseline: dict, traffic: dict) -> dict:
    """Planned sample size from the baseline, and days left at the current traffic."""
    spec = record.spec
    out = {"mde": spec.mde, "alpha": spec.alpha, "power": spec.analysis.power, **baseline, **traffic}
    out.update(n_per_variant=None, total_visitors=None, planned_days=None, days_remaining=None)
    if baseline["status"] != Status.OK.value:
        return out
    weights = {v.key: v.weight for v in spec.variants}
    w_c, w_t = weights[spec.control_key], weights[baseline["variant"]]
    if w_c <= 0 or w_t <= 0:
        return {**out, "status": Status.TOO_FEW_UNITS.value}
    plan = sample_size(
        baseline["baseline_mean"], baseline["baseline_sd"], spec.mde, alpha=spec.alpha, power=spec.analysis.power,
        variants=len(spec.variants), visitors_per_day=traffic["visitors_per_day"], control_share=w_c, ratio=w_t / w_c,
    )
    out.update(status=plan.status.value, n_per_variant=plan.n_per_variant, total_visitors=plan.total_visitors,
               planned_days=plan.days, effect_size=plan.effect_size)
    if plan.total_visitors is not None and traffic["visitors_per_day"]:
        out["days_remaining"] = max(0.0, (plan.total_visitors - traffic["visitors"]) / traffic["visitors_per_day"])
    return out


def primary_baseline(
    con: duckdb.DuckDBPyConnection, record: ExperimentRecord, *, cuped: bool | None = None, now: datetime | None = None
) -> dict:
    """The primary metric's baseline (control mean, per-visitor sd) and traffic, for power planning."""
    now = now or datetime.now(UTC)
    spec = record.spec
    start, end = _window(record, now)
    settings = _settings(record, cuped)
    sums = load_sums(con, spec.key, start=start, end=end, cap_percentile=spec.analysis.dwell_cap_percentile,
                     pre_days=spec.analysis.cuped_pre_days)
    zero = VisitorSums.zero()
    comps = {
        (spec.metrics.primary, v.key): compare(sums.totals.get(spec.control_key, zero), sums.totals.get(v.key, zero),
                                               spec.metrics.primary, settings, with_bayes=False)
        for v in spec.variants if v.key != spec.control_key
    }
    return {**_baseline(record, comps, _primary_variant(record, comps)), **_traffic(record, sums, start, end)}


def _roi(
    record: ExperimentRecord, sums: ExperimentSums, settings: Settings, variant: str | None
) -> tuple[dict | None, bool]:
    """(the ROI block, whether it came from compute_roi); None when the spec has no roi block."""
    spec = record.spec
    if spec.roi is None:
        return None, False
    if compute_roi is None or EffectInput is None:
        return {"status": "unavailable", "reason": "armor_ab.roi.engine is not installed"}, False
    if variant is None:
        return {"status": Status.TOO_FEW_UNITS.value, "reason": "no treatment variant"}, False
    zero = VisitorSums.zero()
    comp = compare(sums.totals.get(spec.control_key, zero), sums.totals.get(variant, zero), "inquiries_per_visitor",
                   settings, with_bayes=False)
    f = comp.fixed
    if f.lift_abs is None or f.se_abs is None:
        return {"status": comp.status.value, "reason": "no estimate of the effect on inquiries per visitor yet"}, False
    effect = EffectInput(
        baseline_inquiries_per_visitor=max(comp.pair.control.raw_mean, 0.0), lift_abs=f.lift_abs, lift_abs_se=f.se_abs
    )
    return {"variant": variant, **compute_roi(spec.roi, effect)}, True


def experiment_report(
    con: duckdb.DuckDBPyConnection,
    record: ExperimentRecord,
    *,
    cuped: bool | None = None,
    now: datetime | None = None,
) -> dict:
    """The whole analysis of one experiment as JSON-able data (no NaN: undefined is None plus a status).

    The window is [started_at, stopped_at or ``now``]; ``cuped`` overrides the spec's setting.
    """
    now = now or datetime.now(UTC)
    spec = record.spec
    a = spec.analysis
    start, end = _window(record, now)
    sums = load_sums(
        con, spec.key, start=start, end=end, cap_percentile=a.dwell_cap_percentile, pre_days=a.cuped_pre_days,
        segments=report_segments(record),
    )
    return report_from_sums(record, sums, cuped=cuped, now=now)


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def experiment_report_json(
    con: duckdb.DuckDBPyConnection, record: ExperimentRecord, *, cuped: bool | None = None
) -> bytes:
    """``experiment_report`` as compact JSON bytes: what the API serves (computed in its database process)."""
    return _encode(experiment_report(con, record, cuped=cuped)).encode()


def report_segments(record: ExperimentRecord) -> list[str]:
    """The segment keys reported: device and category always, then the spec's own."""
    return list(dict.fromkeys([*DEFAULT_SEGMENTS, *record.spec.segments]))


def report_from_sums(
    record: ExperimentRecord, sums: ExperimentSums, *, cuped: bool | None = None, now: datetime | None = None
) -> dict:
    """The report from sufficient statistics computed elsewhere (the SQL query, or a benchmark's baseline)."""
    now = now or datetime.now(UTC)
    spec = record.spec
    a = spec.analysis
    start, end = _window(record, now)
    settings = _settings(record, cuped)

    weights = {v.key: v.weight for v in spec.variants}
    visitors = {k: sums.totals[k].n if k in sums.totals else 0 for k in weights}
    unknown = {k: s.n for k, s in sums.totals.items() if k not in weights}
    srm = srm_test({**visitors, **unknown}, weights)

    results, comps = _results(record, sums, settings)
    primary_variant = _primary_variant(record, comps)
    power = _power(record, _baseline(record, comps, primary_variant), _traffic(record, sums, start, end))
    roi, roi_computed = _roi(record, sums, settings, primary_variant)

    verdict: dict | None
    primary = next(
        (r for r in results if r["metric"] == spec.metrics.primary and r["variant"] == primary_variant), None
    )
    if decide is None:
        verdict = {"status": "unavailable", "reason": "armor_ab.roi.verdict is not installed"}
    elif primary is None:
        verdict = None
    else:
        guardrails = [r for r in results if "guardrail" in r and r["variant"] == primary_variant]
        verdict = decide(
            primary=primary,
            guardrails=guardrails,
            srm=srm,
            roi=roi if roi_computed else None,
            days_remaining=power.get("days_remaining"),
            alpha=spec.alpha,
        )

    return {
        "experiment": spec.key,
        "name": spec.name,
        "status": record.status,
        "generated_at": now.isoformat(),
        "window": {"start": _iso(start), "end": _iso(end)},
        "alpha": spec.alpha,
        "control": spec.control_key,
        "primary_metric": spec.metrics.primary,
        "primary_variant": primary_variant,
        "cuped_requested": settings.cuped,
        "correction": a.correction,
        "data": {
            "dwell_cap_ms": sums.cap,
            "dwell_cap_percentile": a.dwell_cap_percentile,
            "multi_variant_visitors": sums.multi_variant_visitors,
            "unknown_variant_visitors": unknown,
            "deduplicated_in_sql": sums.deduplicated_in_sql,
            "days": len(sums.days()),
        },
        "visitors": visitors,
        "srm": srm,
        "results": results,
        "timeseries": _timeseries(record, sums, settings),
        "segments": _segments(record, sums, settings),
        "power": power,
        "roi": roi,
        "verdict": verdict,
    }
