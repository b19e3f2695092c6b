"""Event batches: validated, checked against the live experiments, committed; 2xx only after the commit."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from pydantic import ValidationError

from armor_ab.bots import is_bot
from armor_ab.event_schema import COLUMN_INDEX
from armor_ab.events import EventBatch, EventsAccepted, UnknownReferenceError, check_references, event_rows
from armor_ab.services.errors import ServiceError, validation_error
from armor_ab.services.state import AppState, json_bytes
from armor_ab.store.writer import QueueFullError, WriterClosedError


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


def batch_rows(state: AppState, raw: bytes, user_agent: str | None = None) -> list[tuple]:
    """The event log rows of a raw ``{"events": [...]}`` body: 400/422 when it is invalid or names an
    unknown experiment or variant. A batch from a known bot User-Agent (one regex per batch) has its
    exposures flagged."""
    try:
        batch = EventBatch.model_validate_json(raw)
    except ValidationError as exc:
        raise validation_error(exc.errors()) from None
    try:
        check_references(batch.events, state.variants)
    except UnknownReferenceError as exc:
        raise ServiceError(422, "unknown_reference", exc.message, field=exc.field) from None
    rows = event_rows(batch.events, datetime.now(UTC))
    if user_agent and is_bot(user_agent):
        rows = flag_bot_exposures(rows)
    return rows


async def accept_batch(state: AppState, raw: bytes, user_agent: str | None = None) -> bytes:
    """Validate and commit a raw batch: the answer's JSON (``EventsAccepted``) once it is durable."""
    accepted = await commit(state, batch_rows(state, raw, user_agent))
    return b'{"accepted":%d,"duplicates":%d}' % (accepted.accepted, accepted.duplicates)
