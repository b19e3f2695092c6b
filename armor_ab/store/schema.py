"""The DuckDB schema: the one contract analysts, the API and the statistics engine share.

``docs/events.md`` documents the ``events`` table; ``tests/test_docs.py`` checks that the docs
and this DDL name the same columns. The ``events`` columns come from ``armor_ab.event_schema``
(``tests/test_event_schema.py`` checks the live table against it).

The database records its schema version (table ``schema_version``); ``ensure_schema`` migrates an
older one in place, see ``armor_ab.store.migrations`` and ``docs/migrations.md``.
"""

from __future__ import annotations

import duckdb

# The events table is declared once, in armor_ab.event_schema (with its Arrow schema and row order);
# EVENT_COLUMNS and EVENT_TYPES stay importable from here.
from armor_ab.event_schema import EVENT_COLUMNS, EVENT_TYPES, EVENTS_DDL
from armor_ab.store.catalog import CATALOG_DDL
from armor_ab.store.migrations import SCHEMA_VERSION, SchemaVersionError, upgrade

__all__ = ["DDL", "EVENT_COLUMNS", "EVENT_TYPES", "SCHEMA_VERSION", "SchemaVersionError", "ensure_schema"]

DDL = EVENTS_DDL + """
CREATE TABLE IF NOT EXISTS experiments (
    key VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL,
    status VARCHAR NOT NULL DEFAULT 'draft',  -- draft | running | stopped
    spec JSON NOT NULL,                       -- the ExperimentSpec as applied
    bucket_version INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    started_at TIMESTAMPTZ,
    stopped_at TIMESTAMPTZ,
    paused_at TIMESTAMPTZ,                    -- set while its ARMOR arms serve control's copy (health or a human)
    pause_cause VARCHAR                       -- why: the health check's reason, or the human's note
);
CREATE TABLE IF NOT EXISTS experiment_history (
    key VARCHAR NOT NULL,
    revision INTEGER NOT NULL,
    action VARCHAR NOT NULL,                  -- create | update | start | stop | rebucket | repair | pause | resume
                                              -- | acknowledgement_end (the monitor: a resume's acknowledgement ended)
    status VARCHAR NOT NULL,
    bucket_version INTEGER NOT NULL,
    spec JSON NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL,
    note VARCHAR,                             -- pause and resume: the cause, and who
    PRIMARY KEY (key, revision)
);
CREATE TABLE IF NOT EXISTS content (
    experiment VARCHAR NOT NULL,
    variant VARCHAR NOT NULL,
    item_id VARCHAR NOT NULL,
    status VARCHAR NOT NULL,                  -- pending | approved | rejected | stale (its item changed)
    content JSON NOT NULL,                    -- InterleavedContent.to_json(): images by SHA-256
    digest VARCHAR NOT NULL,                  -- SHA-256 of that JSON
    prompt VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    generated_at TIMESTAMPTZ NOT NULL,
    reviewed_at TIMESTAMPTZ,
    checks JSON,                              -- the guardrails' results (armor_ab.guardrails); NULL: never checked
    verdict VARCHAR,                          -- pass | warn | fail (a blocking check failed: never served)
    reviewed_by VARCHAR,                      -- who set the status: a reviewer's name, or 'guardrails'
    reviewed_key VARCHAR,                     -- the API key id of that review ('cli' from the command line)
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
""" + CATALOG_DDL


def ensure_schema(con: duckdb.DuckDBPyConnection, where: str = "the database") -> list[int]:
    """Create every table that does not exist yet and migrate an older schema (idempotent).

    One transaction: a fresh database gets the DDL and the current version; an older one runs
    its missing migrations. Returns the versions migrated to (empty when none ran). A database
    newer than this code raises ``SchemaVersionError`` and is left as it was.
    """
    return upgrade(con, DDL, where=where)
