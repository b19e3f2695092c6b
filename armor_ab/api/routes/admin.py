"""Admin and read endpoints: experiments, their lifecycle, API keys, results."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from armor_ab.api.deps import AdminKey, ReadKey, State
from armor_ab.api.schemas import (
    ERRORS,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
    ContentReview,
    ContentReviewed,
    ExperimentPublic,
    QuarantinedExperimentPublic,
    StoredContentPublic,
)
from armor_ab.experiments.loader import ExperimentFileError, parse_experiment_json, parse_experiment_yaml
from armor_ab.experiments.models import ExperimentSpec
from armor_ab.services.assignment import live_experiment
from armor_ab.services.errors import ServiceError
from armor_ab.services.review import review_live
from armor_ab.store.content import list_content
from armor_ab.store.experiments import ExperimentError, list_quarantined, set_status, upsert_experiment
from armor_ab.store.keys import create_key_checked, list_keys, revoke_key

router = APIRouter(prefix="/v1", responses=ERRORS)

_SPEC_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ExperimentSpec"}},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


async def _spec_from_request(request: Request) -> ExperimentSpec:
    """An ExperimentSpec from a JSON or YAML body, with the field at fault on error.

    Both parsers refuse what the spec limits refuse (docs/security.md): ``NaN``/``Infinity``,
    integers over 18 digits, nesting over 16 levels, naming the field (422), never a 500.
    """
    raw = await request.body()
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    try:
        if ctype in ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"):
            return parse_experiment_yaml(raw.decode("utf-8", errors="replace"), "request body")
        if ctype not in ("application/json", ""):
            raise ServiceError(415, "unsupported_media_type", f"send application/json or application/yaml, not {ctype}")
        return parse_experiment_json(raw, "request body")
    except ExperimentFileError as exc:
        code = exc.code or "validation_error"
        status = 400 if code in ("invalid_json", "invalid_yaml") else 422
        message = f"request body is {exc.message}" if code == "invalid_json" else exc.message
        raise ServiceError(status, code, message, exc.field) from None


async def _upsert(state, spec: ExperimentSpec, new_bucket_version: bool) -> JSONResponse:
    try:
        rec, action = await state.write(upsert_experiment, spec, new_bucket_version=new_bucket_version)
    except ExperimentError as exc:
        raise ServiceError(409, exc.code, exc.message, exc.field) from None
    return JSONResponse(rec.public(), status_code=201 if action == "create" else 200,
                        headers={"X-Armor-Action": action})


NewBucket = Annotated[bool, Query(description="re-seed a running experiment whose variants or weights change")]


@router.post("/experiments", tags=["admin"], response_model=ExperimentPublic, status_code=201, openapi_extra=_SPEC_BODY)
async def create_experiment(request: Request, state: State, principal: AdminKey, new_bucket_version: NewBucket = False):
    """Create or update an experiment from its spec (JSON or the YAML file as is)."""
    spec = await _spec_from_request(request)
    return await _upsert(state, spec, new_bucket_version)


@router.put("/experiments/{key}", tags=["admin"], response_model=ExperimentPublic, openapi_extra=_SPEC_BODY)
async def update_experiment(
    key: str, request: Request, state: State, principal: AdminKey, new_bucket_version: NewBucket = False
):
    """Replace an experiment's spec; the body's key must match the path."""
    spec = await _spec_from_request(request)
    if spec.key != key:
        raise ServiceError(422, "key_mismatch", f"body key {spec.key!r} does not match path key {key!r}", field="key")
    return await _upsert(state, spec, new_bucket_version)


@router.get("/quarantine/experiments", tags=["admin"], response_model=list[QuarantinedExperimentPublic])
async def get_quarantined_experiments(state: State, principal: AdminKey):
    """Stored experiments whose spec does not load, with the error: left out of everything else until a
    valid spec replaces them (``PUT /v1/experiments/{key}``, which keeps status and bucket version)."""
    return JSONResponse([q.public() for q in await state.read(list_quarantined)])


@router.get("/experiments", tags=["read"], response_model=list[ExperimentPublic])
async def get_experiments(state: State, principal: ReadKey):
    """Every experiment with its status."""
    return JSONResponse([e.record.public() for e in state.experiments.values()])


@router.get("/experiments/{key}", tags=["read"], response_model=ExperimentPublic)
async def read_experiment(key: str, state: State, principal: ReadKey):
    """One experiment with its spec and status."""
    return JSONResponse(live_experiment(state, key).record.public())


async def _transition(state, key: str, status: str) -> JSONResponse:
    live_experiment(state, key)
    try:
        rec = await state.write(set_status, key, status)
    except ExperimentError as exc:
        raise ServiceError(409, exc.code, exc.message, exc.field) from None
    return JSONResponse(rec.public())


@router.post("/experiments/{key}/start", tags=["admin"], response_model=ExperimentPublic)
async def start_experiment(key: str, state: State, principal: AdminKey):
    """Start assigning visitors (draft or stopped → running)."""
    return await _transition(state, key, "running")


@router.post("/experiments/{key}/stop", tags=["admin"], response_model=ExperimentPublic)
async def stop_experiment(key: str, state: State, principal: AdminKey):
    """Stop assigning visitors (running → stopped); everyone sees control."""
    return await _transition(state, key, "stopped")


@router.get("/experiments/{key}/content/review", tags=["read"], response_model=list[StoredContentPublic])
async def get_content_review(
    key: str, state: State, principal: ReadKey,
    status: Annotated[Literal["pending", "approved", "rejected", "stale"] | None, Query()] = None,
    item_id: Annotated[str | None, Query(max_length=200)] = None,
    verdict: Annotated[Literal["pass", "warn", "fail"] | None, Query()] = None,
):
    """Stored content of an experiment with its review status, the guardrails' verdict and checks, and
    who reviewed it (for the Content dashboard)."""
    live_experiment(state, key)
    rows = await state.read(list_content, key, status=status, item_id=item_id, verdict=verdict)
    return JSONResponse([r.public() for r in rows])


@router.post("/experiments/{key}/content/review", tags=["admin"], response_model=ContentReviewed)
async def post_content_review(key: str, body: ContentReview, state: State, principal: AdminKey):
    """Approve or reject content (one item, one variant, or all; ``verdict``: only pages of that verdict);
    changes what …/content serves at once. The review records the key's name and id. Approving a page
    that fails a blocking check is 409 ``guardrail_failed``; a bulk approve skips them (``skipped``)."""
    reviewed = await review_live(state, key, body.status, item_id=body.item_id, variant=body.variant, all_=body.all,
                                 key_id=principal.key_id, verdict=body.verdict)
    return JSONResponse({"changed": reviewed.changed, "status": body.status, "skipped": reviewed.skipped,
                         "unchanged": reviewed.unchanged})


@router.post("/keys", tags=["admin"], response_model=ApiKeyCreated, status_code=201)
async def post_key(body: ApiKeyCreate, state: State, principal: AdminKey):
    """Create an API key; its secret is in this answer only (a key is stored only if this answer can be made)."""
    secret, key = await state.write(create_key_checked, body.scope, body.name)
    return JSONResponse({**key.public(), "key": secret}, status_code=201)


@router.get("/keys", tags=["admin"], response_model=list[ApiKeyPublic])
async def get_keys(state: State, principal: AdminKey):
    """Every API key's public id, scope and state (never the secret)."""
    return JSONResponse([k.public() for k in await state.read(list_keys)])


@router.delete("/keys/{key_id}", tags=["admin"], status_code=204, response_class=Response,
               responses={204: {"description": "revoked"}})
async def delete_key(key_id: str, state: State, principal: AdminKey):
    """Revoke a key at once."""
    if key_id == principal.key_id:
        raise ServiceError(409, "revoking_own_key", "an admin key cannot revoke itself", field="key_id")
    if not await state.write(revoke_key, key_id):
        raise ServiceError(404, "key_not_found", f"no active key {key_id!r}", field="key_id")
    state.metrics.keys_revoked.inc()
    return Response(status_code=204)  # no body: a 204 with one breaks the connection it is sent on
