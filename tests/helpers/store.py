"""Event rows for the database-process tests (importable by the child processes they start)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from armor_ab.events import micros


def rows(n: int, kind: str = "dwell", user: str = "u") -> list[tuple]:
    now = micros(datetime.now(UTC))
    value = 1000.0 if kind == "dwell" else None
    return [(str(uuid.uuid4()), "catalog-interleaved", "armor", user, None, kind, value, now, now, None, "client")
            for _ in range(n)]
