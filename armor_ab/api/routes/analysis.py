"""Stateless analysis helpers for the dashboards (``read`` scope): ROI what-if and power."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from armor_ab.api.deps import ReadKey
from armor_ab.api.errors import ApiError
from armor_ab.api.schemas import ERRORS
from armor_ab.roi.assumptions import RoiAssumptions

router = APIRouter(prefix="/v1", tags=["read"], responses=ERRORS)


class EffectBody(BaseModel):
    baseline_inquiries_per_visitor: float = Field(ge=0, allow_inf_nan=False)
    lift_abs: float = Field(allow_inf_nan=False)
    lift_abs_se: float = Field(ge=0, allow_inf_nan=False)


class RoiWhatIf(BaseModel):
    """Edited assumptions and the measured effect (the report's ``roi.effect``)."""

    assumptions: RoiAssumptions
    effect: EffectBody
    draws: int = Field(default=20_000, ge=10_000, le=200_000)
    seed: int = Field(default=0, ge=0)


class PowerQuery(BaseModel):
    baseline_mean: float = Field(allow_inf_nan=False)
    baseline_sd: float = Field(ge=0, allow_inf_nan=False)
    mde: float = Field(gt=0, allow_inf_nan=False)
    alpha: float = Field(default=0.05, gt=0, lt=1)
    power: float = Field(default=0.8, gt=0, lt=1)
    variants: int = Field(default=2, ge=2, le=20)
    visitors_per_day: float | None = Field(default=None, gt=0, allow_inf_nan=False)


@router.post("/roi")
async def post_roi(body: RoiWhatIf, principal: ReadKey):
    """ROI, NPV, payback and their intervals for edited assumptions (what-if; nothing is saved)."""
    from armor_ab.roi.engine import EffectInput, compute_roi

    effect = EffectInput(**body.effect.model_dump())
    try:
        result = await run_in_threadpool(compute_roi, body.assumptions, effect, draws=body.draws, seed=body.seed)
    except ValueError as exc:
        raise ApiError(422, "validation_error", str(exc)) from None
    return JSONResponse(result)


@router.post("/power")
async def post_power(body: PowerQuery, principal: ReadKey):
    """Visitors needed per variant and expected days for an MDE (the design page's calculator)."""
    from armor_ab.stats.power import sample_size

    try:
        plan = sample_size(body.baseline_mean, body.baseline_sd, body.mde, alpha=body.alpha, power=body.power,
                           variants=body.variants, visitors_per_day=body.visitors_per_day)
    except ValueError as exc:
        raise ApiError(422, "validation_error", str(exc)) from None
    return JSONResponse(plan.to_dict())
