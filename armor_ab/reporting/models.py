"""The report's contract: ``ExperimentReport`` and a model for every block of it.

``armor_ab.reporting.report.experiment_report`` builds the report as plain JSON-able data (fast:
no model is built per row); ``ExperimentReport.model_validate(report)`` passes for every report it
builds (tests/test_report_models.py checks A/A, ship, guardrail breach, no data, several variants
and an unavailable ROI). ``GET /v1/experiments/{key}/results`` declares it as its response model
and serves the assembled JSON as it is.

Every model forbids extra keys, so a key added to the report without its declaration here fails
those tests. Optional keys that the report leaves out (``decision`` and ``guardrail`` of a results
entry, ``baseline_mean``/``baseline_sd``/``effect_size`` of the power block) default to None;
``model_dump(exclude_unset=True)`` gives the served JSON back. The ROI's own shape is declared in
``armor_ab.roi.models`` (``RoiPublic``); ``ReportRoi`` adds the report's keys to it.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Tag

from armor_ab.experiments.models import MetricName
from armor_ab.reporting.verdict import Decision, ReasonCode
from armor_ab.roi.models import RoiPublic
from armor_ab.stats.quality import CheckStatus
from armor_ab.stats.status import Status

Mode = Literal["sequential", "fixed", "hybrid"]
CI = tuple[float, float]  # [low, high] of an interval, relative or absolute


class _Fixed(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- results per metric x treatment ---------------------------------------------------------------


class SequentialPublic(_Fixed):
    """The always-valid confidence sequence at the report's alpha."""

    ci_abs: CI | None
    ci_rel: CI | None
    p_value: float | None


class BayesianPublic(_Fixed):
    """Gaussian posterior of the relative lift."""

    chance_to_win: float | None
    expected_loss: float | None
    risk_control: float | None
    ci_rel: CI | None
    posterior_mean: float | None
    posterior_sd: float | None


class DecisionBlock(_Fixed):
    """The intervals the verdict reads for the primary metric, at the analysis mode's adjusted alphas."""

    mode: Mode
    sequential_alpha: float
    sequential_ci_rel: CI | None
    fixed_alpha: float
    fixed_ci_rel: CI | None


class GuardrailBlock(_Fixed):
    """The always-valid non-inferiority test of a guardrail metric."""

    margin: float
    state: Literal["passed", "breached", "pending", "unavailable"]
    passed: bool
    sequential_lower: float | None
    sequential_upper: float | None
    alpha: float
    status: Status


class ResultEntry(_Fixed):
    """One metric x treatment against the control."""

    metric: MetricName
    variant: str
    baseline: str
    n: int
    baseline_n: int
    mean: float | None
    baseline_mean: float | None
    mean_adjusted: float | None
    baseline_mean_adjusted: float | None
    lift_abs: float | None
    se_abs: float | None
    ci_abs: CI | None
    lift_rel: float | None
    se_rel: float | None
    ci_rel: CI | None
    p_value: float | None
    p_value_adjusted: float | None
    df: float | None
    sequential: SequentialPublic
    bayesian: BayesianPublic | None
    status: Status
    cuped: bool
    cuped_theta: float | None
    decision: DecisionBlock | None = None  # the primary metric only
    guardrail: GuardrailBlock | None = None  # guardrail metrics only


# -- data quality, SRM, runtime, power ------------------------------------------------------------


class QualityCheckPublic(_Fixed):
    name: Literal["srm", "unknown_variants", "multiple_variants", "bots", "paused", "page_changes", "fallbacks",
                  "capping", "min_runtime", "min_sample"]
    status: CheckStatus
    message: str
    value: float | None  # the count or share the check is about


class DataQuality(_Fixed):
    clean: bool  # no check fails
    checks: list[QualityCheckPublic]


class SrmBlock(_Fixed):
    """The sequential sample-ratio test over the configured variants."""

    method: Literal["sequential_dirichlet_multinomial"]
    observed: dict[str, int]
    expected: dict[str, float]
    p_value: float
    chi_square_p_value: float | None
    flag: bool
    threshold: float
    looks: int


class Runtime(_Fixed):
    days_elapsed: float
    min_runtime_days: float
    min_visitors_per_variant: int
    min_sample_met: bool
    min_sample_words: str


class AnalysisBlock(_Fixed):
    """How the verdict tests: the mode and its adjusted alphas."""

    mode: Mode
    alpha_sequential: float
    alpha_fixed: float
    treatments: int
    sequential_tuning: float


class PowerPlanPublic(_Fixed):
    """A sample-size plan (``armor_ab.stats.power.PowerPlan.to_dict()``): what ``POST /v1/power`` returns."""

    status: Status
    method: Literal["fixed", "sequential"]
    n_per_variant: int | None
    total_visitors: int | None
    days: float | None
    effect_size: float | None


class PowerBlock(_Fixed):
    """The plan of the test the verdict runs, the horizon it sets, the traffic so far and days left."""

    mode: Mode
    mde: float
    alpha: float
    alpha_sequential: float
    alpha_fixed: float
    power: float
    status: Status
    metric: MetricName
    variant: str | None
    baseline_mean: float | None = None  # with a usable baseline only
    baseline_sd: float | None = None
    visitors: int
    days_elapsed: float
    visitors_per_day: float | None
    method: Literal["fixed", "sequential"] | None
    n_per_variant: int | None
    total_visitors: int | None
    planned_days: float | None
    days_remaining: float | None
    reached: bool
    effect_size: float | None = None  # once a plan is computed


# -- ROI ------------------------------------------------------------------------------------------


class ReportRoi(RoiPublic):
    """The report's ROI block when the effect could be priced: ``compute_roi``'s answer plus the treatment
    it speaks about and the visitors whose ROI window has closed."""

    variant: str
    mde: float
    mature_visitors: int


class RoiUnavailable(_Fixed):
    """The report's ROI block when there is no effect to price yet, or the verdict did not need it."""

    status: Literal["not_computed"] | Status
    reason: str
    variant: str | None = None
    mde: float | None = None


def _roi_kind(value: Any) -> str:
    status = value.get("status") if isinstance(value, dict) else getattr(value, "status", None)
    return "priced" if status == "ok" else "unavailable"


RoiBlock = Annotated[
    Annotated[ReportRoi, Tag("priced")] | Annotated[RoiUnavailable, Tag("unavailable")], Discriminator(_roi_kind)
]


# -- the verdict ----------------------------------------------------------------------------------


class VerdictBlock(_Fixed):
    """Ship / keep running / stop, in plain words (``armor_ab.reporting.verdict.decide_report``)."""

    decision: Decision
    reason: ReasonCode
    headline: str
    reasons: list[str]
    days_remaining: float | None


# -- exploratory series ---------------------------------------------------------------------------


class TimePoint(_Fixed):
    date: date
    n: int
    baseline_n: int
    lift_rel: float | None
    ci_rel: CI | None
    sequential_ci_rel: CI | None
    p_value: float | None
    sequential_p_value: float | None
    status: Status


class TimeSeries(_Fixed):
    """Cumulative results of one metric x treatment at the end of each day."""

    metric: MetricName
    variant: str
    points: list[TimePoint]


class AgePoint(_Fixed):
    age_days: int
    n: int
    baseline_n: int
    lift_rel: float | None
    ci_rel: CI | None
    status: Status


class AgeSeries(_Fixed):
    """Lift by days since first exposure of one metric x treatment (a novelty effect fades with age)."""

    metric: MetricName
    variant: str
    points: list[AgePoint]


class SegmentResult(_Fixed):
    metric: MetricName
    variant: str
    n: int
    baseline_n: int
    lift_abs: float | None
    lift_rel: float | None
    ci_rel: CI | None
    p_value: float | None
    status: Status


class SegmentValue(_Fixed):
    """Results within one segment value (exploratory: not multiplicity-adjusted)."""

    segment: str
    value: str
    visitors: dict[str, int]
    results: list[SegmentResult]


class SegmentOmitted(_Fixed):
    """How many further values of a segment key the report leaves out (by visitors)."""

    segment: str
    value: None
    omitted_values: int


class ReportWindow(_Fixed):
    start: datetime | None
    end: datetime


class PageVersionPublic(_Fixed):
    """Visitors of one item and ARMOR variant first served one page."""

    page: str | None  # the page's SHA-256 digest (None: a fallback whose digest was not recorded)
    fallback: str | None  # why control's copy was served instead of the ARMOR page; None: the ARMOR page
    visitors: int


class ChangedItemPublic(_Fixed):
    """An item whose served page changed during the test in one ARMOR variant."""

    item_id: str
    variant: str
    visitors: int
    pages: list[PageVersionPublic]  # most visitors first, at most 10
    omitted_pages: int  # further versions not listed


class ServedPagesBlock(_Fixed):
    """Which page the ARMOR variants' visitors were first served (``armor_ab.stats.pages``)."""

    variants: list[str]  # the ARMOR variants checked
    visitors: dict[str, int]  # variant -> visitors whose first exposure records the page served
    fallback_visitors: dict[str, int]  # variant -> of those, first served control's copy
    fallback_reasons: dict[str, int]  # reason (missing, unapproved, generating, ...) -> visitors
    changed_items: int  # (item, variant) pairs whose served page changed, all of them
    items: list[ChangedItemPublic]  # the first 20 of them, most visitors first


class DataBlock(_Fixed):
    """What the query counted and excluded, and the caps and windows it applied."""

    dwell_cap_ms: float | None
    dwell_cap_percentile: float | None
    caps: dict[str, float | None]
    multi_variant_visitors: int
    unknown_variant_visitors: dict[str, int]
    bot_visitors: dict[str, int]
    paused_visitors: dict[str, int]  # variant -> visitors first exposed while the experiment was paused (excluded)
    served_pages: ServedPagesBlock | None  # None: not checked (a report from sums alone)
    # Which exposures let a visitor in (``analysis.exposures``), and the visitors left out because only
    # exposures posted with a client key named them (forged or replayed; always 0 with "any").
    exposures: Literal["server", "any"]
    client_only_visitors: int
    deduplicated_in_sql: bool
    conversion_window_days: int | None
    roi_window_days: int
    days: int


# -- the report -----------------------------------------------------------------------------------


class ExperimentReport(_Fixed):
    """The whole report of one experiment, as ``GET /v1/experiments/{key}/results`` serves it."""

    experiment: str
    name: str
    status: Literal["draft", "running", "stopped"]
    generated_at: datetime
    window: ReportWindow
    alpha: float
    mde: float
    analysis: AnalysisBlock
    control: str
    primary_metric: MetricName
    primary_variant: str | None
    data_quality: DataQuality
    runtime: Runtime
    visitors: dict[str, int]
    srm: SrmBlock
    results: list[ResultEntry]
    power: PowerBlock
    roi: RoiBlock | None
    cuped_requested: bool
    correction: Literal["holm", "fdr_bh", "none"]
    data: DataBlock
    timeseries: list[TimeSeries]
    by_age: list[AgeSeries]
    segments: list[SegmentValue | SegmentOmitted]
    verdict: VerdictBlock | None  # None only without a treatment variant


__all__ = [
    "AgePoint", "AgeSeries", "AnalysisBlock", "BayesianPublic", "ChangedItemPublic", "DataBlock", "DataQuality",
    "DecisionBlock", "ExperimentReport", "GuardrailBlock", "PageVersionPublic", "PowerBlock", "PowerPlanPublic",
    "QualityCheckPublic", "ReportRoi", "ReportWindow", "ResultEntry", "RoiBlock", "RoiPublic", "RoiUnavailable",
    "Runtime", "SegmentOmitted", "SegmentResult", "SegmentValue", "SequentialPublic", "ServedPagesBlock", "SrmBlock",
    "TimePoint", "TimeSeries", "VerdictBlock",
]
