"""What an event is, and how a validated batch becomes an Arrow table for the writer.

The same validation serves ``POST /v1/events`` and ``armor-ab events import``: bad input is
refused with the field at fault, never half-written.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

MAX_BATCH = 1000
MAX_DWELL_MS = 24 * 3600 * 1000  # one page view longer than a day is a broken client, not a reader
MAX_FUTURE = timedelta(hours=24)  # client clocks drift, but not by days

Id = Annotated[str, StringConstraints(min_length=1, max_length=200)]
PropertyValue = Annotated[str, StringConstraints(max_length=500)] | int | Annotated[float, Field(allow_inf_nan=False)] | bool | None


class EventIn(BaseModel):
    """One event as clients send it (``EventCreate``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: uuid.UUID
    experiment: Id
    variant: Id | None = None
    user_id: Id
    item_id: Id | None = None
    type: Literal["exposure", "page_view", "dwell", "inquiry"]
    value: float | None = Field(default=None, allow_inf_nan=False)
    ts: datetime | None = None
    properties: dict[Annotated[str, StringConstraints(max_length=64)], PropertyValue] | None = Field(
        default=None, max_length=32
    )

    @model_validator(mode="after")
    def _check_value(self) -> EventIn:
        if self.type == "dwell":
            if self.value is None:
                raise ValueError("a dwell event needs value = milliseconds of the page view")
            if not 0 <= self.value <= MAX_DWELL_MS:
                raise ValueError(f"dwell must be between 0 and {MAX_DWELL_MS} ms (24 h), got {self.value:g}")
        elif self.type == "inquiry":
            if self.value is not None and self.value < 0:
                raise ValueError("an inquiry's value is a money amount and cannot be negative")
        elif self.value is not None:
            raise ValueError(f"a {self.type} event carries no value")
        if self.ts is not None:
            if self.ts.tzinfo is None:
                raise ValueError("ts needs a timezone (ISO 8601 with Z or an offset)")
            if self.ts > datetime.now(UTC) + MAX_FUTURE:
                raise ValueError("ts is more than 24 hours in the future")
        return self


class EventBatch(BaseModel):
    """The body of ``POST /v1/events``."""

    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


class EventsAccepted(BaseModel):
    """The answer to a batch: how many rows were new, and how many were retries already stored."""

    accepted: int
    duplicates: int


_TS = pa.timestamp("us", tz="UTC")
ARROW_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("experiment", pa.string()),
        ("variant", pa.string()),
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("type", pa.string()),
        ("value", pa.float64()),
        ("ts", _TS),
        ("received_at", _TS),
        ("properties", pa.string()),
    ]
)


def _json(props: Mapping[str, Any] | None) -> str | None:
    if not props:
        return None
    import json

    return json.dumps(props, separators=(",", ":"), sort_keys=True)


def to_arrow(events: Iterable[EventIn], received_at: datetime | None = None) -> pa.Table:
    """Column-wise Arrow table in ``events`` column order; ts defaults to the receive time."""
    received_at = received_at or datetime.now(UTC)
    cols: dict[str, list] = {name: [] for name in ARROW_SCHEMA.names}
    for e in events:
        cols["event_id"].append(str(e.event_id))
        cols["experiment"].append(e.experiment)
        cols["variant"].append(e.variant)
        cols["user_id"].append(e.user_id)
        cols["item_id"].append(e.item_id)
        cols["type"].append(e.type)
        cols["value"].append(e.value)
        cols["ts"].append(e.ts or received_at)
        cols["received_at"].append(received_at)
        cols["properties"].append(_json(e.properties))
    return pa.table(cols, schema=ARROW_SCHEMA)


class UnknownReferenceError(ValueError):
    """An event names an experiment or variant the platform does not know."""

    def __init__(self, index: int, field: str, message: str) -> None:
        super().__init__(message)
        self.index = index
        self.field = field
        self.message = message


def check_references(events: list[EventIn], variants_of: Mapping[str, frozenset[str]]) -> None:
    """Every event must name a known experiment and, when given, one of its variants."""
    for i, e in enumerate(events):
        known = variants_of.get(e.experiment)
        if known is None:
            raise UnknownReferenceError(i, f"events[{i}].experiment", f"unknown experiment {e.experiment!r}")
        if e.variant is not None and e.variant not in known:
            raise UnknownReferenceError(
                i, f"events[{i}].variant", f"experiment {e.experiment!r} has no variant {e.variant!r}"
            )


def exposure_event_id(experiment: str, bucket_version: int, user_id: str) -> uuid.UUID:
    """A visitor's first exposure has a fixed id, so logging it again is a no-op."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"armor-ab:exposure:{experiment}:{bucket_version}:{user_id}")
