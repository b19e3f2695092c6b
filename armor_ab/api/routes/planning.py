"""Planning helpers for the dashboards (``read`` scope): ROI what-if and power (sample size). Nothing is saved."""

from __future__ import annotations

import warnings
from typing import Literal

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from armor_ab.api.deps import ReadKey, State
from armor_ab.api.schemas import ERRORS
from armor_ab.reporting.models import PowerPlanPublic, VerdictBlock
from armor_ab.roi.assumptions import RoiAssumptions
from armor_ab.roi.models import RoiPublic
from armor_ab.services.errors import ServiceError
from armor_ab.services.reports import verdict_with_roi

router = APIRouter(prefix="/v1", tags=["read"], responses=ERRORS)


class PriorBody(BaseModel):
    """The effect's prior: Normal(0, sd_rel^2) on the relative lift (``armor_ab.roi.shrinkage``)."""

    sd_rel: float = Field(gt=0, le=1e3, allow_inf_nan=False)
    source: str = Field(default="request", max_length=200)
    n_experiments: int | None = Field(default=None, ge=0)


class EffectBody(BaseModel):
    """The measured effect; the report's ``roi.effect`` can be posted back as it is (extra keys are ignored)."""

    # Bounded far above any real rate (inquiries per visitor), so the Monte Carlo never overflows.
    baseline_inquiries_per_visitor: float = Field(ge=0, le=1e3, allow_inf_nan=False)
    lift_abs: float = Field(ge=-1e3, le=1e3, allow_inf_nan=False)
    lift_abs_se: float = Field(ge=0, le=1e3, allow_inf_nan=False)
    window_days: int | None = Field(default=None, ge=1, le=365)
    prior: PriorBody | None = None


class RoiWhatIf(BaseModel):
    """Edited assumptions and the measured effect (the report's ``roi.effect``, with its prior).

    ``prior`` overrides ``effect.prior``; with neither, the default prior (sd 0.1 on the relative lift).
    """

    assumptions: RoiAssumptions
    effect: EffectBody
    prior: PriorBody | None = None
    draws: int = Field(default=20_000, ge=10_000, le=200_000)
    seed: int = Field(default=0, ge=0)
    experiment: str | None = Field(
        default=None, max_length=200,
        description="decide this experiment's verdict again with the what-if ROI (the answer's `verdict`)")


class RoiWhatIfPublic(RoiPublic):
    """The what-if ROI; with ``experiment`` in the request, the verdict the report would give with it."""

    verdict: VerdictBlock | None = None


class PowerQuery(BaseModel):
    # Bounded far above any real metric, so the plan's arithmetic never overflows.
    baseline_mean: float = Field(ge=-1e12, le=1e12, allow_inf_nan=False)
    baseline_sd: float = Field(ge=0, le=1e12, allow_inf_nan=False)
    mde: float = Field(gt=0, le=100, allow_inf_nan=False, description="relative: 0.05 = 5%")
    alpha: float = Field(default=0.05, gt=0, lt=1)
    power: float = Field(default=0.8, gt=0, lt=1)
    variants: int = Field(default=2, ge=2, le=20)
    visitors_per_day: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    # The test the plan is for: the always-valid interval the verdict reads by default.
    mode: Literal["sequential", "fixed", "hybrid"] = "sequential"
    sequential_tuning: float = Field(default=5000.0, gt=0, allow_inf_nan=False)
    hybrid_sequential_share: float = Field(default=0.5, gt=0, lt=1)


@router.post("/roi", response_model=RoiWhatIfPublic)
async def post_roi(body: RoiWhatIf, state: State, principal: ReadKey):
    """ROI, NPV, payback and their intervals for edited assumptions (what-if; nothing is saved)."""
    from armor_ab.roi.engine import EffectInput, EffectPrior, compute_roi

    given = body.prior or body.effect.prior
    try:
        prior = None if given is None else EffectPrior(given.sd_rel, given.source, given.n_experiments)
        with warnings.catch_warnings():  # a missing window_days is reported in the result's notes
            warnings.simplefilter("ignore", DeprecationWarning)
            effect = EffectInput(**body.effect.model_dump(exclude={"prior"}))
        result = await run_in_threadpool(compute_roi, body.assumptions, effect, draws=body.draws, seed=body.seed,
                                         prior=prior)
    except (ValueError, ArithmeticError) as exc:  # ArithmeticError: inputs at the edge of float range
        raise ServiceError(422, "validation_error", str(exc)) from None
    if body.experiment is not None:
        result = {**result, "verdict": await verdict_with_roi(state, body.experiment, result)}
    return JSONResponse(result)


@router.post("/power", response_model=PowerPlanPublic)
async def post_power(body: PowerQuery, principal: ReadKey):
    """Visitors needed per variant and expected days for an MDE, for the test the verdict runs (``mode``)."""
    from armor_ab.stats.power import alphas, plan_for_mode

    try:
        a_seq, a_fix = alphas(body.mode, body.alpha, body.variants - 1, body.hybrid_sequential_share)
        share = 1.0 / body.variants
        plan = plan_for_mode(body.mode, body.baseline_mean, body.baseline_sd, body.mde, alpha_sequential=a_seq,
                             alpha_fixed=a_fix, power=body.power, tuning=body.sequential_tuning,
                             control_share=share, treatment_share=share, visitors_per_day=body.visitors_per_day)
    except (ValueError, ArithmeticError) as exc:  # ArithmeticError: inputs at the edge of float range
        raise ServiceError(422, "validation_error", str(exc)) from None
    return JSONResponse(plan.to_dict())
