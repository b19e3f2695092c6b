"""Endpoints for web pages (``client`` scope): assignment with exposure logging, content, events, the beacon.

These are the hot paths (every page view calls them), so they take the raw ``Request`` and do
their own parsing: FastAPI's dependency solver costs several times the rest of the request.
Their parameters and security are declared in ``openapi_extra`` so /docs still shows them. With
the fast path on (the default) ``api/fastpath.py`` answers the first three below FastAPI; both
call the same services.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from armor_ab.api.deps import authorize
from armor_ab.api.schemas import ERRORS, AssignmentPublic, ContentPublic
from armor_ab.events import EventsAccepted
from armor_ab.services.assignment import MAX_ID, assign_visitor, query_id
from armor_ab.services.auth import publishable_principal
from armor_ab.services.errors import ServiceError
from armor_ab.services.ingest import accept_batch
from armor_ab.services.serving import IMAGE_MEDIA_TYPES, content_answer, find_image
from armor_ab.services.state import AppState
from armor_ab.store.content import SHA256

router = APIRouter(prefix="/v1", tags=["client"], responses=ERRORS)


def _query_param(name: str, description: str, required: bool = False) -> dict:
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": {"type": "string", "minLength": 1 if required else 0, "maxLength": MAX_ID}}


ASSIGNMENT_PARAMS = [
    _query_param("user_id", "the visitor's stable id", required=True),
    _query_param("item_id", "the catalog item on the page"),
    _query_param("force_variant", "QA only, admin key: force this variant (logs no exposure)"),
]
BEARER = [{"HTTPBearer": []}]


@router.get(
    "/experiments/{key}/assignment",
    response_model=AssignmentPublic,
    openapi_extra={"parameters": ASSIGNMENT_PARAMS, "security": BEARER},
)
async def get_assignment(key: str, request: Request) -> Response:
    """The visitor's variant; queues the visitor's first exposure for the event log."""
    state: AppState = request.app.state.armor
    params = request.query_params
    principal = authorize(request, "client")
    user_id = query_id(params.get("user_id"), "user_id", required=True)
    resolved = assign_visitor(state, principal, key, user_id, query_id(params.get("item_id"), "item_id"),
                      query_id(params.get("force_variant"), "force_variant"), request.headers.get("user-agent"))
    return Response(resolved.body(), media_type="application/json")


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
async def get_content(key: str, request: Request) -> Response:
    """The visitor's variant and its approved content (control's copy as fallback); logs the exposure with
    the digest of the page served (``page``) and the fallback reason."""
    state: AppState = request.app.state.armor
    params = request.query_params
    principal = authorize(request, "client")
    user_id = query_id(params.get("user_id"), "user_id", required=True)
    item_id = query_id(params.get("item_id"), "item_id", required=True)
    # The exposure is logged with the page served (its digest), once the content is decided.
    resolved = assign_visitor(state, principal, key, user_id, item_id, query_id(params.get("force_variant"), "force_variant"),
                              request.headers.get("user-agent"), log=False)
    return Response(await content_answer(state, resolved, item_id), media_type="application/json")


@router.get("/images/{sha256}", response_class=Response,
            responses={200: {"content": {media: {} for media in IMAGE_MEDIA_TYPES}},
                       304: {"description": "Not Modified: the If-None-Match ETag matched"}})
async def get_image(sha256: str, request: Request) -> Response:
    """An image by its SHA-256: a generated picture (PNG) or a catalog photo (PNG, JPEG or WebP);
    public, immutable: cached for a year."""
    state: AppState = request.app.state.armor
    if not SHA256.match(sha256):
        raise ServiceError(404, "image_not_found", "images are named by the SHA-256 of their bytes", field="sha256")
    etag = f'"{sha256}"'
    headers = {"ETag": etag, "Cache-Control": "public, max-age=31536000, immutable"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    found = find_image(state.settings.images, sha256)
    if found is None:
        raise ServiceError(404, "image_not_found", f"no image {sha256}", field="sha256")
    path, media_type = found
    return Response(path.read_bytes(), media_type=media_type, headers=headers)


@router.post(
    "/events",
    response_model=EventsAccepted,
    openapi_extra={
        "security": BEARER,
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EventBatch"}}}},
    },
)
async def post_events(request: Request) -> Response:
    """Append a batch of at most 1000 events; 2xx only after the commit that holds them."""
    state: AppState = request.app.state.armor
    authorize(request, "client")
    body = await accept_batch(state, await request.body(), request.headers.get("user-agent"))
    return Response(body, media_type="application/json")


@router.post(
    "/events/beacon",
    response_model=EventsAccepted,
    openapi_extra={
        "parameters": [{"name": "key", "in": "query", "required": True, "schema": {"type": "string"},
                        "description": "a client-scope (publishable) key; other scopes are refused"}],
        "requestBody": {"required": True, "content": {
            "text/plain": {"schema": {"$ref": "#/components/schemas/EventBatch"}}}},
    },
)
async def post_events_beacon(request: Request) -> Response:
    """``POST /v1/events`` for ``navigator.sendBeacon``: the key in ``?key=``, the batch as text/plain JSON.

    ``sendBeacon`` cannot send an ``Authorization`` header, so the beacon takes a client-scope
    (publishable) key, which is in every page's HTML anyway; a read or admin key is refused so that
    no secret key is ever accepted from a URL. A text/plain body makes it a CORS-simple request.
    """
    state: AppState = request.app.state.armor
    publishable_principal(state.keys, request.query_params.get("key", "").strip())
    body = await accept_batch(state, await request.body(), request.headers.get("user-agent"))
    return Response(body, media_type="application/json")


__all__ = ["MAX_ID", "router"]
