"""The hot paths at the ASGI level, below FastAPI's routing and dependency solver.

Every page view asks for its visitor's variant (``…/assignment``) or content (``…/content``), and
pages send their events in batches (``POST /v1/events``), so these three routes are served straight
from the ASGI scope: about a third of the cost of the FastAPI routes they shadow. The FastAPI routes with the same paths stay registered: it documents the endpoint in OpenAPI, serves it when the fast path
is switched off (``Settings.fast_path``), and shares every rule with this path
(``resolve_assignment``, ``key_principal``, the error shape); ``tests/test_api.py`` checks that
both answer every case alike.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, unquote

from starlette.types import Receive, Scope, Send

from armor_ab.api.deps import key_principal
from armor_ab.api.errors import ApiError, error_body
from armor_ab.api.routes.client import MAX_ID, accept_batch, content_answer, device_of, resolve_assignment
from armor_ab.api.state import AppState, json_bytes

PREFIX = "/v1/experiments/"
ROUTES = {"/assignment": "/v1/experiments/{key}/assignment", "/content": "/v1/experiments/{key}/content"}
EVENTS = "/v1/events"
_JSON = [(b"content-type", b"application/json")]


class BodyTooLarge(Exception):
    """The body passed the size limit while it was being read."""


def match(scope: Scope) -> tuple[str, str] | None:
    """(metrics route label, experiment key) for ``GET /v1/experiments/{key}/assignment|content``,
    and (``/v1/events``, "") for ``POST /v1/events``."""
    if scope["method"] != "GET":
        if scope["method"] == "POST" and scope["path"] == EVENTS:
            return EVENTS, ""
        return None
    path: str = scope["path"]
    if not path.startswith(PREFIX):
        return None
    rest = path[len(PREFIX) :]
    key, slash, tail = rest.rpartition("/")
    route = ROUTES.get(slash + tail)
    if route is None or not key or "/" in key:
        return None
    return route, key


def _params(scope: Scope) -> dict[str, str]:
    query = scope["query_string"].decode("latin-1")
    if "%" in query or "+" in query:  # escaped: the standard parser
        return dict(parse_qsl(query, keep_blank_values=True))
    out: dict[str, str] = {}  # plain ids (the usual case): a split is a third of parse_qsl's cost
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if name:
            out[name] = value  # the last one wins, as with parse_qsl
    return out


def _id(params: dict[str, str], name: str, required: bool = False) -> str | None:
    value = params.get(name) or None
    if value is None and required:
        raise ApiError(422, "validation_error", f"query parameter {name} is required", field=name)
    if value is not None and len(value) > MAX_ID:
        raise ApiError(422, "validation_error", f"{name} must be at most {MAX_ID} characters", field=name)
    return value


def _headers(scope: Scope) -> tuple[str | None, str | None]:
    """(bearer token, User-Agent) in one pass over the headers."""
    token = agent = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, rest = value.decode("latin-1").partition(" ")
            token = rest.strip() if scheme.lower() == "bearer" and rest.strip() else None
        elif name == b"user-agent":
            agent = value.decode("latin-1")
    return token, agent


async def _body(receive: Receive, limit: int) -> bytes:
    """The whole request body, or ``BodyTooLarge`` once it passes ``limit`` bytes."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        more = message.get("more_body", False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def serve(
    state: AppState, route: str, key: str, scope: Scope, receive: Receive, send: Send, request_id: str,
    extra_headers: list[tuple[bytes, bytes]] = (),
) -> int:
    """Answer an assignment, content or events request; returns the HTTP status sent.

    Raises ``BodyTooLarge`` before anything is sent (the middleware answers 413).
    """
    headers = [*_JSON, (b"x-request-id", request_id.encode()), *extra_headers]
    content = route.endswith("/content")
    try:
        token, agent = _headers(scope)
        if token is None:
            raise ApiError(401, "unauthorized", "missing API key: send `Authorization: Bearer <key>`",
                           headers={"WWW-Authenticate": "Bearer"})
        principal = key_principal(state, token, "client")
        if route == EVENTS:
            payload = await accept_batch(state, await _body(receive, state.settings.max_body_bytes), agent)
            return await _answer(send, 200, headers, payload)
        params = _params(scope)
        user_id = _id(params, "user_id", True)
        item_id = _id(params, "item_id", content)
        exp, variant, in_exp, exposure_id = resolve_assignment(
            state, principal, unquote(key), user_id, item_id, _id(params, "force_variant"), device_of(agent), agent)
        status = 200
        if content:
            payload = await content_answer(state, exp, variant, in_exp, exposure_id, item_id)
        else:
            payload = json_bytes({"experiment": exp.record.key, "variant": variant, "in_experiment": in_exp,
                                  "exposure_id": exposure_id})
    except ApiError as exc:
        status = exc.status
        payload = json.dumps(error_body(exc.code, exc.message, exc.field)).encode()
        headers += [(k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()]
    return await _answer(send, status, headers, payload)


async def _answer(send: Send, status: int, headers: list, payload: bytes) -> int:
    headers.append((b"content-length", str(len(payload)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
    return status
