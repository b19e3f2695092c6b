"""The errors every door answers with: a status, a stable code, a message and the field at fault.

``api/errors.py`` renders them as ``{"error": {"code", "message", "field"}}`` (tests pin the shape);
the CLI prints the message.
"""

from __future__ import annotations


def error_body(code: str, message: str, field: str | None = None, **extra: object) -> dict:
    """The one error shape every door answers with: ``{"error": {"code", "message", "field", ...}}``."""
    err: dict = {"code": code, "message": message, "field": field}
    err.update(extra)
    return {"error": err}


class ServiceError(Exception):
    """A request the service refuses: answer ``status`` with the stable ``code``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers


class BodyTooLarge(Exception):
    """A request body passed the size limit while it was read (every door answers 413 alike)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is over {limit} bytes")
        self.limit = limit


def too_large_error(limit: int) -> ServiceError:
    return ServiceError(413, "payload_too_large", f"request body is over {limit} bytes")


def _loc_to_field(loc: tuple) -> str | None:
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or None


def validation_error(errors: list) -> ServiceError:
    """The first pydantic error as our 422 (or 400 for a body that is not JSON at all)."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        detail = first.get("ctx", {}).get("error", first["msg"])
        return ServiceError(400, "invalid_json", f"request body is not valid JSON: {detail}")
    msg = first["msg"]
    if len(errors) > 1:
        msg += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return ServiceError(422, "validation_error", msg, _loc_to_field(tuple(first["loc"])))
