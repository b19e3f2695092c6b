"""Endpoints for web pages (``client`` scope): assignment with exposure logging, and events.

These are the hot paths (every page view calls them), so they take the raw ``Request`` and do
their own parsing: FastAPI's dependency solver costs several times the rest of the request.
Their parameters and security are declared in ``openapi_extra`` so /docs still shows them.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from json.encoder import encode_basestring as _encode_string

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from armor_ab.api.deps import Principal, authorize
from armor_ab.api.errors import ApiError, validation_error
from armor_ab.api.schemas import ERRORS, AssignmentPublic, ContentPublic
from armor_ab.api.state import AppState, LiveExperiment, json_bytes
from armor_ab.bots import is_bot
from armor_ab.event_schema import COLUMN_INDEX, exposure_row
from armor_ab.events import (
    EventBatch,
    EventsAccepted,
    UnknownReferenceError,
    check_references,
    event_rows,
    exposure_event_id,
    micros,
)
from armor_ab.store.content import SHA256
from armor_ab.store.writer import QueueFullError, WriterClosedError

router = APIRouter(prefix="/v1", tags=["client"], responses=ERRORS)

MAX_ID = 200


def _query_param(name: str, description: str, required: bool = False) -> dict:
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": {"type": "string", "minLength": 1 if required else 0, "maxLength": MAX_ID}}


ASSIGNMENT_PARAMS = [
    _query_param("user_id", "the visitor's stable id", required=True),
    _query_param("item_id", "the catalog item on the page"),
    _query_param("force_variant", "QA only, admin key: force this variant (logs no exposure)"),
]
BEARER = [{"HTTPBearer": []}]


def id_param(request: Request, name: str, required: bool = False) -> str | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        if required:
            raise ApiError(422, "validation_error", f"query parameter {name} is required", field=name)
        return None
    if len(value) > MAX_ID:
        raise ApiError(422, "validation_error", f"{name} must be at most {MAX_ID} characters", field=name)
    return value


def live_experiment(state: AppState, key: str) -> LiveExperiment:
    exp = state.experiments.get(key)
    if exp is None:
        raise ApiError(404, "experiment_not_found", f"no experiment {key!r}", field="key")
    return exp


async def commit(state: AppState, rows: list[tuple]) -> EventsAccepted:
    """Send rows to the database process and wait for the commit that holds them."""
    try:
        accepted, duplicates = await asyncio.wrap_future(state.store.submit(rows))
    except QueueFullError:  # the writer's queue in the database process is full
        state.metrics.queue_full.inc()
        raise ApiError(503, "queue_full", "the event writer is behind; retry this batch later",
                       headers={"Retry-After": str(QueueFullError.retry_after)}) from None
    except WriterClosedError as exc:  # shutting down, or the database process died (see /healthz)
        raise ApiError(503, "unavailable", f"{exc}; retry this batch later", headers={"Retry-After": "1"}) from None
    return EventsAccepted(accepted=accepted, duplicates=duplicates)


def device_of(user_agent: str | None) -> str | None:
    """The segment a visitor's browser falls in, the usual way: "Mobi" in the User-Agent."""
    if not user_agent:
        return None
    return "mobile" if "Mobi" in user_agent else "desktop"


def log_exposure(
    state: AppState, exp: LiveExperiment, user_id: str, variant: str, item_id: str | None,
    device: str | None = None, user_agent: str | None = None,
) -> str:
    """Queue a visitor's first exposure; returns its fixed event id.

    The assignment answer does not wait for this commit: a DuckDB commit costs milliseconds and a
    page must not. The writer commits queued exposures in group transactions within one flush.
    Durability comes from two places: an id is only marked "seen" once committed, so a visitor
    whose exposure was still queued in a crash logs it again on the next request; and clients
    (armor-ab.js) put the same ``exposure_id`` in their acknowledged event batches, where the fixed
    id makes it a no-op when the server already has it. A full queue is counted, never hidden.

    A known bot's User-Agent (``armor_ab.bots``) adds ``"bot": true`` to the exposure's properties:
    the analysis excludes the visitor. Checked only here, when a first exposure is queued, so a
    returning visitor's request costs nothing more.
    """
    key = exposure_event_id(exp.record.key, exp.record.bucket_version, user_id)
    if key in state.exposures_seen or key in state.exposures_pending:
        return key
    now = micros(datetime.now(UTC))
    # The exposure carries the visitor's segments (analysis reads them from the first exposure).
    props = {"category": state.categories.get(item_id) if item_id else None, "device": device,
             "bot": True if user_agent and is_bot(user_agent) else None}
    props_json = json_bytes({k: v for k, v in props.items() if v}).decode() if any(props.values()) else None
    row = exposure_row(event_id=key, experiment=exp.record.key, variant=variant, user_id=user_id,
                       item_id=item_id, ts=now, received_at=now, properties=props_json)
    try:
        state.store.log_row(row)
    except (QueueFullError, WriterClosedError):
        state.metrics.exposures_deferred.inc()
        return key
    state.exposures_pending.add(key)
    return key


def resolve_assignment(
    state: AppState, principal: Principal, key: str, user_id: str, item_id: str | None, force_variant: str | None,
    device: str | None = None, user_agent: str | None = None,
) -> tuple[LiveExperiment, str | None, bool, str | None]:
    """(experiment, variant or None, in_experiment, exposure id), logging the first exposure."""
    exp = live_experiment(state, key)
    if force_variant is not None:
        if not principal.may("admin"):
            raise ApiError(403, "forbidden", "forcing a variant needs an admin key", field="force_variant")
        if force_variant not in exp.variants:
            raise ApiError(422, "unknown_variant", f"experiment {key!r} has no variant {force_variant!r}",
                           field="force_variant")
        return exp, force_variant, True, None  # QA views log no exposure
    if exp.record.status != "running":
        return exp, None, False, None
    assignment = exp.assigner.assign(user_id)
    if not assignment.in_experiment:
        return exp, None, False, None
    exposure_id = log_exposure(state, exp, user_id, assignment.variant, item_id, device, user_agent)
    return exp, assignment.variant, True, exposure_id


async def content_answer(
    state: AppState, exp: LiveExperiment, variant: str | None, in_exp: bool, exposure_id: str | None,
    item_id: str,
) -> bytes:
    """``content_body``, after waiting (up to the timeout) for a missing page the variant generates on demand."""
    reason = None
    if variant is not None and (exp.record.key, variant, item_id) not in state.content:
        # Checked before awaiting: a control visitor or a stored page costs no coroutine here.
        spec = state.on_demand.wanted(state, exp, variant, item_id)
        if spec is not None:
            reason = await state.on_demand.ensure(state, (exp.record.key, variant, item_id), spec)
    return content_body(state, exp, variant, in_exp, exposure_id, item_id, reason)


def content_body(
    state: AppState, exp: LiveExperiment, variant: str | None, in_exp: bool, exposure_id: str | None,
    item_id: str, missing_reason: str | None = None,
) -> bytes:
    """The ``GET …/content`` answer as JSON bytes, from pre-serialised pieces (the cached path).

    The visitor's variant gets its approved page; a variant whose page is missing or not approved
    falls back to control's copy (counted by reason in /metrics), and so does a visitor outside
    the experiment. ``content`` is null when the item is not in the catalog either: the page then
    keeps its own copy.
    """
    source, fallback, body = "catalog", None, None
    spec_variant = exp.record.spec.variant(variant) if variant else None
    if spec_variant is not None and spec_variant.content.source == "armor":
        cache_key = (exp.record.key, variant, item_id)
        body = state.content.get(cache_key)
        if body is not None:
            source = "armor"
        else:
            fallback = "unapproved" if cache_key in state.content_status else missing_reason or "missing"
            state.metrics.content_fallback.labels(fallback).inc()
    if body is None:
        body = state.control.get(item_id)
        if body is None:
            fallback = fallback or "unknown_item"
    # Assembled by hand, each value through the C string encoder: a dict through json costs more
    # than the rest of this function on the page-view path.
    head = (f'{{"experiment":{_q(exp.record.key)},"variant":{_q(variant)},'
            f'"in_experiment":{"true" if in_exp else "false"},"exposure_id":{_q(exposure_id)},'
            f'"item_id":{_q(item_id)},"source":"{source}","fallback":{_q(fallback)},'
            f'"server_time":"{datetime.now(UTC).isoformat(timespec="milliseconds")}","content":')
    return head.encode() + (body if body is not None else b"null") + b"}"


def _q(value: str | None) -> str:
    return "null" if value is None else _encode_string(value)


@router.get(
    "/experiments/{key}/assignment",
    response_model=AssignmentPublic,
    openapi_extra={"parameters": ASSIGNMENT_PARAMS, "security": BEARER},
)
async def get_assignment(key: str, request: Request):
    """The visitor's variant; queues the visitor's first exposure for the event log."""
    state: AppState = request.app.state.armor
    principal = authorize(request, "client")
    user_id = id_param(request, "user_id", required=True)
    agent = request.headers.get("user-agent")
    exp, variant, in_exp, exposure_id = resolve_assignment(
        state, principal, key, user_id, id_param(request, "item_id"), id_param(request, "force_variant"),
        device_of(agent), agent,
    )
    return JSONResponse({"experiment": exp.record.key, "variant": variant, "in_experiment": in_exp,
                         "exposure_id": exposure_id})


CONTENT_PARAMS = [
    _query_param("user_id", "the visitor's stable id", required=True),
    _query_param("item_id", "the catalog item on the page", required=True),
    _query_param("force_variant", "QA only, admin key: force this variant (logs no exposure)"),
]


@router.get(
    "/experiments/{key}/content",
    response_model=ContentPublic,
    openapi_extra={"parameters": CONTENT_PARAMS, "security": BEARER},
)
async def get_content(key: str, request: Request):
    """The visitor's variant and its approved content (control's copy as fallback); logs the exposure."""
    state: AppState = request.app.state.armor
    principal = authorize(request, "client")
    user_id = id_param(request, "user_id", required=True)
    item_id = id_param(request, "item_id", required=True)
    agent = request.headers.get("user-agent")
    exp, variant, in_exp, exposure_id = resolve_assignment(
        state, principal, key, user_id, item_id, id_param(request, "force_variant"), device_of(agent), agent,
    )
    body = await content_answer(state, exp, variant, in_exp, exposure_id, item_id)
    return Response(body, media_type="application/json")


@router.get("/images/{sha256}", responses={200: {"content": {"image/png": {}}}, 304: {}})
async def get_image(sha256: str, request: Request):
    """A generated image by its SHA-256 (public, immutable: cached for a year)."""
    state: AppState = request.app.state.armor
    if not SHA256.match(sha256):
        raise ApiError(404, "image_not_found", "images are named by the SHA-256 of their PNG", field="sha256")
    etag = f'"{sha256}"'
    headers = {"ETag": etag, "Cache-Control": "public, max-age=31536000, immutable"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    path = state.settings.images / f"{sha256}.png"
    if not path.is_file():
        raise ApiError(404, "image_not_found", f"no image {sha256}", field="sha256")
    return Response(path.read_bytes(), media_type="image/png", headers=headers)


@router.post(
    "/events",
    response_model=EventsAccepted,
    openapi_extra={
        "security": BEARER,
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EventBatch"}}}},
    },
)
async def post_events(request: Request):
    """Append a batch of at most 1000 events; 2xx only after the commit that holds them."""
    state: AppState = request.app.state.armor
    authorize(request, "client")
    return await append_batch(state, await request.body(), request.headers.get("user-agent"))


def flag_bot_exposures(rows: list[tuple]) -> list[tuple]:
    """Exposure rows sent by a known bot carry ``"bot": true`` in their properties, as the server's own
    exposures do, so the analysis excludes the visitor whichever copy of the exposure arrives first."""
    kind, prop = COLUMN_INDEX["type"], COLUMN_INDEX["properties"]
    out = []
    for row in rows:
        if row[kind] == "exposure":
            props = json.loads(row[prop]) if row[prop] else {}
            props["bot"] = True
            row = (*row[:prop], json_bytes(props).decode(), *row[prop + 1:])
        out.append(row)
    return out


async def accept_batch(state: AppState, raw: bytes, user_agent: str | None = None) -> bytes:
    """Validate a raw ``{"events": [...]}`` body, check its references, commit it: the answer's JSON.

    A batch from a known bot User-Agent (one regex per batch) has its exposures flagged."""
    try:
        batch = EventBatch.model_validate_json(raw)
    except ValidationError as exc:
        raise validation_error(exc.errors()) from None
    try:
        check_references(batch.events, state.variants)
    except UnknownReferenceError as exc:
        raise ApiError(422, "unknown_reference", exc.message, field=exc.field) from None
    rows = event_rows(batch.events, datetime.now(UTC))
    if user_agent and is_bot(user_agent):
        rows = flag_bot_exposures(rows)
    accepted = await commit(state, rows)
    return b'{"accepted":%d,"duplicates":%d}' % (accepted.accepted, accepted.duplicates)


async def append_batch(state: AppState, raw: bytes, user_agent: str | None = None) -> Response:
    """``accept_batch`` as a response (the FastAPI routes: ``POST /v1/events`` and the beacon)."""
    return Response(await accept_batch(state, raw, user_agent), media_type="application/json")
