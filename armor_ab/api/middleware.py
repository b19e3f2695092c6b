"""Pure ASGI middleware (no BaseHTTPMiddleware: it costs a task per request on the hot path).

One pass per request: a request id, the 1 MiB body limit, and the Prometheus request metrics.
``HotPaths`` serves the three page routes (see ``fastpath``) outermost, before Starlette's own
middleware layers, and applies the same CORS rule as ``CORSMiddleware`` to them itself;
``RequestContextMiddleware`` does the same bookkeeping for every other route.
"""

from __future__ import annotations

import itertools
import json
import os
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from armor_ab.api import fastpath
from armor_ab.api.errors import error_body, internal_error
from armor_ab.services.errors import BodyTooLarge, too_large_error
from armor_ab.services.state import AppState

# Request ids: a random per-process prefix and a counter (uuid4 costs a syscall each).
_PREFIX = os.urandom(4).hex()
_COUNTER = itertools.count(1)


def new_request_id() -> str:
    return f"{_PREFIX}-{next(_COUNTER):x}"


class _Observed:
    """What both middlewares share: request metrics and the 413 / 500 answers."""

    def __init__(self, app: ASGIApp, state: AppState) -> None:
        self.app = app
        self.state = state
        self.metrics = state.metrics
        self.max_body = state.settings.max_body_bytes
        self._children: dict[tuple[str, str, int], tuple] = {}

    def _observe(self, method: str, route: str, status: int, started: float) -> None:
        # Label lookups take a lock and hash the labels; the children are cached per label set.
        children = self._children.get((method, route, status))
        if children is None:
            children = (self.metrics.requests.labels(method, route, str(status)), self.metrics.latency.labels(route))
            self._children[(method, route, status)] = children
        children[0].inc()
        children[1].observe(time.perf_counter() - started)

    async def _too_large(self, send: Send, request_id: str, extra: list | None = None) -> None:
        err = too_large_error(self.max_body)
        body = json.dumps(error_body(err.code, err.message)).encode()
        await self._send_json(send, 413, body, request_id, extra)

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
            await self._too_large(send, request_id, cors)
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
        too_large = False  # set when a chunked body passes the limit mid-stream
        replaced = False
        status_sent = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, replaced
            if too_large:
                # Whatever the app answers to a body cut short, the client gets the 413.
                if not replaced:
                    replaced = True
                    status = 413
                    await self._too_large(send, request_id)
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
            await self._too_large(send, request_id)
        else:
            received = 0

            async def receive_wrapper() -> Message:
                nonlocal received, too_large
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.max_body:  # chunked bodies carry no Content-Length
                        too_large = True
                        raise BodyTooLarge(self.max_body)
                return message

            try:
                await self.app(scope, receive_wrapper, send_wrapper)
            except BodyTooLarge:
                if not replaced:
                    status = 413
                    await self._too_large(send, request_id)
            except Exception as exc:
                if status_sent:
                    raise  # the response is under way; nothing sane left to send
                status, body = internal_error(request_id, exc, scope.get("path", ""))
                await self._send_json(send, status, body, request_id)
        self._observe(scope["method"], getattr(scope.get("route"), "path", "unmatched"), status, started)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
