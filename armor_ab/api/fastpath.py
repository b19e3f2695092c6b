"""The assignment hot path at the ASGI level, below FastAPI's routing and dependency solver.

Every page view asks for its visitor's variant, so this one route is served straight from the
ASGI scope: it costs about a third of the FastAPI route it shadows. The FastAPI route with the
same path stays registered: it documents the endpoint in OpenAPI, serves it when the fast path
is switched off (``Settings.fast_path``), and shares every rule with this path
(``resolve_assignment``, ``key_principal``, the error shape); ``tests/test_api.py`` checks that
both answer every case alike.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, unquote

from starlette.types import Scope, Send

from armor_ab.api.deps import key_principal
from armor_ab.api.errors import ApiError, error_body
from armor_ab.api.routes.client import MAX_ID, resolve_assignment
from armor_ab.api.state import AppState

ROUTE = "/v1/experiments/{key}/assignment"  # the metrics label, as for the FastAPI route
PREFIX = "/v1/experiments/"
SUFFIX = "/assignment"
_JSON = [(b"content-type", b"application/json")]


def match(scope: Scope) -> str | None:
    """The experiment key when this request is ``GET /v1/experiments/{key}/assignment``."""
    if scope["method"] != "GET":
        return None
    path: str = scope["path"]
    if not (path.startswith(PREFIX) and path.endswith(SUFFIX)):
        return None
    key = path[len(PREFIX) : -len(SUFFIX)]
    return key if key and "/" not in key else None


def _params(scope: Scope) -> dict[str, str]:
    return dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))


def _id(params: dict[str, str], name: str, required: bool = False) -> str | None:
    value = params.get(name) or None
    if value is None and required:
        raise ApiError(422, "validation_error", f"query parameter {name} is required", field=name)
    if value is not None and len(value) > MAX_ID:
        raise ApiError(422, "validation_error", f"{name} must be at most {MAX_ID} characters", field=name)
    return value


def _token(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


async def serve_assignment(state: AppState, key: str, scope: Scope, send: Send, request_id: str) -> int:
    """Answer the request; returns the HTTP status sent."""
    headers = [*_JSON, (b"x-request-id", request_id.encode())]
    try:
        token = _token(scope)
        if token is None:
            raise ApiError(401, "unauthorized", "missing API key: send `Authorization: Bearer <key>`",
                           headers={"WWW-Authenticate": "Bearer"})
        principal = key_principal(state, token, "client")
        params = _params(scope)
        exp, variant, in_exp, exposure_id = resolve_assignment(
            state, principal, unquote(key), _id(params, "user_id", True), _id(params, "item_id"),
            _id(params, "force_variant"),
        )
        status = 200
        body = {"experiment": exp.record.key, "variant": variant, "in_experiment": in_exp,
                "exposure_id": exposure_id}
    except ApiError as exc:
        status = exc.status
        body = error_body(exc.code, exc.message, exc.field)
        headers += [(k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()]
    payload = json.dumps(body, separators=(",", ":")).encode()
    headers.append((b"content-length", str(len(payload)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
    return status
