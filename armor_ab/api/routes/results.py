"""The report of an experiment (``read`` scope): ``GET /v1/experiments/{key}/results``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from armor_ab.api.deps import ReadKey, State
from armor_ab.api.schemas import ERRORS
from armor_ab.reporting.models import ExperimentReport
from armor_ab.services.reports import report_json

router = APIRouter(prefix="/v1", responses=ERRORS)


@router.get("/experiments/{key}/results", tags=["read"], response_model=ExperimentReport)
async def get_results(
    key: str, state: State, principal: ReadKey,
    cuped: Annotated[bool | None, Query(description="override the experiment's CUPED setting")] = None,
):
    """Statistics, SRM, power, ROI and the verdict of an experiment, as `armor-ab report KEY --json` prints them.

    The body is the assembled report's JSON as computed (cached until the experiment or its events
    change); ``ExperimentReport`` is its schema.
    """
    body, age = await report_json(state, key, cuped)
    return Response(body, media_type="application/json", headers={"X-Report-Age": f"{age:.1f}"})
