"""The ship / keep running / stop call for an experiment, in plain words for executives.

Decisions read the SEQUENTIAL (always-valid) interval of the primary metric, because product
managers look at the dashboard daily and a fixed-horizon interval would be peeked into false wins.

* ship: the primary's sequential CI lies above 0, its status is "ok", no guardrail is broken or
  unproven, no sample ratio mismatch (SRM), and the ROI is favourable (P(ROI > 0) >= 0.8, or no
  ROI block at all, which the reasons say).
* stop: harm (sequential CI below 0); a guardrail broken; a significant effect that clearly does
  not pay (P(ROI > 0) <= 0.2); no meaningful effect (sequential CI inside +/- ``negligible_rel``);
  or the planned duration reached (``days_remaining == 0``) without a significant effect.
* keep_running: everything else, with the days left.
* SRM overrides: the underlying call is made first; "ship" then becomes "keep_running" (never
  ship on a broken split), "stop" stays, and the first reason says to investigate assignment.

A guardrail with ``passed: False`` is broken when its own sequential CI lies wholly below
``-margin`` (worse than tolerated) or the planned duration is over; before that, a failed
non-inferiority test usually means "not shown yet", which blocks shipping but is no reason to stop.
If the entry carries no sequential CI, ``passed: False`` is taken as broken (nothing else to go on).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from armor_ab.roi import wording as w

ROI_SHIP_PROB = 0.8  # ship only when at least 80% sure the variant pays for itself
ROI_STOP_PROB = 0.2  # and stop a real effect when at least 80% sure it does not
DEFAULT_NEGLIGIBLE_REL = 0.01  # relative lifts within +/-1% are too small to matter for any metric here

Decision = Literal["ship", "keep_running", "stop"]


@dataclass(frozen=True)
class _Call:
    decision: Decision
    headline: str
    reasons: tuple[str, ...]


def _sequential_ci(entry: dict) -> tuple[float, float] | None:
    """The entry's sequential relative CI, or None when missing or not a finite ordered pair."""
    seq = entry.get("sequential") or {}
    ci = seq.get("ci_rel")
    if not isinstance(ci, list | tuple) or len(ci) != 2:
        return None
    lo, hi = ci
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in (lo, hi)) or lo > hi:
        return None
    return float(lo), float(hi)


@dataclass(frozen=True)
class _Guard:
    state: Literal["ok", "unproven", "broken"]
    name: str  # the metric in words
    reason: str


def _guardrail_state(entry: dict, reached: bool) -> _Guard:
    """Whether one guardrail results entry is ok, not yet shown ok, or broken."""
    if "guardrail" not in entry or "passed" not in entry["guardrail"]:
        raise ValueError(f"guardrail entry for {entry.get('metric')!r} lacks guardrail.passed")
    g = entry["guardrail"]
    name = w.metric_words(entry.get("metric"))
    margin = g.get("margin")
    tolerance = f"the {margin * 100:g}% tolerance" if isinstance(margin, int | float) else "its tolerance"
    ci = _sequential_ci(entry)
    if entry.get("status", "ok") != "ok":
        why = f"Guardrail {name}: result not usable (status {entry.get('status')!r})."
        return _Guard("broken" if reached else "unproven", name, why)
    if g["passed"]:
        return _Guard("ok", name, f"Guardrail {name}: within {tolerance}.")
    if ci is None:
        return _Guard("broken", name, f"Guardrail {name}: failed its non-inferiority test ({tolerance}).")
    if isinstance(margin, int | float) and ci[1] < -margin:
        why = f"Guardrail {name}: worse than {tolerance} (sequential CI {w.pct(ci[0])} to {w.pct(ci[1])})."
        return _Guard("broken", name, why)
    if reached:
        return _Guard("broken", name, f"Guardrail {name}: not shown within {tolerance} by the planned end.")
    return _Guard("unproven", name, f"Guardrail {name}: not yet shown within {tolerance}.")


def _roi_prob(roi: dict) -> float | None:
    p = roi.get("prob_roi_positive")
    # ROI is undefined when every cost is zero; P(NPV > 0) is then the same question.
    return p if p is not None else roi.get("prob_npv_positive")


def _roi_words(roi: dict) -> str:
    npv = (roi.get("point") or {}).get("npv")
    p = _roi_prob(roi)
    parts = []
    if npv is not None:
        parts.append(f"{roi.get('horizon_months', 12)}-month NPV {w.money(npv)}")
    if p is not None:
        parts.append(f"(P(ROI>0) = {w.probability(p)})")
    return " ".join(parts) if parts else "ROI not computable"


def _underlying(
    primary: dict,
    guardrails: list[dict],
    roi: dict | None,
    days_remaining: float | None,
    alpha: float,
    band: float,
) -> _Call:
    """The call ignoring SRM."""
    metric = w.metric_words(primary.get("metric"))
    who = w.subject(primary.get("variant"))
    reached = days_remaining is not None and days_remaining <= 0
    guards = [_guardrail_state(g, reached) for g in guardrails]
    broken = [g for g in guards if g.state == "broken"]
    unproven = [g for g in guards if g.state == "unproven"]
    guard_reasons = tuple(g.reason for g in guards)
    ci = _sequential_ci(primary)
    status = primary.get("status")

    if status != "ok" or ci is None:
        why = f"status {status!r}" if status != "ok" else "no sequential interval"
        reason = (f"Primary metric {metric}: result not usable ({why}); it cannot justify shipping.",)
        if broken:
            return _Call("stop", f"Stop: {who} hurt {broken[0].name}", reason + guard_reasons)
        if reached:
            return _Call("stop", f"Stop: planned duration reached without a usable {metric} result", reason)
        return _Call(
            "keep_running", f"Keep running: no usable {metric} result yet; {w.days(days_remaining)}", reason
        )

    lift = primary.get("lift_rel")
    lift_txt = w.pct(lift) if isinstance(lift, int | float) and math.isfinite(lift) else "an effect"
    ci_txt = w.ci_words(ci, alpha)
    primary_reason = f"Primary metric {metric}: {lift_txt}, sequential (always-valid) {ci_txt}."

    if ci[1] < 0:
        return _Call(
            "stop",
            f"Stop: {who} lower {metric} ({lift_txt}, {ci_txt})",
            (primary_reason + " The whole interval is below zero: harm.", *guard_reasons),
        )
    if broken:
        return _Call(
            "stop",
            f"Stop: {who} hurt {broken[0].name} beyond what the guardrail tolerates",
            (*(g.reason for g in broken), primary_reason),
        )

    if ci[0] > 0:
        significant = primary_reason + " The interval excludes zero."
        if roi is None:
            roi_reason, p = "ROI not assessed (no roi block): the ship call rests on the metrics alone.", None
        else:
            p = _roi_prob(roi)
            roi_reason = f"ROI: {_roi_words(roi)}."
            be = roi.get("break_even_lift_rel")
            if be is not None:
                roi_reason += f" Break-even lift on inquiries: {w.pct(be)}."
        if p is not None and p <= ROI_STOP_PROB:
            return _Call(
                "stop",
                f"Stop: {lift_txt} {metric} is real but does not pay: {_roi_words(roi or {})}",
                (significant, roi_reason, *guard_reasons),
            )
        if unproven:
            return _Call(
                "keep_running",
                f"Keep running: {lift_txt} {metric}, but {unproven[0].name} is not yet shown safe; "
                f"{w.days(days_remaining)}",
                (significant, *(g.reason for g in unproven), roi_reason),
            )
        if p is not None and p < ROI_SHIP_PROB:
            tail = (
                "planned duration reached: extend the test or revisit the ROI assumptions"
                if reached
                else w.days(days_remaining)
            )
            return _Call(
                "keep_running",
                f"Keep running: {lift_txt} {metric} is real, but whether it pays is unclear "
                f"(P(ROI>0) = {w.probability(p)}); {tail}",
                (significant, roi_reason, *guard_reasons),
            )
        money = f", {_roi_words(roi)}" if roi is not None else "; ROI not assessed"
        return _Call(
            "ship",
            f"Ship {who}: {lift_txt} {metric} ({ci_txt}){money}",
            (significant, roi_reason, *guard_reasons),
        )

    if -band < ci[0] and ci[1] < band:
        return _Call(
            "stop",
            f"Stop: no meaningful effect on {metric} ({ci_txt}, inside +/-{band * 100:g}%)",
            (primary_reason + f" The whole interval is inside +/-{band * 100:g}%, too small to matter.",),
        )
    if reached:
        return _Call(
            "stop",
            f"Stop: planned duration reached without a clear effect on {metric} ({ci_txt})",
            (primary_reason + " The interval still includes zero.", *guard_reasons),
        )
    return _Call(
        "keep_running",
        f"Keep running: {metric} {lift_txt} so far ({ci_txt}), not conclusive yet; {w.days(days_remaining)}",
        (primary_reason + " The interval still includes zero.", *guard_reasons),
    )


def decide(
    *,
    primary: dict,
    guardrails: list[dict],
    srm: dict,
    roi: dict | None,
    days_remaining: float | None,
    alpha: float,
    negligible_rel: float = DEFAULT_NEGLIGIBLE_REL,
) -> dict:
    """Ship / keep_running / stop with an executive headline and the reasons behind it.

    ``days_remaining`` None means no planned end; a negative value (the test overran its plan) is
    treated as 0, i.e. the planned duration is reached. ``negligible_rel`` is the half-width of
    the "too small to matter" band on the relative lift.
    """
    if not (isinstance(alpha, int | float) and 0 < alpha < 1):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if not (isinstance(negligible_rel, int | float) and 0 <= negligible_rel < 1):
        raise ValueError(f"negligible_rel must be in [0, 1), got {negligible_rel!r}")
    if days_remaining is not None:
        if not math.isfinite(days_remaining):
            raise ValueError(f"days_remaining must be finite or None, got {days_remaining!r}")
        days_remaining = max(0.0, float(days_remaining))
    if "flag" not in srm:
        raise ValueError("srm must carry 'flag'")

    call = _underlying(primary, guardrails, roi, days_remaining, alpha, negligible_rel)
    decision, headline, reasons = call.decision, call.headline, list(call.reasons)

    if srm["flag"]:
        p = srm.get("p_value")
        p_txt = f" (p = {p:.2g})" if isinstance(p, int | float) and math.isfinite(p) else ""
        reasons.insert(
            0,
            f"Sample ratio mismatch{p_txt}: the traffic split differs from the plan, so every result is "
            "suspect; investigate assignment and tracking before acting on it.",
        )
        if decision == "stop":
            headline += "; also, the traffic split is off: investigate assignment and tracking"
        else:
            if decision == "ship":
                reasons.append("The metrics alone would support shipping, but not with a broken split.")
            decision = "keep_running"
            headline = (
                "Do not ship yet: the traffic split between variants is off (sample ratio mismatch); "
                "investigate assignment and tracking"
            )

    return {"decision": decision, "headline": headline, "reasons": reasons, "days_remaining": days_remaining}
