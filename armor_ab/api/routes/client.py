"""Endpoints for web pages (``client`` scope): assignment with exposure logging, and events."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from armor_ab.api.deps import ClientKey, State
from armor_ab.api.errors import ApiError
from armor_ab.api.schemas import ERRORS, AssignmentPublic
from armor_ab.api.state import AppState, LiveExperiment
from armor_ab.events import EventBatch, EventsAccepted, UnknownReferenceError, check_references, exposure_event_id, to_arrow
from armor_ab.events import EventIn
from armor_ab.store.writer import QueueFullError, WriterClosedError

router = APIRouter(prefix="/v1", tags=["client"], responses=ERRORS)

UserId = Annotated[str, Query(min_length=1, max_length=200, description="the visitor's stable id")]
ItemId = Annotated[str | None, Query(max_length=200, description="the catalog item on the page")]


def live_experiment(state: AppState, key: str) -> LiveExperiment:
    exp = state.experiments.get(key)
    if exp is None:
        raise ApiError(404, "experiment_not_found", f"no experiment {key!r}", field="key")
    return exp


async def commit(state: AppState, table) -> EventsAccepted:
    """Queue rows for the writer and wait for the commit that holds them."""
    try:
        future = state.writer.submit(table)
    except QueueFullError:
        state.metrics.queue_full.inc()
        raise ApiError(503, "queue_full", "the event writer is behind; retry this batch later",
                       headers={"Retry-After": str(QueueFullError.retry_after)}) from None
    except WriterClosedError:
        raise ApiError(503, "shutting_down", "the server is shutting down; retry this batch later",
                       headers={"Retry-After": "1"}) from None
    result = await asyncio.wrap_future(future)
    return EventsAccepted(accepted=result.accepted, duplicates=result.duplicates)


async def log_exposure(state: AppState, exp: LiveExperiment, user_id: str, variant: str, item_id: str | None) -> None:
    """Log a visitor's first exposure once: a fixed event id makes repeats no-ops."""
    event_id = exposure_event_id(exp.record.key, exp.record.bucket_version, user_id)
    key = str(event_id)
    if key in state.exposures_seen:
        return
    event = EventIn(event_id=event_id, experiment=exp.record.key, variant=variant, user_id=user_id,
                    item_id=item_id, type="exposure")
    await commit(state, to_arrow([event]))
    if len(state.exposures_seen) >= state.settings.exposure_cache_size:
        state.exposures_seen.clear()  # bounded memory; a forgotten id only costs one no-op insert
    state.exposures_seen.add(key)


async def resolve_assignment(
    state: AppState, principal, key: str, user_id: str, item_id: str | None, force_variant: str | None
) -> tuple[LiveExperiment, str | None, bool]:
    """The visitor's variant (None outside coverage or when not running), logging exposure."""
    exp = live_experiment(state, key)
    if force_variant is not None:
        if not principal.may("admin"):
            raise ApiError(403, "forbidden", "forcing a variant needs an admin key", field="force_variant")
        if force_variant not in exp.variants:
            raise ApiError(422, "unknown_variant", f"experiment {key!r} has no variant {force_variant!r}",
                           field="force_variant")
        return exp, force_variant, True  # QA views log no exposure
    if exp.record.status != "running":
        return exp, None, False
    assignment = exp.assigner.assign(user_id)
    if not assignment.in_experiment:
        return exp, None, False
    await log_exposure(state, exp, user_id, assignment.variant, item_id)
    return exp, assignment.variant, True


@router.get("/experiments/{key}/assignment", response_model=AssignmentPublic)
async def get_assignment(
    key: str,
    user_id: UserId,
    state: State,
    principal: ClientKey,
    item_id: ItemId = None,
    force_variant: Annotated[str | None, Query(description="QA only, admin key: force this variant")] = None,
):
    """The visitor's variant; logs the visitor's first exposure before answering."""
    exp, variant, in_experiment = await resolve_assignment(state, principal, key, user_id, item_id, force_variant)
    # A plain JSONResponse skips re-validating our own output on the hot path.
    return JSONResponse({"experiment": exp.record.key, "variant": variant, "in_experiment": in_experiment})


@router.post("/events", response_model=EventsAccepted)
async def post_events(batch: EventBatch, state: State, principal: ClientKey):
    """Append a batch of at most 1000 events; 2xx only after the commit that holds them."""
    try:
        check_references(batch.events, state.variants_of())
    except UnknownReferenceError as exc:
        raise ApiError(422, "unknown_reference", exc.message, field=exc.field) from None
    accepted = await commit(state, to_arrow(batch.events, datetime.now(UTC)))
    return JSONResponse(accepted.model_dump())
