"""Pure ASGI middleware (no BaseHTTPMiddleware: it costs a task per request on the hot path).

One pass per request: a request id, the 1 MiB body limit, the body-read timeout, and the
Prometheus request metrics. ``HotPaths`` serves the three page routes (see ``fastpath``)
outermost, before Starlette's own middleware layers, and applies the same CORS rule as
``ClientCORSMiddleware`` to them itself; ``RequestContextMiddleware`` does the same bookkeeping
for every other route. ``ClientCORSMiddleware`` grants CORS to the client routes only (the ones
web pages call) and refuses a preflight in the JSON error shape.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from armor_ab.api import fastpath
from armor_ab.api.errors import BodyTimeout, body_timeout_error, error_response, internal_error
from armor_ab.services.errors import BodyTooLarge, ServiceError, error_body, too_large_error
from armor_ab.services.state import AppState

# Request ids: a random per-process prefix and a counter (uuid4 costs a syscall each).
_PREFIX = os.urandom(4).hex()
_COUNTER = itertools.count(1)
DISCONNECTED = 499  # the metrics' status of a request whose client went away before its answer (nginx's code)


def new_request_id() -> str:
    return f"{_PREFIX}-{next(_COUNTER):x}"


class _Observed:
    """What both middlewares share: request metrics and the 408 / 413 / 500 answers."""

    def __init__(self, app: ASGIApp, state: AppState) -> None:
        self.app = app
        self.state = state
        self.metrics = state.metrics
        self.max_body = state.settings.max_body_bytes
        self.body_timeout = state.settings.body_timeout
        self._children: dict[tuple[str, str, int], tuple] = {}

    def _observe(self, method: str, route: str, status: int, started: float) -> None:
        # Label lookups take a lock and hash the labels; the children are cached per label set.
        children = self._children.get((method, route, status))
        if children is None:
            children = (self.metrics.requests.labels(method, route, str(status)), self.metrics.latency.labels(route))
            self._children[(method, route, status)] = children
        children[0].inc()
        children[1].observe(time.perf_counter() - started)

    async def _send_error(self, send: Send, err: ServiceError, request_id: str, extra: list | None = None) -> None:
        body = json.dumps(error_body(err.code, err.message, err.field)).encode()
        headers = [(k.lower().encode(), v.encode()) for k, v in (err.headers or {}).items()]
        await self._send_json(send, err.status, body, request_id, [*headers, *(extra or ())])

    @staticmethod
    async def _send_json(send: Send, status: int, body: bytes, request_id: str, extra: list | None = None) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", request_id.encode()),
                    *(extra or ()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class HotPaths(_Observed):
    """The page routes, answered before any other middleware runs (``fastpath``).

    CORS is applied here as ``CORSMiddleware`` applies it to simple requests (``Vary: Origin``
    always; ``Access-Control-Allow-Origin`` for an allowed origin); preflights and every other
    route go down the full stack.
    """

    def __init__(self, app: ASGIApp, state: AppState) -> None:
        super().__init__(app, state)
        origins = state.settings.cors_origins
        self._allow_all = "*" in origins
        self._origins = {o.encode("latin-1") for o in origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot = fastpath.match(scope) if scope["type"] == "http" else None
        if hot is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = new_request_id()
        route, key = hot
        cors = self._cors(scope)
        length = _content_length(scope)
        try:
            if length is not None and length > self.max_body:
                raise BodyTooLarge(self.max_body)
            status = await fastpath.answer(self.state, route, key, scope, receive, send, request_id, cors)
        except BodyTooLarge:
            status = 413
            await self._send_error(send, too_large_error(self.max_body), request_id, cors)
        except ClientDisconnect:
            status = DISCONNECTED  # nobody left to answer
        except Exception as exc:
            status, body = internal_error(request_id, exc, scope["path"])
            await self._send_json(send, status, body, request_id, cors)
        self._observe(scope["method"], route, status, started)

    def _cors(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        for name, value in scope["headers"]:
            if name == b"origin":
                if self._allow_all:
                    return [(b"access-control-allow-origin", b"*"), (b"vary", b"Origin")]
                if value in self._origins:
                    return [(b"access-control-allow-origin", value), (b"vary", b"Origin")]
                break
        return [(b"vary", b"Origin")]


class RequestContextMiddleware(_Observed):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        abort: ServiceError | None = None  # set when the body passes the limit or its deadline mid-read
        replaced = False
        status_sent = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, replaced
            if abort is not None:
                # Whatever the app answers to a body cut short, the client gets the 413 or 408.
                if not replaced:
                    replaced = True
                    status = abort.status
                    await self._send_error(send, abort, request_id)
                return
            if message["type"] == "http.response.start":
                nonlocal status_sent
                status_sent = True
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        length = _content_length(scope)
        if length is not None and length > self.max_body:
            status = 413
            await self._send_error(send, too_large_error(self.max_body), request_id)
        else:
            received = 0
            body_done = False
            deadline = asyncio.get_running_loop().time() + self.body_timeout

            async def receive_wrapper() -> Message:
                nonlocal received, abort, body_done
                if body_done:  # after the body: disconnect listeners wait as long as they like
                    return await receive()
                try:
                    async with asyncio.timeout_at(deadline):
                        message = await receive()
                except TimeoutError:
                    abort = body_timeout_error(self.body_timeout)
                    raise BodyTimeout(self.body_timeout) from None
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.max_body:  # chunked bodies carry no Content-Length
                        abort = too_large_error(self.max_body)
                        raise BodyTooLarge(self.max_body)
                    body_done = not message.get("more_body", False)
                else:
                    body_done = True
                return message

            try:
                await self.app(scope, receive_wrapper, send_wrapper)
            except (BodyTooLarge, BodyTimeout):
                if not replaced and abort is not None:
                    replaced = True
                    status = abort.status
                    await self._send_error(send, abort, request_id)
            except ClientDisconnect:
                if not status_sent:
                    status = DISCONNECTED
            except Exception as exc:
                if status_sent:
                    raise  # the response is under way; nothing sane left to send
                status, body = internal_error(request_id, exc, scope.get("path", ""))
                await self._send_json(send, status, body, request_id)
        self._observe(scope["method"], getattr(scope.get("route"), "path", "unmatched"), status, started)


class ClientCORSMiddleware(CORSMiddleware):
    """Starlette's CORS on the client routes only (``fastpath.client_route``); a refused preflight
    answers 400 in the JSON error shape. Every other route (keys, results, metrics, …) grants no
    origin: a browser on another site cannot call it, and its preflight meets 405."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not fastpath.client_route(scope["path"]):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        # No grant at all on a refusal (Starlette keeps Allow-Origin when only the method or headers fail).
        headers = {k: v for k, v in response.headers.items()
                   if k not in ("content-type", "content-length", "access-control-allow-origin")}
        refused = response.body.decode().removeprefix("Disallowed CORS ")
        return error_response(400, "cors_refused", f"CORS preflight refused: this {refused} is not allowed",
                              headers=headers)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
