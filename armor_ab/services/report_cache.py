"""A cache of experiment reports: computing one reads every event of the experiment.

A cached report is served as is while nothing it depends on changed: the experiment's record
(spec, status, bucket version) and the number of events the writer has committed. A changed
record always recomputes. Under live traffic events keep arriving, so a report is also served
while younger than ``max_age`` seconds although events arrived since (product managers look
daily; a minute-old figure is the same figure), and recomputed once older.
One computation per experiment runs at a time; concurrent requests wait for it instead of
starting their own.

A report refused for its budget (``report_timeout``, ``report_too_large``: ``services.reports``)
is remembered for ``refusal_ttl`` seconds while the experiment's record is unchanged: asking again
at once gets the same answer without spending another budget on it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from armor_ab.services.errors import ServiceError

REMEMBERED_REFUSALS = frozenset({"report_timeout", "report_too_large"})


@dataclass
class _Entry:
    version: tuple
    computed_at: float
    body: bytes


@dataclass
class _Refusal:
    record_version: tuple
    at: float
    error: ServiceError


@dataclass
class ReportCache:
    max_age: float = 60.0
    refusal_ttl: float = 30.0
    _entries: dict[tuple, _Entry] = field(default_factory=dict)
    _refusals: dict[tuple, _Refusal] = field(default_factory=dict)
    _locks: dict[tuple, asyncio.Lock] = field(default_factory=dict)

    async def get(
        self, key: tuple, version: tuple, compute: Callable[[], Awaitable[bytes]], events: int = 0
    ) -> tuple[bytes, float]:
        """(report JSON, its age in seconds), awaiting ``compute`` (the database process) when stale.

        ``version`` must match exactly; ``events`` (the committed-event count) may have moved on
        for at most ``max_age`` seconds.
        """
        version = (version, events)
        entry = self._fresh(key, version)
        if entry is None:
            lock = self._locks.setdefault(key, asyncio.Lock())
            async with lock:
                entry = self._fresh(key, version)  # someone else may have computed it meanwhile
                if entry is None:
                    self._refused(key, version[0])
                    try:
                        body = await compute()
                    except ServiceError as exc:
                        if exc.code in REMEMBERED_REFUSALS:
                            self._refusals[key] = _Refusal(version[0], time.monotonic(), exc)
                        raise
                    self._refusals.pop(key, None)
                    entry = self._entries[key] = _Entry(version, time.monotonic(), body)
        return entry.body, time.monotonic() - entry.computed_at

    def _refused(self, key: tuple, record_version: tuple) -> None:
        """Raise the refusal remembered for ``key``, if it is young and its record unchanged."""
        refusal = self._refusals.get(key)
        if refusal is None:
            return
        if refusal.record_version != record_version or time.monotonic() - refusal.at >= self.refusal_ttl:
            del self._refusals[key]
            return
        e = refusal.error
        raise ServiceError(e.status, e.code, e.message, e.field, e.headers)

    def _fresh(self, key: tuple, version: tuple) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.version == version:
            return entry
        same_record = entry.version[0] == version[0]
        if same_record and time.monotonic() - entry.computed_at < self.max_age:
            return entry
        return None
