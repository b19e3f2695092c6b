"""The experiment report: every number the dashboard, the CLI and ``GET /v1/experiments/{key}/results`` show.

The report assembly layer: it reads the store (the experiment's record, one SQL query over its
events), runs the pure statistics of ``armor_ab.stats`` on the sufficient statistics, prices the
effect with ``armor_ab.roi``, and adds the verdict (``armor_ab.reporting.verdict``). One SQL query
(``armor_ab.stats.sql``) returns the sufficient statistics per variant, per variant and day, and per
segment value, and a small one over its exposures (``armor_ab.stats.pages``) which page the ARMOR
variants served; everything else here is arithmetic on a few hundred numbers, so a request costs one
scan of the experiment's events plus a few milliseconds of Python.

The report's schema is ``armor_ab.reporting.models.ExperimentReport``.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import duckdb

from armor_ab.reporting.verdict import decide_report
from armor_ab.roi.engine import EffectInput, EffectPrior, compute_roi
from armor_ab.stats.bayesian import Prior
from armor_ab.stats.comparison import Comparison, ComparisonOptions, compare, entry
from armor_ab.stats.dialects import SqlRunner
from armor_ab.stats.frequentist import welch
from armor_ab.stats.multiple import adjust
from armor_ab.stats.pages import ServedPages, load_served_pages
from armor_ab.stats.power import alphas, plan_for_mode
from armor_ab.stats.quality import quality_checks
from armor_ab.stats.sequential import sequential, sequential_guardrail
from armor_ab.stats.sql import ExperimentSums, load_sums
from armor_ab.stats.srm import sequential_srm
from armor_ab.stats.status import Status
from armor_ab.stats.suffstats import VisitorSums
from armor_ab.store.experiments import ExperimentRecord

# Where the events are read: a DuckDB connection (the store's), or a warehouse (armor_ab.store.warehouse:
# ClickHouse, chDB, Spark, a DuckDB file) that runs the same statistics queries in its own SQL dialect.
EventSource = duckdb.DuckDBPyConnection | SqlRunner
ROI_METRIC = "inquiries_per_visitor_window"  # inquiries within roi_window_days, mature visitors only
MAX_AGE_DAYS = 27

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


def _settings(record: ExperimentRecord, cuped: bool | None) -> ComparisonOptions:
    spec, a = record.spec, record.spec.analysis
    return ComparisonOptions(
        alpha=spec.alpha,
        cuped=a.cuped if cuped is None else cuped,
        sequential_tuning=a.sequential_tuning,
        prior=Prior(a.prior_mean, a.prior_stddev, a.prior_proper),
    )


def _treatments(record: ExperimentRecord) -> list[str]:
    spec = record.spec
    return [v.key for v in spec.variants if v.key != spec.control_key]


def _decision_alphas(record: ExperimentRecord) -> tuple[float, float]:
    a = record.spec.analysis
    return alphas(a.mode, record.spec.alpha, len(_treatments(record)), a.hybrid_sequential_share)


def _decision_block(comp: Comparison, record: ExperimentRecord) -> dict:
    """The intervals the verdict reads for a primary-metric entry, at the mode's adjusted alphas."""
    a_seq, a_fix = _decision_alphas(record)
    pair = comp.pair
    fixed = welch(pair, a_fix)
    # The confidence sequence reads only the estimates and their se, which do not depend on alpha.
    seq = sequential(comp.fixed, pair.control.n + pair.treatment.n, a_seq, record.spec.analysis.sequential_tuning)
    return {
        "mode": record.spec.analysis.mode,
        "sequential_alpha": a_seq,
        "sequential_ci_rel": list(seq.ci_rel) if seq.ci_rel else None,
        "fixed_alpha": a_fix,
        "fixed_ci_rel": list(fixed.ci_rel) if fixed.ci_rel else None,
    }


def _results(record: ExperimentRecord, sums: ExperimentSums, settings: ComparisonOptions) -> tuple[list[dict], dict]:
    """Entries per metric x treatment, with adjusted p-values, the decision intervals of the primary
    metric and the always-valid guardrail tests; also the comparisons."""
    spec = record.spec
    control = spec.control_key
    zero = VisitorSums.zero()
    margins = {g.metric: g.margin for g in spec.metrics.guardrails}
    guard_alpha = spec.alpha / max(1, len(_treatments(record)))
    results, comps = [], {}
    for metric in spec.metrics.all():
        for variant in _treatments(record):
            comp = compare(sums.totals.get(control, zero), sums.totals.get(variant, zero), metric, settings)
            comps[(metric, variant)] = comp
            item = entry(comp, variant=variant, baseline=control)
            if metric == spec.metrics.primary:
                item["decision"] = _decision_block(comp, record)
            if metric in margins:
                n_total = comp.pair.control.n + comp.pair.treatment.n
                item["guardrail"] = sequential_guardrail(
                    comp.fixed, n_total, margins[metric], guard_alpha, settings.sequential_tuning
                ).to_dict()
            results.append(item)
    adjusted = adjust([r["p_value"] for r in results], spec.analysis.correction)
    for item, p in zip(results, adjusted, strict=True):
        item["p_value_adjusted"] = p
    return results, comps


def _primary_variant(record: ExperimentRecord, comps: dict[tuple[str, str], Comparison]) -> str | None:
    """The treatment the verdict and ROI speak about: the best usable primary lift, else the first."""
    spec = record.spec
    treatments = _treatments(record)
    usable = [
        (comps[(spec.metrics.primary, v)].fixed.lift_rel, v)
        for v in treatments
        if comps[(spec.metrics.primary, v)].fixed.lift_rel is not None
    ]
    if usable:
        return max(usable)[1]
    return treatments[0] if treatments else None


def _timeseries(record: ExperimentRecord, sums: ExperimentSums, settings: ComparisonOptions) -> list[dict]:
    spec = record.spec
    control = spec.control_key
    base = sums.cumulative(control)[-MAX_TIMESERIES_DAYS:]
    out = []
    for variant in _treatments(record):
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


def _by_age(record: ExperimentRecord, sums: ExperimentSums, settings: ComparisonOptions) -> list[dict]:
    """Lift by days since first exposure (exploratory, fixed-horizon intervals, no CUPED): a novelty
    effect of new pictures shows as a lift that fades with age."""
    spec = record.spec
    control = spec.control_key
    plain = ComparisonOptions(settings.alpha, False, settings.sequential_tuning, settings.prior)
    ages = sums.ages
    out = []
    for variant in _treatments(record):
        for metric in spec.metrics.all():
            points = []
            for age in sorted(set(ages.get(control, {})) & set(ages.get(variant, {}))):
                comp = compare(ages[control][age], ages[variant][age], metric, plain, with_bayes=False)
                points.append(
                    {
                        "age_days": age,
                        "n": comp.pair.treatment.n,
                        "baseline_n": comp.pair.control.n,
                        "lift_rel": comp.fixed.lift_rel,
                        "ci_rel": list(comp.fixed.ci_rel) if comp.fixed.ci_rel else None,
                        "status": comp.status.value,
                    }
                )
            out.append({"metric": metric, "variant": variant, "points": points})
    return out


def _segments(record: ExperimentRecord, sums: ExperimentSums, settings: ComparisonOptions) -> list[dict]:
    """Per segment value: lift and CI per metric x treatment (exploratory: not multiplicity-adjusted)."""
    spec = record.spec
    control = spec.control_key
    zero = VisitorSums.zero()
    out = []
    for key, values in sums.segments.items():
        ranked = sorted(values.items(), key=lambda kv: (-sum(s.n for s in kv[1].values()), kv[0]))
        for value, by_variant in ranked[:MAX_SEGMENT_VALUES]:
            rows = []
            for metric in spec.metrics.all():
                for variant in _treatments(record):
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
    """The plan of the test the verdict runs (``analysis.mode``), the horizon it sets, and days left."""
    spec = record.spec
    a = spec.analysis
    a_seq, a_fix = _decision_alphas(record)
    out = {"mode": a.mode, "mde": spec.mde, "alpha": spec.alpha, "alpha_sequential": a_seq, "alpha_fixed": a_fix,
           "power": a.power, **baseline, **traffic}
    out.update(method=None, n_per_variant=None, total_visitors=None, planned_days=None, days_remaining=None,
               reached=False)
    if baseline["status"] != Status.OK.value:
        return out
    weights = {v.key: v.weight for v in spec.variants}
    w_c, w_t = weights[spec.control_key], weights[baseline["variant"]]
    if w_c <= 0 or w_t <= 0:
        return {**out, "status": Status.TOO_FEW_UNITS.value}
    plan = plan_for_mode(
        a.mode, baseline["baseline_mean"], baseline["baseline_sd"], spec.mde, alpha_sequential=a_seq,
        alpha_fixed=a_fix, power=a.power, tuning=a.sequential_tuning, control_share=w_c, treatment_share=w_t,
        visitors_per_day=traffic["visitors_per_day"],
    )
    out.update(status=plan.status.value, method=plan.method, n_per_variant=plan.n_per_variant,
               total_visitors=plan.total_visitors, planned_days=plan.days, effect_size=plan.effect_size)
    if plan.total_visitors is not None:
        out["reached"] = traffic["visitors"] >= plan.total_visitors
        if traffic["visitors_per_day"]:
            out["days_remaining"] = max(0.0, (plan.total_visitors - traffic["visitors"]) / traffic["visitors_per_day"])
    return out


def _load(con: EventSource, record: ExperimentRecord, start: datetime | None, end: datetime,
          segments: list[str]) -> ExperimentSums:
    spec = record.spec
    a = spec.analysis
    return load_sums(
        con, spec.key, start=start, end=end, cap_percentile=a.dwell_cap_percentile, pre_days=a.cuped_pre_days,
        segments=segments, variants=[v.key for v in spec.variants], caps=a.variable_caps(spec.metrics.all()),
        bot_user_agents=a.bots.user_agents, max_views_per_day=a.bots.max_views_per_day,
        conversion_window_days=a.conversion_window_days, roi_window_days=a.roi_window_days,
        max_age_days=MAX_AGE_DAYS, exposures=a.exposures,
    )


def armor_variants(record: ExperimentRecord) -> list[str]:
    """The variants whose pages the ARMOR model generates (``content.source: armor``)."""
    return [v.key for v in record.spec.variants if v.content.source == "armor"]


def _load_pages(con: EventSource, record: ExperimentRecord, start: datetime | None,
                end: datetime) -> ServedPages:
    """The pages the ARMOR variants' visitors were first served (page changes, fallbacks)."""
    a = record.spec.analysis
    return load_served_pages(con, record.spec.key, armor_variants(record), start=start, end=end,
                             bot_user_agents=a.bots.user_agents, exposures=a.exposures)


def primary_baseline(
    con: EventSource, record: ExperimentRecord, *, cuped: bool | None = None, now: datetime | None = None
) -> dict:
    """The primary metric's baseline (control mean, per-visitor sd) and traffic, for power planning."""
    now = now or datetime.now(UTC)
    spec = record.spec
    start, end = _window(record, now)
    settings = _settings(record, cuped)
    sums = _load(con, record, start, end, [])
    zero = VisitorSums.zero()
    comps = {
        (spec.metrics.primary, v): compare(sums.totals.get(spec.control_key, zero), sums.totals.get(v, zero),
                                           spec.metrics.primary, settings, with_bayes=False)
        for v in _treatments(record)
    }
    return {**_baseline(record, comps, _primary_variant(record, comps)), **_traffic(record, sums, start, end)}


def _roi(record: ExperimentRecord, sums: ExperimentSums, settings: ComparisonOptions, variant: str | None) -> dict | None:
    """The ROI block (None when the spec has none): the effect on inquiries per visitor within the
    ROI window, over visitors whose window has closed, priced by ``armor_ab.roi``."""
    spec = record.spec
    if spec.roi is None:
        return None
    window = spec.analysis.roi_window_days
    if variant is None:
        return {"status": Status.TOO_FEW_UNITS.value, "reason": "no treatment variant", "mde": spec.mde}
    zero = VisitorSums.zero()
    plain = ComparisonOptions(settings.alpha, False, settings.sequential_tuning, settings.prior)
    comp = compare(sums.totals.get(spec.control_key, zero), sums.totals.get(variant, zero), ROI_METRIC, plain,
                   with_bayes=False)
    f = comp.fixed
    if f.lift_abs is None or f.se_abs is None:
        reason = (f"no estimate of the effect on inquiries per visitor within {window} days of first exposure yet "
                  f"(needs visitors whose {window}-day window has closed; status {comp.status.value})")
        return {"status": comp.status.value, "reason": reason, "variant": variant, "mde": spec.mde}
    effect = EffectInput(
        baseline_inquiries_per_visitor=max(comp.pair.control.raw_mean, 0.0), lift_abs=f.lift_abs,
        lift_abs_se=f.se_abs, window_days=window,
    )
    a = spec.analysis
    prior = None if a.roi_prior_sd is None else EffectPrior(a.roi_prior_sd, "analysis.roi_prior_sd")
    return {"variant": variant, "mde": spec.mde, "mature_visitors": comp.pair.control.n + comp.pair.treatment.n,
            **compute_roi(spec.roi, effect, prior=prior)}


def experiment_report(
    con: EventSource,
    record: ExperimentRecord,
    *,
    cuped: bool | None = None,
    now: datetime | None = None,
) -> dict:
    """The whole analysis of one experiment as JSON-able data (no NaN: undefined is None plus a status).

    The window is [started_at, stopped_at or ``now``]; ``cuped`` overrides the spec's setting.
    """
    now = now or datetime.now(UTC)
    start, end = _window(record, now)
    sums = _load(con, record, start, end, report_segments(record))
    return report_from_sums(record, sums, cuped=cuped, now=now, pages=_load_pages(con, record, start, end))


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def experiment_report_json(
    con: EventSource, record: ExperimentRecord, *, cuped: bool | None = None
) -> bytes:
    """``experiment_report`` as compact JSON bytes: what the API serves (computed in its database process)."""
    return _encode(experiment_report(con, record, cuped=cuped)).encode()


def report_segments(record: ExperimentRecord) -> list[str]:
    """The segment keys reported: device and category always, then the spec's own."""
    return list(dict.fromkeys([*DEFAULT_SEGMENTS, *record.spec.segments]))


def _srm(record: ExperimentRecord, sums: ExperimentSums) -> dict:
    """The sequential SRM test over the configured variants, its running minimum over daily looks."""
    weights = {v.key: v.weight for v in record.spec.variants}
    series = {k: sums.cumulative(k) for k in weights}
    days = sums.days()
    looks = [{k: series[k][i][1].n for k in weights} for i in range(len(days))] if days else [dict.fromkeys(weights, 0)]
    return sequential_srm(looks, weights, record.spec.analysis.srm_alpha).to_dict()


def _needs_roi(results: list[dict], primary_metric: str, variant: str | None) -> bool:
    """Whether the verdict can read the ROI: only when some decision interval of the primary is above 0."""
    for e in results:
        if e["metric"] == primary_metric and e["variant"] == variant:
            d = e.get("decision") or {}
            return any(ci is not None and ci[0] > 0 for ci in (d.get("sequential_ci_rel"), d.get("fixed_ci_rel")))
    return False


def decision_inputs(
    record: ExperimentRecord, sums: ExperimentSums, *, cuped: bool | None = None, now: datetime | None = None,
    lazy_roi: bool = False, pages: ServedPages | None = None,
) -> dict:
    """Every part of the report the verdict reads, and the verdict.

    ``lazy_roi`` prices the effect only when the verdict can read it (the primary metric's decision
    interval is above 0): the error-rate simulations take thousands of looks and need no ROI at most.
    ``pages``: the ARMOR variants' served pages, for the ``page_changes`` and ``fallbacks`` checks
    (None: not checked).
    """
    now = now or datetime.now(UTC)
    spec = record.spec
    a = spec.analysis
    start, end = _window(record, now)
    settings = _settings(record, cuped)

    weights = {v.key: v.weight for v in spec.variants}
    visitors = {k: sums.totals[k].n if k in sums.totals else 0 for k in weights}
    unknown = dict(sums.unknown_variant_visitors)
    unknown.update({k: s.n for k, s in sums.totals.items() if k not in weights and s.n})
    srm = _srm(record, sums)

    results, comps = _results(record, sums, settings)
    primary_variant = _primary_variant(record, comps)
    traffic = _traffic(record, sums, start, end)
    power = _power(record, _baseline(record, comps, primary_variant), traffic)
    if lazy_roi and spec.roi is not None and not _needs_roi(results, spec.metrics.primary, primary_variant):
        roi: dict | None = {"status": "not_computed", "reason": "the verdict does not read it at this look"}
    else:
        roi = _roi(record, sums, settings, primary_variant)

    short = {k: n for k, n in visitors.items() if n < a.min_visitors_per_variant}
    runtime = {
        "days_elapsed": traffic["days_elapsed"],
        "min_runtime_days": a.min_runtime_days,
        "min_visitors_per_variant": a.min_visitors_per_variant,
        "min_sample_met": not short,
        "min_sample_words": (f"the minimum sample is {a.min_visitors_per_variant:,} visitors per variant ("
                             + ", ".join(f"{k} {n:,}" for k, n in sorted(short.items())) + ")") if short else "",
    }
    checks = quality_checks(
        srm=srm, included_visitors=sum(visitors.values()), unknown=unknown,
        multi=sums.multi_variant_visitors, bots=dict(sums.bot_visitors),
        caps=dict(sums.caps), multi_warn_share=a.multi_exposure_warn_share,
        days_elapsed=traffic["days_elapsed"], min_runtime_days=a.min_runtime_days,
        visitors_per_variant=visitors, min_visitors_per_variant=a.min_visitors_per_variant,
        paused=sums.paused_visitors, pages=pages,
    )
    a_seq, a_fix = _decision_alphas(record)
    report = {
        "experiment": spec.key,
        "alpha": spec.alpha,
        "mde": spec.mde,
        "analysis": {
            "mode": a.mode,
            "alpha_sequential": a_seq,
            "alpha_fixed": a_fix,
            "treatments": len(_treatments(record)),
            "sequential_tuning": a.sequential_tuning,
        },
        "control": spec.control_key,
        "primary_metric": spec.metrics.primary,
        "primary_variant": primary_variant,
        "data_quality": {
            "clean": all(c.status.value != "fail" for c in checks),
            "checks": [c.to_dict() for c in checks],
        },
        "runtime": runtime,
        "visitors": visitors,
        "unknown_variant_visitors": unknown,
        "srm": srm,
        "results": results,
        "power": power,
        "roi": roi,
    }
    report["verdict"] = decide_report(report) if primary_variant is not None else None
    return report


def report_from_sums(
    record: ExperimentRecord, sums: ExperimentSums, *, cuped: bool | None = None, now: datetime | None = None,
    pages: ServedPages | None = None,
) -> dict:
    """The report from sufficient statistics computed elsewhere (the SQL query, or a benchmark's baseline);
    ``pages``: the ARMOR variants' served pages (``load_served_pages``; None: not checked)."""
    now = now or datetime.now(UTC)
    spec = record.spec
    a = spec.analysis
    start, end = _window(record, now)
    settings = _settings(record, cuped)
    core = decision_inputs(record, sums, cuped=cuped, now=now, pages=pages)
    verdict = core.pop("verdict")
    unknown = core.pop("unknown_variant_visitors")
    return {
        "experiment": spec.key,
        "name": spec.name,
        "status": record.status,
        "generated_at": now.isoformat(),
        "window": {"start": _iso(start), "end": _iso(end)},
        **core,
        "cuped_requested": settings.cuped,
        "correction": a.correction,
        "data": {
            "dwell_cap_ms": sums.cap,
            "dwell_cap_percentile": a.dwell_cap_percentile,
            "caps": dict(sums.caps),
            "multi_variant_visitors": sums.multi_variant_visitors,
            "unknown_variant_visitors": unknown,
            "bot_visitors": dict(sums.bot_visitors),
            "paused_visitors": dict(sums.paused_visitors),
            "served_pages": pages.to_dict() if pages is not None else None,
            "exposures": a.exposures,
            "client_only_visitors": sums.client_only_visitors,
            "deduplicated_in_sql": sums.deduplicated_in_sql,
            "conversion_window_days": a.conversion_window_days,
            "roi_window_days": a.roi_window_days,
            "days": len(sums.days()),
        },
        "timeseries": _timeseries(record, sums, settings),
        "by_age": _by_age(record, sums, settings),
        "segments": _segments(record, sums, settings),
        "verdict": verdict,
    }


def past_roi_effects(con: EventSource, records: list[ExperimentRecord]) -> list[dict]:
    """The measured relative effect on windowed inquiries (and its se) of each stopped experiment
    with a roi block: what ``armor_ab.roi.shrinkage.prior_from_history`` estimates the prior from."""
    out = []
    for record in records:
        spec = record.spec
        if record.status != "stopped" or spec.roi is None or record.started_at is None:
            continue
        start, end = _window(record, record.stopped_at or datetime.now(UTC))
        sums = _load(con, record, start, end, [])
        settings = ComparisonOptions(spec.alpha, False, spec.analysis.sequential_tuning)
        comps = {
            (spec.metrics.primary, v): compare(sums.totals.get(spec.control_key, VisitorSums.zero()),
                                               sums.totals.get(v, VisitorSums.zero()), spec.metrics.primary,
                                               settings, with_bayes=False)
            for v in _treatments(record)
        }
        variant = _primary_variant(record, comps)
        if variant is None:
            continue
        f = compare(sums.totals.get(spec.control_key, VisitorSums.zero()), sums.totals.get(variant, VisitorSums.zero()),
                    ROI_METRIC, settings, with_bayes=False).fixed
        if f.lift_rel is not None and f.se_rel is not None:
            out.append({"experiment": spec.key, "variant": variant, "lift_rel": f.lift_rel, "se_rel": f.se_rel})
    return out
