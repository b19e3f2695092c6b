"""The one place errors become responses: ``{"error": {"code", "message", "field"}}``.

Services raise ``ServiceError`` (``armor_ab.services.errors``); FastAPI's own validation and HTTP
errors are rendered in the same shape.

``tests/test_api_errors.py`` pins this shape. An unexpected exception answers 500 with a
request id (rendered by ``internal_error``, called from the request middleware, which is the
layer that knows the request id); its traceback goes to the log only.
"""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from armor_ab.services.errors import ServiceError, error_body, validation_error

log = logging.getLogger("armor_ab.api")


def error_response(
    status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None, **extra
) -> JSONResponse:
    return JSONResponse(error_body(code, message, field, **extra), status_code=status, headers=headers)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    431: "request_header_fields_too_large",
    503: "unavailable",
}


class BodyTimeout(Exception):
    """A request body that had not all arrived by its deadline (every door answers 408 alike)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the request body did not arrive within {seconds:g} s")
        self.seconds = seconds


def body_timeout_error(seconds: float) -> ServiceError:
    """408, and the connection is closed (the rest of the body may still be on its way)."""
    return ServiceError(408, "request_timeout", f"the request body did not arrive within {seconds:g} s",
                        headers={"Connection": "close"})


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _api_error(request: Request, exc: ServiceError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = validation_error(list(exc.errors()))
        return error_response(err.status, err.code, err.message, err.field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        return error_response(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))


def internal_error(request_id: str, exc: BaseException, path: str) -> tuple[int, bytes]:
    """Log an unexpected exception with its traceback; the client gets only the request id."""
    log.error("unhandled error", exc_info=exc, extra={"request_id": request_id, "path": path})
    body = error_body("internal_error", f"internal error; quote request id {request_id} when reporting it",
                      request_id=request_id)
    return 500, json.dumps(body).encode()
