"""What an event is, and how a validated batch becomes an Arrow table for the writer.

The same validation serves ``POST /v1/events`` and ``armor-ab events import``: bad input is
refused with the field at fault, never half-written. What a well-formed event must also satisfy to
be trusted for its experiment (the assigned variant, declared segments, a ``ts`` after the
experiment existed) is checked per event by the service (``armor_ab.services.ingest``), which
answers the refused ones in ``EventsAccepted.refused``.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

# The columns are declared once, in event_schema; ARROW_SCHEMA and EVENT_TYPES stay importable here.
from armor_ab.event_schema import ARROW_SCHEMA, CLIENT_COLUMNS, COLUMN_NAMES, EVENT_TYPES

MAX_BATCH = 1000
MAX_DWELL_MS = 24 * 3600 * 1000  # one page view longer than a day is a broken client, not a reader
MAX_FUTURE = timedelta(minutes=5)  # armor-ab.js sends times on the server's clock; 5 min covers the rest
MIN_TS = datetime(2000, 1, 1, tzinfo=UTC)  # no event is older: a ts of year 1 is a broken client
CONTROL_CHARS = r"\x00-\x1f\x7f-\x9f"  # C0, DEL and C1 control characters (NUL among them)

# An id (experiment, variant, visitor, item): 1 to 200 characters, none of them a control character.
Id = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=rf"^[^{CONTROL_CHARS}]+$")]
# A UUID in its canonical text form, kept as text: parsing into uuid.UUID and printing it back
# costs more than the rest of a batch's validation. DuckDB stores it as a 128-bit UUID.
EventId = Annotated[
    str,
    StringConstraints(
        to_lower=True, pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    ),
]
PropertyValue = Annotated[str, StringConstraints(max_length=500)] | int | Annotated[float, Field(allow_inf_nan=False)] | bool | None


class EventIn(BaseModel):
    """One event as clients send it (``EventCreate``): exactly the client-sent columns of
    ``EVENT_SCHEMA``, in its order (checked below, at import)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: EventId
    experiment: Id
    variant: Id | None = None
    user_id: Id
    item_id: Id | None = None
    type: Literal[EVENT_TYPES]  # type: ignore[valid-type]  # Literal of a tuple: its members
    # Strict: a JSON number only, never "100" or true (bool is no number here, nor is a string).
    value: float | None = Field(default=None, allow_inf_nan=False, strict=True)
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
            if self.ts < MIN_TS:
                raise ValueError(f"ts is before {MIN_TS:%Y-%m-%d}: not a time an event happened")
            if self.ts > datetime.now(UTC) + MAX_FUTURE:
                raise ValueError("ts is more than 5 minutes in the future (send times on the server's clock)")
        return self


class EventBatch(BaseModel):
    """The body of ``POST /v1/events``."""

    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


REFUSAL_CODES = ("variant_mismatch", "undeclared_segment", "ts_out_of_range")


class RefusedEvent(BaseModel):
    """One event of a batch the service did not store (the others were): where, why and which field."""

    index: int  # position in the batch's ``events``
    code: Literal[REFUSAL_CODES]  # type: ignore[valid-type]
    field: str  # e.g. ``events[3].variant``
    message: str


class EventsAccepted(BaseModel):
    """The answer to a batch: how many rows were new, how many were retries already stored, and the
    events refused one by one (present only when there are some: a fully accepted batch is answered
    ``{"accepted", "duplicates"}`` as before). Refused events are not stored and never will be:
    resending them is pointless."""

    accepted: int
    duplicates: int
    refused: list[RefusedEvent] = Field(default_factory=list)


def _check_wire_model() -> None:
    """Fail at import if ``EventIn`` drifts from the client-sent columns of ``EVENT_SCHEMA``."""
    fields = tuple(EventIn.model_fields)
    if fields != CLIENT_COLUMNS:
        raise RuntimeError(f"EventIn has fields {fields}, EVENT_SCHEMA's client columns are {CLIENT_COLUMNS}")


_check_wire_model()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# json.dumps with options builds a new encoder per call; one shared encoder is 3x cheaper.
_encode_properties = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode
_US = timedelta(microseconds=1)


def micros(ts: datetime) -> int:
    """Microseconds since the epoch: the form timestamps travel in to the writer."""
    return (ts - _EPOCH) // _US


def event_rows(events: Iterable[EventIn], received_at: datetime | None = None, source: str = "client") -> list[tuple]:
    """One tuple per event in ``EVENT_SCHEMA`` order, timestamps as integer microseconds.

    ts defaults to the receive time; ``source`` is who sent them (``EVENT_SOURCES``). Tuples are what the API ships to the database process:
    they pickle faster than an Arrow table of the same rows is built. The tuple is spelled out
    inline (a call per event would cost more than the rest of the loop); ``_check_event_rows``
    pins it to the declaration at import and ``tests/test_event_schema.py`` round-trips it.
    """
    received = micros(received_at or datetime.now(UTC))
    return [
        (e.event_id, e.experiment, e.variant, e.user_id, e.item_id, e.type, e.value,
         micros(e.ts) if e.ts is not None else received, received,
         _encode_properties(e.properties) if e.properties else None, source)
        for e in events
    ]


def _check_event_rows() -> None:
    """Fail at import if ``event_rows`` puts a value at another position than ``EVENT_SCHEMA``'s:
    a probe event whose every field holds a marker naming its column must come out in column order."""
    sent: dict[str, object] = {name: name for name in CLIENT_COLUMNS}
    sent.update(ts=_EPOCH + _US, properties={"properties": 1})
    stored: dict[str, object] = {name: name for name in COLUMN_NAMES}
    stored.update(ts=1, received_at=2, properties='{"properties":1}')
    row = event_rows([EventIn.model_construct(**sent)], _EPOCH + 2 * _US, source="source")[0]
    expected = tuple(stored[name] for name in COLUMN_NAMES)
    if row != expected:
        raise RuntimeError(f"event_rows builds {row}, EVENT_SCHEMA wants {expected}")


_check_event_rows()


def rows_to_arrow(rows: list[tuple]) -> pa.Table:
    """Column-wise Arrow table of ``event_rows`` output (pyarrow converts zone-aware datetimes ten
    times slower than integers, hence the microseconds)."""
    if not rows:
        return ARROW_SCHEMA.empty_table()
    columns = zip(*rows, strict=True)
    return pa.table([pa.array(col, field.type) for col, field in zip(columns, ARROW_SCHEMA, strict=True)],
                    schema=ARROW_SCHEMA)


def to_arrow(events: Iterable[EventIn], received_at: datetime | None = None, source: str = "client") -> pa.Table:
    """Validated events as an Arrow table in ``events`` column order (import, tests)."""
    return rows_to_arrow(event_rows(events, received_at, source))


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


_NS = uuid.NAMESPACE_URL.bytes


def exposure_event_id(experiment: str, bucket_version: int, user_id: str) -> str:
    """A visitor's first exposure has a fixed id (a UUIDv5), so logging it again is a no-op.

    Equal to ``str(uuid.uuid5(uuid.NAMESPACE_URL, name))``, computed without building UUID objects
    (this runs on every assignment request).
    """
    name = f"armor-ab:exposure:{experiment}:{bucket_version}:{user_id}".encode()
    h = bytearray(hashlib.sha1(_NS + name).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x50  # version 5
    h[8] = (h[8] & 0x3F) | 0x80  # RFC 4122 variant
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"
