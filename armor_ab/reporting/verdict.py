"""Ship / keep running / stop, from the report JSON alone, in plain words for executives.

``decide_report(report)`` reads only the report's own fields (results, guardrails, power plan,
data quality, runtime, ROI), so anyone can reproduce a verdict from the JSON the API served, and
a what-if (the ROI page) is ``decide_report({**report, "roi": edited})``.

The rules, in the order they are applied (docs/statistics.md has the error rates they achieve):

1. No usable primary result: keep running (stop once the maximum duration is reached).
2. Minimum runtime and minimum sample not met: keep running, whatever the data say so far.
3. A guardrail breached (its always-valid upper bound below -margin): stop, whatever the primary says.
4. The decision interval of the primary metric (the analysis mode picks it: the always-valid
   interval in ``sequential`` mode and before the horizon in ``hybrid``; the fixed-horizon
   interval at and after the planned horizon in ``fixed`` and ``hybrid``; before the horizon
   ``fixed`` mode waits) lies below 0: stop, harm.
5. It lies above 0: ship when data quality is clean (no SRM), every guardrail passed, and, with
   an ``roi`` block, expected NPV > 0 and the expected loss of shipping is within the tolerance.
   Clearly unprofitable (P(NPV > 0) < 0.2): stop. Otherwise keep running until the maximum
   duration, then stop with the reason.
6. Futility: the always-valid interval excludes effects of MDE size and more (upper bound < MDE):
   stop, no effect of the size we planned for.
7. The maximum duration under the plan reached without a clear effect: stop.
8. Otherwise keep running, with the days the plan still needs.

A sample ratio mismatch never lets "ship" through; a stop stays a stop and says to investigate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from armor_ab.reporting import wording as w

NOT_PAYING_PROB = 0.2  # stop a real effect when at least 80% sure it does not pay

Decision = Literal["ship", "keep_running", "stop"]
# The stable reason codes (``Verdict.reason``), one per rule above that can end the decision.
ReasonCode = Literal[
    "ship",  # rule 5: ship
    "no_usable_result",  # rule 1, or no interval of the mode's kind yet
    "min_runtime",  # rule 2: minimum runtime or sample not met
    "guardrail",  # rule 3: a guardrail breached
    "fixed_horizon",  # fixed mode before the planned horizon
    "harm",  # rule 4
    "data_quality",  # rule 5: a data-quality check fails
    "guardrail_pending",  # rule 5: a guardrail not yet shown safe
    "guardrail_not_shown",  # rule 5: ... and the maximum duration reached
    "roi_unavailable",  # rule 5: the ROI cannot be assessed
    "does_not_pay",  # rule 5: clearly unprofitable
    "roi_unclear",  # rule 5: NPV not above 0 or the expected loss above the tolerance
    "futility",  # rule 6
    "max_duration",  # rule 7
    "not_conclusive",  # rule 8
]


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reason: ReasonCode  # a stable code: ship, min_runtime, harm, guardrail, futility, max_duration, ...
    headline: str
    reasons: tuple[str, ...]
    days_remaining: float | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "decision": self.decision,
            "reason": self.reason,
            "headline": self.headline,
            "reasons": list(self.reasons),
            "days_remaining": self.days_remaining,
        }


def _pair(ci: object) -> tuple[float, float] | None:
    """A finite ordered pair, or None."""
    if not isinstance(ci, list | tuple) or len(ci) != 2:
        return None
    lo, hi = ci
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in (lo, hi)):
        return None
    return (float(lo), float(hi)) if lo <= hi else None


def _num(x: object) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) else None


@dataclass(frozen=True)
class _Facts:
    """What the rules read, pulled out of the report once."""

    mode: str
    metric: str  # the primary metric, in words
    who: str
    lift: float | None
    seq_ci: tuple[float, float] | None
    seq_alpha: float
    fixed_ci: tuple[float, float] | None
    fixed_alpha: float
    status: str
    mde: float | None
    reached: bool  # the planned horizon (maximum duration) is reached
    days_remaining: float | None
    runtime_days: float
    min_runtime_days: float
    min_sample_met: bool
    min_sample_words: str
    guardrails: list[dict]
    srm: dict
    quality_fail: list[dict]
    roi: dict | None
    roi_block: bool


def _facts(report: dict) -> _Facts:
    analysis = report.get("analysis") or {}
    mode = analysis.get("mode", "sequential")
    if mode not in ("sequential", "fixed", "hybrid"):
        raise ValueError(f"analysis.mode must be sequential, fixed or hybrid, got {mode!r}")
    primary_metric, variant = report.get("primary_metric"), report.get("primary_variant")
    primary = next(
        (e for e in report.get("results") or [] if e.get("metric") == primary_metric and e.get("variant") == variant),
        {},
    )
    dec = primary.get("decision") or {}
    power = report.get("power") or {}
    runtime = report.get("runtime") or {}
    days_remaining = _num(power.get("days_remaining"))
    guardrails = [e for e in report.get("results") or [] if "guardrail" in e and e.get("variant") == variant]
    quality = report.get("data_quality") or {}
    roi = report.get("roi")
    return _Facts(
        mode=mode,
        metric=w.metric_words(primary_metric),
        who=w.subject(variant),
        lift=_num(primary.get("lift_rel")),
        seq_ci=_pair(dec.get("sequential_ci_rel")),
        seq_alpha=float(dec.get("sequential_alpha") or report.get("alpha") or 0.05),
        fixed_ci=_pair(dec.get("fixed_ci_rel")),
        fixed_alpha=float(dec.get("fixed_alpha") or report.get("alpha") or 0.05),
        status=str(primary.get("status")),
        mde=_num(power.get("mde", report.get("mde"))),
        reached=bool(power.get("reached")),
        days_remaining=max(0.0, days_remaining) if days_remaining is not None else None,
        runtime_days=float(_num(runtime.get("days_elapsed")) or 0.0),
        min_runtime_days=float(_num(runtime.get("min_runtime_days")) or 0.0),
        min_sample_met=bool(runtime.get("min_sample_met", True)),
        min_sample_words=str(runtime.get("min_sample_words") or ""),
        guardrails=guardrails,
        srm=report.get("srm") or {},
        quality_fail=[c for c in quality.get("checks") or [] if c.get("status") == "fail"],
        roi=roi if isinstance(roi, dict) else None,
        roi_block=roi is not None,
    )


def _ci_words(ci: tuple[float, float], alpha: float, kind: str) -> str:
    label = "always-valid" if kind == "sequential" else "fixed-horizon"
    return f"{label} {w.ci_words(ci, alpha)}"


def _days(f: _Facts, days: float | None = None) -> str:
    return w.days(f.days_remaining if days is None else days)


def _guard(entry: dict) -> tuple[str, str]:
    """(state, reason) of one guardrail entry: passed | breached | pending | unavailable."""
    g = entry.get("guardrail") or {}
    if "state" not in g:
        raise ValueError(f"guardrail entry for {entry.get('metric')!r} lacks guardrail.state")
    name = w.metric_words(entry.get("metric"))
    margin = _num(g.get("margin"))
    tol = f"the {margin * 100:g}% tolerance" if margin is not None else "its tolerance"
    lo, hi = _num(g.get("sequential_lower")), _num(g.get("sequential_upper"))
    bounds = f" (always-valid interval {w.pct(lo)} to {w.pct(hi)})" if lo is not None and hi is not None else ""
    state = g["state"]
    if state == "passed":
        return state, f"Guardrail {name}: within {tol}{bounds}."
    if state == "breached":
        return state, f"Guardrail {name}: worse than {tol}{bounds}."
    if state == "pending":
        return state, f"Guardrail {name}: not yet shown within {tol}{bounds}."
    return "unavailable", f"Guardrail {name}: no usable result yet (status {entry.get('status')!r})."


def _roi_facts(roi: dict) -> tuple[float | None, float | None, float | None, float | None]:
    npv = _num((roi.get("npv") or {}).get("expected"))
    return npv, _num(roi.get("prob_npv_positive")), _num(roi.get("expected_loss")), _num(roi.get("max_expected_loss"))


def _roi_words(roi: dict) -> str:
    npv, p, loss, _ = _roi_facts(roi)
    horizon = roi.get("horizon_months", 12)
    parts = []
    if npv is not None:
        parts.append(f"expected {horizon}-month NPV {w.money(npv)}")
    if p is not None:
        parts.append(f"P(NPV > 0) {w.probability(p)}")
    if loss is not None:
        parts.append(f"expected loss if wrong {w.money(loss)}")
    return ", ".join(parts) if parts else "ROI not computable"


def _win(f: _Facts, ci: tuple[float, float], kind: str, alpha: float) -> Verdict:
    """The primary metric is better; ship if everything else allows it."""
    lift = w.pct(f.lift) if f.lift is not None else "an effect"
    ci_txt = _ci_words(ci, alpha, kind)
    why = [f"Primary metric {f.metric}: {lift}, {ci_txt}: the interval excludes zero."]
    states = [_guard(g) for g in f.guardrails]
    if f.quality_fail:
        names = ", ".join(c.get("name", "?") for c in f.quality_fail)
        return Verdict(
            "keep_running", "data_quality",
            f"Do not ship yet: {lift} {f.metric}, but data quality fails ({names}); investigate before acting",
            (*why, *(c.get("message", "") for c in f.quality_fail)), f.days_remaining,
        )
    waiting = [r for s, r in states if s != "passed"]
    why += [r for _, r in states]
    if waiting:
        if f.reached:
            return Verdict("stop", "guardrail_not_shown",
                           f"Stop: {lift} {f.metric}, but a guardrail was not shown safe by the maximum duration",
                           tuple(why), 0.0)
        return Verdict("keep_running", "guardrail_pending",
                       f"Keep running: {lift} {f.metric}, but a guardrail is not yet shown safe; {_days(f)}",
                       tuple(why), f.days_remaining)
    if not f.roi_block:
        why.append("ROI not assessed (no roi block): the ship call rests on the metrics alone.")
        return Verdict("ship", "ship", f"Ship {f.who}: {lift} {f.metric} ({ci_txt}); ROI not assessed",
                       tuple(why), f.days_remaining)
    roi = f.roi or {}
    npv, p, loss, tolerance = _roi_facts(roi)
    if roi.get("status") != "ok" or npv is None or loss is None:
        why.append(f"ROI: not assessable yet ({roi.get('reason') or roi.get('status')}).")
        if f.reached:
            return Verdict("stop", "roi_unavailable",
                           f"Stop: {lift} {f.metric}, but the ROI could not be assessed by the maximum duration",
                           tuple(why), 0.0)
        return Verdict("keep_running", "roi_unavailable",
                       f"Keep running: {lift} {f.metric}; the ROI cannot be assessed yet; {_days(f)}",
                       tuple(why), f.days_remaining)
    be = _num(roi.get("break_even_lift_rel"))
    why.append(f"ROI: {_roi_words(roi)}" + (f"; break-even lift on inquiries {w.pct(be)}." if be is not None else "."))
    if npv > 0 and (tolerance is None or loss <= tolerance):
        return Verdict("ship", "ship", f"Ship {f.who}: {lift} {f.metric} ({ci_txt}); {_roi_words(roi)}",
                       tuple(why), f.days_remaining)
    if p is not None and p < NOT_PAYING_PROB:
        return Verdict("stop", "does_not_pay", f"Stop: {lift} {f.metric} is real but does not pay: {_roi_words(roi)}",
                       tuple(why), f.days_remaining)
    tail = f"the expected loss {w.money(loss)} is above the {w.money(tolerance)} tolerance" \
        if tolerance is not None and loss > tolerance else "the expected NPV is not above zero"
    if f.reached:
        return Verdict("stop", "roi_unclear",
                       f"Stop: {lift} {f.metric} is real, but by the maximum duration {tail}", tuple(why), 0.0)
    return Verdict("keep_running", "roi_unclear",
                   f"Keep running: {lift} {f.metric} is real, but {tail}; {_days(f)}", tuple(why), f.days_remaining)


def _underlying(f: _Facts) -> Verdict:
    lift = w.pct(f.lift) if f.lift is not None else "no estimate"
    if f.status != "ok" or f.seq_ci is None:
        why = (f"Primary metric {f.metric}: no usable result (status {f.status!r}).",)
        if f.reached:
            return Verdict("stop", "no_usable_result",
                           f"Stop: maximum duration reached without a usable {f.metric} result", why, 0.0)
        return Verdict("keep_running", "no_usable_result",
                       f"Keep running: no usable {f.metric} result yet; {_days(f)}", why, f.days_remaining)

    if f.runtime_days < f.min_runtime_days or not f.min_sample_met:
        left = max(f.min_runtime_days - f.runtime_days, 0.0)
        gate = []
        if f.runtime_days < f.min_runtime_days:
            gate.append(f"the minimum runtime is {f.min_runtime_days:g} days ({f.runtime_days:.1f} so far)")
        if not f.min_sample_met:
            gate.append(f.min_sample_words or "the minimum sample is not reached")
        days = max(left, f.days_remaining or 0.0) if f.days_remaining is not None else left
        return Verdict(
            "keep_running", "min_runtime",
            f"Keep running: {' and '.join(gate)}; {w.days(days)}",
            (f"Primary metric {f.metric}: {lift} so far. No verdict before the minimum runtime and sample: "
             "early data over-represent the most eager visitors and the first days' novelty.",),
            days,
        )

    breached = [(s, r) for s, r in (_guard(g) for g in f.guardrails) if s == "breached"]
    if breached:
        name = w.metric_words(next(g for g in f.guardrails if _guard(g)[0] == "breached").get("metric"))
        return Verdict("stop", "guardrail", f"Stop: guardrail — {f.who} hurt {name} beyond its tolerance",
                       tuple(r for _, r in breached), f.days_remaining)

    at_horizon = f.mode in ("fixed", "hybrid") and f.reached
    if at_horizon:
        ci, kind, alpha = f.fixed_ci, "fixed", f.fixed_alpha
    elif f.mode == "fixed":
        seq_txt = _ci_words(f.seq_ci, f.seq_alpha, "sequential")
        return Verdict(
            "keep_running", "fixed_horizon",
            f"Keep running: fixed-horizon test, read once at the planned sample; {_days(f)}",
            (f"Primary metric {f.metric}: {lift} so far ({seq_txt}, shown for monitoring only).",),
            f.days_remaining,
        )
    else:
        ci, kind, alpha = f.seq_ci, "sequential", f.seq_alpha
    if ci is None:
        return Verdict("keep_running", "no_usable_result", f"Keep running: no usable {f.metric} interval yet; {_days(f)}",
                       (f"Primary metric {f.metric}: no {kind} interval.",), f.days_remaining)
    ci_txt = _ci_words(ci, alpha, kind)
    primary_why = f"Primary metric {f.metric}: {lift}, {ci_txt}."

    if ci[1] < 0:
        return Verdict("stop", "harm", f"Stop: {f.who} lower {f.metric} ({lift}, {ci_txt})",
                       (primary_why + " The whole interval is below zero: harm.",), f.days_remaining)
    if ci[0] > 0:
        return _win(f, ci, kind, alpha)
    if kind == "sequential" and f.mde is not None and ci[1] < f.mde:
        return Verdict(
            "stop", "futility",
            f"Stop: no clear effect — {f.metric} {lift}, and the interval rules out the {w.pct(f.mde)} we planned to detect "
            f"({ci_txt})",
            (primary_why + f" Its upper bound is below the MDE ({w.pct(f.mde)}): an effect of the size the test "
             "was planned for is ruled out, so more data would not change the decision.",),
            0.0,
        )
    if f.reached:
        return Verdict(
            "stop", "max_duration",
            f"Stop: no clear effect — maximum duration reached under the plan ({f.metric} {lift}, {ci_txt})",
            (primary_why + " The interval still includes zero and the planned sample is reached.",),
            0.0,
        )
    return Verdict(
        "keep_running", "not_conclusive",
        f"Keep running: {f.metric} {lift} so far ({ci_txt}), not conclusive yet; {_days(f)}",
        (primary_why + " The interval still includes zero, and effects of the planned size are still possible.",),
        f.days_remaining,
    )


def decide_report(report: dict) -> dict:
    """The verdict of one report (every field of the report but ``verdict`` may be read).

    The report's ``verdict`` block is this function's answer, computed when the report is assembled
    (``armor_ab.reporting.report``); its schema is ``armor_ab.reporting.models.VerdictBlock``.
    """
    alpha = report.get("alpha", 0.05)
    if not (isinstance(alpha, int | float) and 0 < alpha < 1):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    f = _facts(report)
    v = _underlying(f)
    decision, headline, reasons = v.decision, v.headline, list(v.reasons)
    if f.srm.get("flag"):
        p = _num(f.srm.get("p_value"))
        p_txt = f" (always-valid p = {p:.2g})" if p is not None else ""
        reasons.insert(0, f"Sample ratio mismatch{p_txt}: the split between the configured variants differs from "
                          "the plan, so every result is suspect; investigate assignment and tracking before acting.")
        if decision == "stop":
            headline += "; also, the traffic split is off: investigate assignment and tracking"
        elif decision == "ship":  # _win already refuses a failing data-quality check; never let one through
            decision, headline = "keep_running", (
                "Do not ship yet: the traffic split between variants is off (sample ratio mismatch); "
                "investigate assignment and tracking")
    return Verdict(decision, v.reason, headline, tuple(reasons), v.days_remaining).to_dict()
