"""Event batches: validated, checked against the live experiments, committed; 2xx only after the commit.

A batch is refused whole (400/422, nothing stored) when it is not JSON, not an ``EventBatch`` (types,
ranges, control characters in ids, a ``ts`` before 2000 or more than 5 minutes ahead), or names an
experiment or variant the platform does not know: a broken client, whose batch must not half-land.

An event that is well-formed but not trusted for the experiment it names is refused **alone**
(``check_event``): the rest of the batch commits and the answer (200) lists the refused ones in
``refused`` with their index, code and field; each refusal is counted in
``armor_ab_events_refused_total{reason}``. Those events are never stored, so a client drops them
(armor-ab.js drops its whole batch on a 2xx). The rules, for events posted with a client key:

* ``variant_mismatch``: an event naming a variant must name the one the server assigns its visitor
  under the experiment's current bucket version (an event without a variant names none: it is
  kept, as is an event of a visitor outside coverage that names no variant). Events before a
  re-bucketing are checked against the current version too (the live state keeps only that one).
* ``undeclared_segment``: an exposure's ``properties`` may hold only the segments the report reads
  (``device``, ``category`` and the spec's ``segments``); ``bot`` is the server's to set.
* ``ts_out_of_range``: ``ts`` more than a day before the experiment was created (or started, if it
  was started earlier: a simulated history).

Rows from a client key are stored with ``source = 'client'``, except an exposure that is the
server's own re-delivered: its ``event_id`` is the visitor's fixed exposure id (``exposure_event_id``
of the current bucket version) and its variant the assigned one. armor-ab.js re-sends the
``exposure_id`` the server answered so that an exposure lost in a crash still lands; the server
computed both, so it is stored as the server would have logged it (``source = 'server'``, with the
``device`` and ``category`` the server derives).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from armor_ab.bots import is_bot
from armor_ab.event_schema import COLUMN_INDEX
from armor_ab.events import (
    EventBatch,
    EventIn,
    EventsAccepted,
    RefusedEvent,
    UnknownReferenceError,
    check_references,
    event_rows,
    exposure_event_id,
)
from armor_ab.reporting.report import report_segments
from armor_ab.services.assignment import device_of
from armor_ab.services.errors import ServiceError, validation_error
from armor_ab.services.state import AppState, LiveExperiment, json_bytes
from armor_ab.store.writer import QueueFullError, StoreFaultError, WriterClosedError

TS_SLACK = timedelta(days=1)  # an event may precede its experiment's creation by this much (clocks, queues)
SERVER_PROPERTIES = frozenset({"bot"})  # set by the server only (armor_ab.bots), never taken from a client


async def commit(state: AppState, rows: list[tuple]) -> EventsAccepted:
    """Send rows to the database process and wait for the commit that holds them."""
    try:
        accepted, duplicates = await asyncio.wrap_future(state.store.submit(rows))
    except QueueFullError:  # the writer's queue in the database process is full
        state.metrics.queue_full.inc()
        raise ServiceError(503, "queue_full", "the event writer is behind; retry this batch later",
                           headers={"Retry-After": str(QueueFullError.retry_after)}) from None
    except WriterClosedError as exc:  # shutting down, or the database process died (see /healthz)
        raise ServiceError(503, "unavailable", f"{exc}; retry this batch later", headers={"Retry-After": "1"}) from None
    except StoreFaultError as exc:  # the commit failed (disk full, I/O error): nothing of the batch is stored
        raise ServiceError(503, "unavailable", f"the database cannot write now ({exc.cause}); retry this batch later",
                           headers={"Retry-After": str(exc.retry_after)}) from None
    return EventsAccepted(accepted=accepted, duplicates=duplicates)


def flag_bot_exposures(rows: list[tuple]) -> list[tuple]:
    """Exposure rows sent by a known bot carry ``"bot": true`` in their properties, as the server's own
    exposures do, so the analysis excludes the visitor whichever copy of the exposure arrives first."""
    kind, prop = COLUMN_INDEX["type"], COLUMN_INDEX["properties"]
    out = []
    for row in rows:
        if row[kind] == "exposure":
            props = json.loads(row[prop]) if row[prop] else {}
            props["bot"] = True
            row = (*row[:prop], json_bytes(props).decode(), *row[prop + 1:])
        out.append(row)
    return out


def ts_floor(exp: LiveExperiment) -> datetime:
    """The earliest ``ts`` a client event of ``exp`` may carry: a day before it was created (or started,
    when its start was set earlier than its creation: a simulated or imported history)."""
    rec = exp.record
    first = rec.created_at if rec.started_at is None else min(rec.created_at, rec.started_at)
    return first - TS_SLACK


def segment_keys(exp: LiveExperiment) -> frozenset[str]:
    """The property keys a client exposure may carry: the segments the report reads."""
    return frozenset(report_segments(exp.record)) - SERVER_PROPERTIES


def check_event(exp: LiveExperiment, i: int, e: EventIn, assigned: dict[tuple[str, str], str | None]) -> RefusedEvent | None:
    """Why event ``i`` (well-formed, of a known experiment) is not trusted, or None. ``assigned`` caches
    assignments within a batch (a batch is mostly one visitor's)."""
    key = exp.record.key
    if e.ts is not None and e.ts < (floor := ts_floor(exp)):
        return RefusedEvent(index=i, code="ts_out_of_range", field=f"events[{i}].ts",
                            message=f"ts is before {floor.isoformat()}, a day before experiment {key!r} existed")
    if e.variant is not None:
        k = (key, e.user_id)
        if k not in assigned:
            a = exp.assigner.assign(e.user_id)
            assigned[k] = a.variant if a.in_experiment else None
        if e.variant != assigned[k]:
            own = f"is assigned {assigned[k]!r}" if assigned[k] is not None else "is outside the experiment"
            return RefusedEvent(index=i, code="variant_mismatch", field=f"events[{i}].variant",
                                message=f"this visitor {own} in {key!r} (bucket version {exp.record.bucket_version}), "
                                        f"not {e.variant!r}")
    if e.type == "exposure" and e.properties:
        allowed = segment_keys(exp)
        for name in e.properties:
            if name not in allowed:
                return RefusedEvent(
                    index=i, code="undeclared_segment", field=f"events[{i}].properties.{name}",
                    message=f"an exposure's properties are the experiment's segments ({', '.join(sorted(allowed))}); "
                            f"{name!r} is not one (declare it under segments: in the experiment)")
    return None


def batch_rows(state: AppState, raw: bytes, user_agent: str | None = None) -> tuple[list[tuple], list[RefusedEvent]]:
    """The event log rows of a raw ``{"events": [...]}`` body, and the events refused one by one.

    400/422 for the whole batch when it is invalid or names an unknown experiment or variant. A
    batch from a known bot User-Agent (one regex per batch) has its exposures flagged."""
    try:
        batch = EventBatch.model_validate_json(raw)
    except ValidationError as exc:
        raise validation_error(exc.errors()) from None
    try:
        check_references(batch.events, state.variants)
    except UnknownReferenceError as exc:
        raise ServiceError(422, "unknown_reference", exc.message, field=exc.field) from None
    refused: list[RefusedEvent] = []
    kept: list[EventIn] = []
    vouched: list[int] = []  # positions in ``kept`` of the server's own exposures, re-delivered
    assigned: dict[tuple[str, str], str | None] = {}
    for i, e in enumerate(batch.events):
        exp = state.experiments[e.experiment]
        problem = check_event(exp, i, e, assigned)
        if problem is not None:
            refused.append(problem)
            state.metrics.events_refused.labels(reason=problem.code).inc()
            continue
        if (e.type == "exposure" and e.variant is not None
                and e.event_id == exposure_event_id(exp.record.key, exp.record.bucket_version, e.user_id)):
            vouched.append(len(kept))
        kept.append(e)
    rows = event_rows(kept, datetime.now(UTC), source="client")
    if vouched:
        prop, src = COLUMN_INDEX["properties"], COLUMN_INDEX["source"]
        device = device_of(user_agent)
        for j in vouched:
            e = kept[j]
            props = dict(e.properties or {})
            derived = {"category": state.categories.get(e.item_id) if e.item_id else None, "device": device}
            props.update({k: v for k, v in derived.items() if v})
            row = list(rows[j])
            row[prop], row[src] = (json_bytes(props).decode() if props else None), "server"
            rows[j] = tuple(row)
    if rows and user_agent and is_bot(user_agent):
        rows = flag_bot_exposures(rows)
    return rows, refused


async def accept_batch(state: AppState, raw: bytes, user_agent: str | None = None) -> bytes:
    """Validate and commit a raw batch: the answer's JSON (``EventsAccepted``) once it is durable.

    ``refused`` is in the answer only when some event was refused, so a fully accepted batch is
    answered as before."""
    rows, refused = batch_rows(state, raw, user_agent)
    accepted = await commit(state, rows) if rows else EventsAccepted(accepted=0, duplicates=0)
    if not refused:
        return b'{"accepted":%d,"duplicates":%d}' % (accepted.accepted, accepted.duplicates)
    return json_bytes({"accepted": accepted.accepted, "duplicates": accepted.duplicates,
                       "refused": [r.model_dump() for r in refused]})
