"""The whole server: the API with the browser side mounted on it, run on uvicorn (``armor-ab serve``).

The one place web/ touches the API: it takes the app ``armor_ab.api.app.create_app`` builds and
mounts the snippet and the example site on it.

Slow and idle clients are cut at the connection (``guarded_protocol``, uvicorn's httptools protocol
with timers; see docs/security.md, "Slow and idle clients"): a request's headers must arrive within
``header_timeout`` of the connection (or of its first byte, on a kept-alive connection), its body
within ``body_timeout`` (the API answers 408 itself; the connection is cut a second later when the
app never read it), a kept-alive connection idles at most ``keep_alive_timeout``, and at most
``max_connections`` are open at once (beyond: 503 and close).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from dataclasses import dataclass

from fastapi import FastAPI

from armor_ab.api.app import ServerSettings, create_app
from armor_ab.services.errors import error_body
from armor_ab.web.routes import site_router

log = logging.getLogger("armor_ab.web")


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a client may take, and how many may be connected at once (``armor-ab serve`` options)."""

    header_timeout: float = 10.0  # connect (or a later request's first byte) -> end of the headers; else 408
    keep_alive_timeout: float = 5.0  # idle between requests on a kept-alive connection; then closed
    max_connections: int = 1024  # open at once; the next one gets 503 and is closed
    max_header_bytes: int = 64 * 1024  # a request line and headers larger than this get 431
    body_grace: float = 1.0  # seconds past ServerSettings.body_timeout before an unread body's connection is cut

    def __post_init__(self) -> None:
        for name in ("header_timeout", "keep_alive_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")


def create_server(settings: ServerSettings) -> FastAPI:
    """The API over one DuckDB file, with the snippet (``/v1/sdk/armor-ab.js``) and the example site (``/demo/``)."""
    app = create_app(settings)
    app.include_router(site_router)
    return app


def _response(status: int, reason: str, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 answer in the API's error shape that closes the connection."""
    body = json.dumps(error_body(code, message)).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode("ascii") + body


_IDLE, _HEADERS, _BODY, _DONE = range(4)  # where a connection is in its current request


def guarded_protocol(limits: ConnectionLimits, body_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with a header timeout, an unread-body backstop, idle cut-off and a
    connection limit: one timer per connection at a time, armed and cancelled by the parser's callbacks."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    base = HttpToolsProtocol

    timed_out = _response(408, "Request Timeout", "request_timeout",
                          f"the request did not arrive within {limits.header_timeout:g} s")
    body_timed_out = _response(408, "Request Timeout", "request_timeout",
                               f"the request body did not arrive within {body_timeout:g} s")
    too_many = _response(503, "Service Unavailable", "unavailable",
                         f"too many open connections (at most {limits.max_connections}); retry later")
    too_large = _response(431, "Request Header Fields Too Large", "request_header_fields_too_large",
                          f"the request line and headers are over {limits.max_header_bytes} bytes")
    malformed = _response(400, "Bad Request", "bad_request", "malformed HTTP request: the server could not parse it")

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._timer: asyncio.TimerHandle | None = None
            self._phase = _IDLE
            self._header_bytes = 0  # bytes read in earlier reads of the current request's headers
            self._read = 0  # bytes of the latest read
            self._refused = self._oversized = False

        # -- the timer -------------------------------------------------------------------------
        def _arm(self, seconds: float) -> None:
            self._timer = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _expired(self) -> None:
            self._timer = None
            if self.transport.is_closing():
                return
            cycle, phase = self.cycle, self._phase
            idle = cycle is None or cycle.response_complete
            if phase == _HEADERS and idle:
                self._answer_and_close(timed_out)
            elif phase == _BODY and cycle is not None and not cycle.response_started:
                # The app never read the body (or is still busy): its reads end, its answer is dropped.
                cycle.disconnected = True
                cycle.message_event.set()
                self._answer_and_close(body_timed_out)
            elif not idle:
                cycle.keep_alive = False  # a request still answering: close once its answer is out
                self.flow.pause_reading()
            else:
                self.transport.close()  # nothing asked (idle, blank lines, or an answered request's body)

        def _answer_and_close(self, response: bytes) -> None:
            self.transport.write(response)
            self.transport.close()

        # -- the connection --------------------------------------------------------------------
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                # Refused at once, so that a flood holds no descriptor for long: the 503, a FIN, and a
                # second to read what the client sent meanwhile (closing on unread data resets it).
                self._refused = True
                self.connections.discard(self)
                transport.write(too_many)
                if transport.can_write_eof():
                    transport.write_eof()
                self._timer = self.loop.call_later(1.0, transport.close)
                return
            self._arm(limits.header_timeout)  # the first request's headers are due from the connection on

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            self._read = len(data)
            base.data_received(self, data)
            # Timers are armed here, after the parser ran, so that a request that arrives whole in one
            # read (the usual case) costs none: the parser's callbacks only cancel.
            phase = self._phase
            if phase == _HEADERS:
                self._header_bytes += len(data)
                if self._header_bytes > limits.max_header_bytes and not self.transport.is_closing():
                    self._disarm()
                    self._answer_and_close(too_large)
                elif self._timer is None:
                    self._arm(limits.header_timeout)
            elif self._timer is None:
                if phase == _BODY:
                    self._arm(body_timeout + limits.body_grace)  # the body is still coming
                elif self.timeout_keep_alive_task is None and (self.cycle is None or self.cycle.response_complete):
                    self._arm(limits.keep_alive_timeout)  # bytes that began no request: idle all the same

        def send_400_response(self, msg: str) -> None:
            self._disarm()
            self._answer_and_close(too_large if self._oversized else malformed)

        # -- the parser's callbacks ------------------------------------------------------------
        # The parent's methods are called directly (cheaper than super() on the per-request path).
        def on_message_begin(self) -> None:
            base.on_message_begin(self)
            self._phase = _HEADERS
            self._header_bytes = 0

        def on_headers_complete(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._phase = _BODY
            # Headers that arrived in one large read are measured here (cheaply skipped for small reads);
            # raising stops the parser, and uvicorn then calls send_400_response.
            if self._header_bytes + self._read > limits.max_header_bytes and self._header_size() > limits.max_header_bytes:
                self._oversized = True
                raise ValueError("request headers too large")
            base.on_headers_complete(self)

        def _header_size(self) -> int:
            return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

        def on_message_complete(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._phase = _DONE
            base.on_message_complete(self)

    return GuardedHttpToolsProtocol


def serve(
    settings: ServerSettings, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
    limits: ConnectionLimits | None = None,
) -> None:
    """Run the server on uvicorn with uvloop and httptools (guarded: ``guarded_protocol``) until interrupted."""
    import resource

    import uvicorn

    from armor_ab.logs import setup_logging

    setup_logging(log_level.upper())
    limits = limits or ConnectionLimits()
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and limits.max_connections > soft - 64:
        log.warning("max connections lowered to the open-file limit", extra={
            "asked": limits.max_connections, "nofile": soft, "max_connections": max(1, soft - 64)})
        from dataclasses import replace

        limits = replace(limits, max_connections=max(1, soft - 64))
    # The writer thread and the event loop share the GIL; the default 5 ms switch interval makes
    # every GIL hand-off of the writer wait behind request parsing (a convoy), so hand off sooner.
    sys.setswitchinterval(0.0005)
    app = create_server(settings)
    uvicorn.run(
        app, host=host, port=port, loop="uvloop", http=guarded_protocol(limits, settings.body_timeout),
        access_log=False, log_config=None, log_level=log_level, timeout_graceful_shutdown=10,
        timeout_keep_alive=limits.keep_alive_timeout, ws="none",  # no WebSocket routes: upgrades are refused
    )
