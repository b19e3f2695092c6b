"""Where a warehouse's events are, and what they are called: a warehouse file (YAML).

The statistics read docs/events.md's columns. A warehouse whose events are the armor-ab event log (the
store's table, or the Parquet lake it exports) needs nothing more than its URL. A warehouse that holds the
events under other names, or that holds the operator's own exposure and conversion tables instead
(GrowthBook's "assignment query" and metric tables), maps them in a warehouse file::

    # warehouse.yaml
    url: spark://local[2]                 # or duckdb:///…, "chdb:" (quoted), clickhouse://…, sc://…
    parquet: lake/events                  # optional: register `table` over these Parquet files first
    table: events                         # the events table (default events)
    unique: true                          # optional: its rows are unique by event_id (no deduplication)

    # Either the documented schema under other names (columns left out keep their own name):
    events:
      table: analytics.ab_events          # or sql: SELECT …
      columns: {user_id: visitor_id, ts: event_time, source: null}

    # Or the operator's own tables:
    exposures:                            # one row per exposure: who saw which variant when
      table: segment.experiment_viewed
      columns: {user_id: anonymous_id, experiment: experiment_id, variant: variation_id, ts: "timestamp"}
      properties: {device: context_device_type, category: product_category}   # the report's segments
      where: "context_page_path LIKE '/products/%'"
    conversions:                          # one entry per event type the metrics read
      - type: inquiry
        table: segment.form_submitted
        columns: {user_id: anonymous_id, ts: "timestamp", value: revenue}
      - type: page_view
        table: segment.pages
        columns: {user_id: anonymous_id, ts: "timestamp", item_id: product_sku}
      - type: dwell                       # value: milliseconds
        table: segment.page_timing
        columns: {user_id: anonymous_id, ts: "timestamp", value: "dwell_seconds * 1000"}

A column's value is a column name or a SQL expression in the warehouse's own dialect (the file is an
operator's, like GrowthBook's SQL; it is never taken from a request). ``properties`` is a mapping of
segment keys to expressions (built into JSON with the dialect's own function) or one expression that
already gives JSON text. A conversion table has no experiment: its rows count for the experiment being
analysed (``$exp``), from each visitor's first exposure on, as the analysis contract says. Without an
``event_id`` on every part the rows are counted as they are (no deduplication). Mapped rows have no
``source`` unless one is mapped, so ``exposures: server`` lets every mapped exposure in.

``render(mapping, dialect)`` gives the ``armor_ab.stats.sql.Relation`` the statistics read;
``load_warehouse_file(path)`` reads and validates a file, with errors naming the file and the field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from armor_ab.stats.dialects import Dialect, used_parameters
from armor_ab.stats.dialects import dialect as get_dialect
from armor_ab.stats.sql import Relation, check_source, union_all

# docs/events.md's columns that the statistics read, with their kinds (``Dialect.types``).
EVENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("event_id", "string"), ("experiment", "string"), ("variant", "string"), ("user_id", "string"),
    ("item_id", "string"), ("type", "string"), ("value", "float"), ("ts", "timestamp"),
    ("properties", "string"), ("source", "string"),
)
EVENT_COLUMN_NAMES = tuple(c for c, _ in EVENT_COLUMNS)
CONVERSION_TYPES = ("page_view", "dwell", "inquiry")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_STATEMENT_BREAK = re.compile(r";\s*\S")

Expression = Annotated[str, Field(min_length=1, max_length=2000)]


def _check_expression(text: str, where: str) -> str:
    """An operator's SQL fragment: one expression or SELECT (no second statement), no ``$`` parameters."""
    if _STATEMENT_BREAK.search(text):
        raise ValueError(f"{where}: one SQL expression or SELECT, not several statements")
    if used_parameters(text):
        raise ValueError(f"{where}: no $parameters (the analysis binds its own)")
    return text.strip().rstrip(";")


class _Table(BaseModel):
    """A table or a SELECT, with optional row filter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str | None = None
    sql: Expression | None = None
    where: Expression | None = None

    @field_validator("table")
    @classmethod
    def _table_name(cls, v: str | None) -> str | None:
        return None if v is None else check_source(v)

    @field_validator("sql", "where")
    @classmethod
    def _one_statement(cls, v: str | None, info) -> str | None:
        return None if v is None else _check_expression(v, info.field_name)

    @model_validator(mode="after")
    def _table_or_sql(self):
        if (self.table is None) == (self.sql is None):
            raise ValueError("give exactly one of table and sql")
        return self

    def from_clause(self) -> str:
        source = self.table if self.table is not None else f"(\n{self.sql}\n) t"
        return f"FROM {source}" + (f"\nWHERE {self.where}" if self.where else "")


def _check_columns(columns: dict[str, str | None], allowed: tuple[str, ...]) -> dict[str, str | None]:
    unknown = sorted(set(columns) - set(allowed))
    if unknown:
        raise ValueError(f"unknown column {unknown[0]!r}: the columns are {', '.join(allowed)}")
    return {k: None if v is None else _check_expression(v, f"columns.{k}") for k, v in columns.items()}


def _check_properties(value: dict[str, str] | str | None) -> dict[str, str] | str | None:
    if isinstance(value, str):
        return _check_expression(value, "properties")
    if isinstance(value, dict):
        for key, expr in value.items():
            if not _KEY.match(key):
                raise ValueError(f"segment key {key!r} is not a plain identifier")
            _check_expression(expr, f"properties.{key}")
    return value


class EventsTable(_Table):
    """The documented schema under other names: ``columns`` maps an event column to the table's
    column or expression (null: the table has none); a column left out keeps its own name."""

    columns: dict[str, Expression | None] = Field(default_factory=dict)
    properties: dict[str, Expression] | None = None  # segments from columns, instead of columns.properties

    @field_validator("columns")
    @classmethod
    def _columns(cls, v: dict[str, str | None]) -> dict[str, str | None]:
        v = _check_columns(v, EVENT_COLUMN_NAMES)
        for required in ("experiment", "user_id", "type", "ts"):
            if required in v and v[required] is None:
                raise ValueError(f"columns.{required} cannot be null: the analysis needs it")
        return v

    @field_validator("properties")
    @classmethod
    def _props(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        return _check_properties(v)  # type: ignore[return-value]


_EXPOSURE_COLUMNS = ("user_id", "experiment", "variant", "ts", "item_id", "event_id", "source")
_CONVERSION_COLUMNS = ("user_id", "ts", "value", "item_id", "event_id")


class _SegmentedTable(_Table):
    """An operator's table whose segment attributes are columns (a mapping key -> expression, built into
    JSON by the dialect) or one expression that already gives JSON text."""

    properties: dict[str, Expression] | Expression | None = None

    @field_validator("properties")
    @classmethod
    def _props(cls, v: dict[str, str] | str | None) -> dict[str, str] | str | None:
        return _check_properties(v)


class ExposureTable(_SegmentedTable):
    """The operator's exposures: one row per time a visitor saw a variant."""

    columns: dict[str, Expression | None]

    @field_validator("columns")
    @classmethod
    def _columns(cls, v: dict[str, str | None]) -> dict[str, str | None]:
        v = _check_columns(v, _EXPOSURE_COLUMNS)
        missing = [c for c in ("user_id", "experiment", "variant", "ts") if not v.get(c)]
        if missing:
            raise ValueError(f"columns.{missing[0]} is required for exposures")
        return v


class ConversionTable(_SegmentedTable):
    """One event type's rows in the operator's table: ``page_view``, ``dwell`` (``value``: milliseconds)
    or ``inquiry`` (``value``: an optional amount)."""

    type: Literal["page_view", "dwell", "inquiry"]
    columns: dict[str, Expression | None]

    @field_validator("columns")
    @classmethod
    def _columns(cls, v: dict[str, str | None]) -> dict[str, str | None]:
        v = _check_columns(v, _CONVERSION_COLUMNS)
        missing = [c for c in ("user_id", "ts") if not v.get(c)]
        if missing:
            raise ValueError(f"columns.{missing[0]} is required for conversions")
        return v

    @model_validator(mode="after")
    def _dwell_value(self):
        if self.type == "dwell" and not self.columns.get("value"):
            raise ValueError("a dwell table needs columns.value (milliseconds)")
        return self


class EventMapping(BaseModel):
    """What a warehouse calls the events (this module's docstring): the documented schema renamed
    (``events``), or exposure and conversion tables (``exposures`` and ``conversions``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    events: EventsTable | None = None
    exposures: ExposureTable | None = None
    conversions: tuple[ConversionTable, ...] = ()

    @model_validator(mode="after")
    def _one_form(self):
        if self.events is not None and (self.exposures is not None or self.conversions):
            raise ValueError("map either events, or exposures and conversions, not both")
        if self.events is None and self.exposures is None:
            if self.conversions:
                raise ValueError("conversions need exposures: the analysis starts from each visitor's exposure")
            raise ValueError("map events, or exposures and conversions")
        return self

    def has_event_ids(self) -> bool:
        """Whether every part names an ``event_id`` (otherwise the rows are counted as they are)."""
        if self.events is not None:
            return self.events.columns.get("event_id", "event_id") is not None
        parts = [self.exposures, *self.conversions]
        return all(p is not None and p.columns.get("event_id") for p in parts)


class WarehouseFile(BaseModel):
    """A warehouse file: its URL, what to register first, and the mapping if the events have other names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(min_length=1, max_length=2000)
    table: str = "events"
    parquet: str | None = None
    unique: bool | None = None
    events: EventsTable | None = None
    exposures: ExposureTable | None = None
    conversions: tuple[ConversionTable, ...] = ()

    @field_validator("table")
    @classmethod
    def _table_name(cls, v: str) -> str:
        return check_source(v)

    def mapping(self) -> EventMapping | None:
        if self.events is None and self.exposures is None and not self.conversions:
            return None
        return EventMapping(events=self.events, exposures=self.exposures, conversions=self.conversions)


class WarehouseFileError(ValueError):
    """A warehouse file that cannot be used; ``str()`` names the file and the field."""

    def __init__(self, path: Path | str, field: str | None, message: str) -> None:
        self.path, self.field, self.message = str(path), field, message
        where = f"{self.path}: field '{field}'" if field else str(path)
        super().__init__(f"{where}: {message}")


def _field(loc: tuple) -> str | None:
    parts = [str(p) for p in loc if not (isinstance(p, str) and ("function-" in p or p.startswith("[")))]
    return ".".join(parts) or None


def load_warehouse_file(path: Path | str) -> WarehouseFile:
    """Read and validate a warehouse file; ``WarehouseFileError`` names the file and the first bad field."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WarehouseFileError(path, None, f"cannot read it: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None)
        hint = " (quote a value that ends in a colon, such as \"chdb:\")" if problem and "mapping values" in problem else ""
        raise WarehouseFileError(path, None, f"not valid YAML{line}: {problem or exc}{hint}") from None
    if not isinstance(data, dict):
        raise WarehouseFileError(path, None, "expected a mapping with url and, optionally, events or exposures")
    try:
        spec = WarehouseFile.model_validate(data)
        spec.mapping()  # the mapping's own rules (one form, exposures before conversions)
    except ValidationError as exc:
        err = exc.errors()[0]
        message = str(err["msg"]).removeprefix("Value error, ")
        raise WarehouseFileError(path, _field(tuple(err["loc"])), message) from None
    return spec


def _properties(d: Dialect, value: dict[str, str] | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return d.json_object(list(value.items())) if value else None


def render(mapping: EventMapping, dialect: str | Dialect, *, unique: bool | None = None) -> Relation:
    """The mapping as one SELECT of the event columns in ``dialect`` (a ``Relation``). ``unique``: the
    rows are one per event (default: when no part names an ``event_id``, since nothing could deduplicate)."""
    d = get_dialect(dialect)
    parts: list[tuple[dict[str, str], str]] = []
    if mapping.events is not None:
        t = mapping.events
        exprs = {c: t.columns.get(c, c) for c in EVENT_COLUMN_NAMES}
        if t.properties is not None:
            exprs["properties"] = _properties(d, t.properties)
        parts.append(({c: e for c, e in exprs.items() if e is not None}, t.from_clause()))
    else:
        x = mapping.exposures
        assert x is not None
        exprs = {c: e for c, e in x.columns.items() if e is not None}
        exprs["type"] = d.literal("exposure")
        props = _properties(d, x.properties)
        if props is not None:
            exprs["properties"] = props
        parts.append((exprs, x.from_clause()))
        for conv in mapping.conversions:
            exprs = {c: e for c, e in conv.columns.items() if e is not None}
            exprs["experiment"] = "$exp"
            exprs["type"] = d.literal(conv.type)
            props = _properties(d, conv.properties)
            if props is not None:
                exprs["properties"] = props
            parts.append((exprs, conv.from_clause()))
    sql = union_all(d, EVENT_COLUMNS, parts)
    if unique is None:
        unique = not mapping.has_event_ids()
    return Relation(sql, unique=unique, dialect=d.name)

