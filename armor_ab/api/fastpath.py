"""The hot paths at the ASGI level, below FastAPI's routing and dependency solver.

Every page view asks for its visitor's variant (``…/assignment``) or content (``…/content``), and
pages send their events in batches (``POST /v1/events``), so these three routes are served straight
from the ASGI scope: about a third of the cost of the FastAPI routes they shadow. The FastAPI routes
with the same paths stay registered: they document the endpoints in OpenAPI and serve them when the
fast path is switched off (``ServerSettings.fast_path``). Both call the same services
(``armor_ab.services``: auth, assignment, serving, ingest) and render errors in the same shape;
``tests/test_fastpath_parity.py`` checks that both answer every case alike, byte for byte.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qsl

from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from armor_ab.api.errors import body_timeout_error
from armor_ab.services.assignment import assign_visitor, query_id
from armor_ab.services.auth import bearer_token, key_principal
from armor_ab.services.errors import BodyTooLarge, ServiceError, error_body
from armor_ab.services.ingest import accept_batch
from armor_ab.services.serving import content_answer
from armor_ab.services.state import AppState

PREFIX = "/v1/experiments/"
ROUTES = {"/assignment": "/v1/experiments/{key}/assignment", "/content": "/v1/experiments/{key}/content"}
EVENTS = "/v1/events"
# The routes web pages call from other origins: the only ones CORS opens (``ClientCORSMiddleware``).
CLIENT_PATHS = frozenset({EVENTS, "/v1/events/beacon", "/v1/sdk/armor-ab.js"})
_JSON = [(b"content-type", b"application/json")]


def match(scope: Scope) -> tuple[str, str] | None:
    """(metrics route label, experiment key) for ``GET /v1/experiments/{key}/assignment|content``,
    and (``/v1/events``, "") for ``POST /v1/events``."""
    if scope["method"] != "GET":
        if scope["method"] == "POST" and scope["path"] == EVENTS:
            return EVENTS, ""
        return None
    return _experiment_route(scope["path"])


def _experiment_route(path: str) -> tuple[str, str] | None:
    """``scope["path"]`` is decoded once already (by the server, as Starlette's router sees it):
    the key is used as it stands, never unquoted again."""
    if not path.startswith(PREFIX):
        return None
    rest = path[len(PREFIX) :]
    key, slash, tail = rest.rpartition("/")
    route = ROUTES.get(slash + tail)
    if route is None or not key or "/" in key:
        return None
    return route, key


def client_route(path: str) -> bool:
    """A route web pages call (assignment, content, events, the beacon, the snippet), whatever the method."""
    return path in CLIENT_PATHS or _experiment_route(path) is not None


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


def _headers(scope: Scope) -> tuple[str | None, str | None]:
    """(bearer token, User-Agent) in one pass over the headers; of a repeated header the FIRST counts,
    as with Starlette's ``request.headers.get`` on the FastAPI routes."""
    authorization = agent = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            if authorization is None:
                authorization = value
        elif name == b"user-agent" and agent is None:
            agent = value.decode("latin-1")
    return (bearer_token(authorization.decode("latin-1")) if authorization is not None else None), agent


async def _body(receive: Receive, limit: int, timeout: float) -> bytes:
    """The whole request body; ``BodyTooLarge`` once it passes ``limit`` bytes, a 408 ``ServiceError``
    when it has not all arrived within ``timeout`` seconds, ``ClientDisconnect`` when the client left."""
    chunks, size, more = [], 0, True
    try:
        async with asyncio.timeout(timeout):
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnect  # a body cut short is never taken as the whole batch
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge(limit)
                chunks.append(chunk)
                more = message.get("more_body", False)
    except TimeoutError:
        raise body_timeout_error(timeout) from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def answer(
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
        principal = key_principal(state.keys, token, "client")
        if route == EVENTS:
            payload = await accept_batch(state, await _body(receive, state.settings.max_body_bytes,
                                                           state.settings.body_timeout), agent)
            return await _answer(send, 200, headers, payload)
        params = _params(scope)
        user_id = query_id(params.get("user_id"), "user_id", True)
        item_id = query_id(params.get("item_id"), "item_id", content)
        # …/content logs the exposure once it knows the page it serves (services.serving.content_body).
        resolved = assign_visitor(state, principal, key, user_id, item_id,
                                  query_id(params.get("force_variant"), "force_variant"), agent, log=not content)
        status = 200
        payload = await content_answer(state, resolved, item_id) if content else resolved.body()
    except ServiceError as exc:
        status = exc.status
        payload = json.dumps(error_body(exc.code, exc.message, exc.field)).encode()
        headers += [(k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()]
    return await _answer(send, status, headers, payload)


async def _answer(send: Send, status: int, headers: list, payload: bytes) -> int:
    headers.append((b"content-length", str(len(payload)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
    return status
