"""Structured logs: one JSON object per line on stderr, secrets masked."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

_SECRET = re.compile(r"aab_([0-9a-f]{12})_[A-Za-z0-9-]+")
_STD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (at most ``limit`` characters; its type's name when it has
    none), for an error message that names what failed without a traceback."""
    text = str(exc).strip().splitlines()
    return text[0][:limit] if text else type(exc).__name__


def mask_secrets(text: str) -> str:
    """API keys keep their public id and lose their secret part."""
    return _SECRET.sub(r"aab_\1_***", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return mask_secrets(json.dumps(out, default=str))


class _StderrHandler(logging.StreamHandler):
    """A handler on whatever ``sys.stderr`` is when a record is written, not when the handler was made: a
    command run in-process (tests' CliRunner) swaps stderr and closes its copy afterwards."""

    @property
    def stream(self):  # noqa: D102
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup_logging(level: str = "INFO") -> None:
    """Route armor_ab and uvicorn logs through the JSON formatter (idempotent)."""
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter())
    for name in ("armor_ab", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
