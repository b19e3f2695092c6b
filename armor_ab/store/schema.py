"""The DuckDB schema: the one contract analysts, the API and the statistics engine share.

``docs/events.md`` documents the ``events`` table; ``tests/test_docs.py`` checks that the docs
and this DDL name the same columns.
"""

from __future__ import annotations

import duckdb

EVENT_TYPES = ("exposure", "page_view", "dwell", "inquiry")

# Column order is the order the writer appends Arrow batches in.
EVENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("event_id", "UUID"),  # client-generated, the idempotency key: a retried batch never counts twice
    ("experiment", "VARCHAR"),
    ("variant", "VARCHAR"),  # NULL for a visitor outside coverage (who logs no exposure anyway)
    ("user_id", "VARCHAR"),
    ("item_id", "VARCHAR"),
    ("type", "VARCHAR"),  # one of EVENT_TYPES
    ("value", "DOUBLE"),  # dwell: milliseconds of one page view; inquiry: optional money amount
    ("ts", "TIMESTAMPTZ"),  # when it happened, by the client's clock
    ("received_at", "TIMESTAMPTZ"),  # when the server accepted it
    ("properties", "JSON"),  # free-form segment attributes: device, category, ...
)

DDL = f"""
CREATE TABLE IF NOT EXISTS events (
    {", ".join(f"{name} {typ}{' PRIMARY KEY' if name == 'event_id' else ''}" for name, typ in EVENT_COLUMNS)}
);
CREATE TABLE IF NOT EXISTS experiments (
    key VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL,
    status VARCHAR NOT NULL DEFAULT 'draft',  -- draft | running | stopped
    spec JSON NOT NULL,                       -- the ExperimentSpec as applied
    bucket_version INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    started_at TIMESTAMPTZ,
    stopped_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS experiment_history (
    key VARCHAR NOT NULL,
    revision INTEGER NOT NULL,
    action VARCHAR NOT NULL,                  -- create | update | start | stop | rebucket
    status VARCHAR NOT NULL,
    bucket_version INTEGER NOT NULL,
    spec JSON NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (key, revision)
);
CREATE TABLE IF NOT EXISTS content (
    experiment VARCHAR NOT NULL,
    variant VARCHAR NOT NULL,
    item_id VARCHAR NOT NULL,
    status VARCHAR NOT NULL,                  -- pending | approved | rejected
    content JSON NOT NULL,                    -- InterleavedContent.to_json(): images by SHA-256
    digest VARCHAR NOT NULL,                  -- SHA-256 of that JSON
    prompt VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    generated_at TIMESTAMPTZ NOT NULL,
    reviewed_at TIMESTAMPTZ,
    PRIMARY KEY (experiment, variant, item_id)
);
CREATE TABLE IF NOT EXISTS api_keys (
    key_id VARCHAR PRIMARY KEY,               -- public prefix shown in listings
    key_hash VARCHAR NOT NULL,                -- sha256 of the secret; the secret is never stored
    scope VARCHAR NOT NULL,                   -- client | read | admin
    name VARCHAR,
    created_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);
"""


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create every table that does not exist yet (idempotent)."""
    con.execute(DDL)
