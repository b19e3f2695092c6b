"""The catalog in DuckDB: ``catalog_items`` (one row per item) and ``catalog_imports`` (what each import did).

Photos live in the content-addressed image store beside the database (``images_dir_for``), as
``<sha256>.<ext>`` written before the rows that name them (a crash leaves at worst an unreferenced
file). An import is one transaction: every item of the file lands, or none does. Re-importing
updates the items whose content changed (``CatalogItem.digest``) and marks every page generated for
them ``stale``: the API does not serve a stale page until it is regenerated or re-approved.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from armor_ab.catalog.items import CatalogItem

CATALOG_DDL = """
CREATE TABLE IF NOT EXISTS catalog_items (
    id VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL,
    category VARCHAR NOT NULL,
    description VARCHAR NOT NULL,             -- the control copy
    specs JSON NOT NULL,                      -- {label: value}, in the file's order
    fields JSON NOT NULL,                     -- every other column of the file, as text
    image VARCHAR,                            -- SHA-256 of the photo in the image store
    image_type VARCHAR,                       -- image/png | image/jpeg | image/webp
    digest VARCHAR NOT NULL,                  -- SHA-256 of the item: a re-import compares it
    position INTEGER NOT NULL,                -- order in the latest import (generation seeds use it)
    imported_at TIMESTAMPTZ NOT NULL,         -- first import
    updated_at TIMESTAMPTZ NOT NULL           -- last change
);
CREATE TABLE IF NOT EXISTS catalog_imports (
    imported_at TIMESTAMPTZ NOT NULL,
    file VARCHAR NOT NULL,                    -- the file's name (no directory)
    file_sha256 VARCHAR NOT NULL,
    items INTEGER NOT NULL,
    added INTEGER NOT NULL,
    changed INTEGER NOT NULL,
    unchanged INTEGER NOT NULL,
    absent INTEGER NOT NULL,                  -- stored items the file did not list (kept)
    stale_pages INTEGER NOT NULL
);
"""

_COLUMNS = "id, name, category, description, specs, fields, image, image_type, digest, position"
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


@dataclass(frozen=True)
class CatalogImport:
    """What an import did (also a row of ``catalog_imports``)."""

    file: str
    items: int
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: int = 0
    absent: list[str] = field(default_factory=list)  # stored before, not in this file: kept as they are
    stale_pages: int = 0  # generated pages of changed items, now stale


def image_path(images_dir: Path, sha256: str, media_type: str) -> Path:
    return Path(images_dir) / f"{sha256}.{EXTENSIONS[media_type]}"


def write_photo(images_dir: Path, sha256: str, media_type: str, data: bytes) -> Path:
    """Store a photo under its hash (atomically; an existing file already holds these bytes)."""
    path = image_path(images_dir, sha256, media_type)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
    return path


def _item(row: tuple) -> CatalogItem:
    return CatalogItem(id=row[0], name=row[1], category=row[2], description=row[3], specs=json.loads(row[4]),
                       fields=json.loads(row[5]), image=row[6], image_type=row[7])


def import_items(
    con: duckdb.DuckDBPyConnection, items: list[CatalogItem], *, file: str, file_sha256: str,
) -> CatalogImport:
    """Store ``items`` (validated, photos already written) in one transaction; returns what changed.

    New ids are added, items whose digest changed are updated and their generated pages marked
    ``stale``, the rest are left alone; stored items the file does not list are kept and reported.
    """
    now = datetime.now(UTC)
    con.execute("BEGIN")
    try:
        before = dict(con.execute("SELECT id, digest FROM catalog_items").fetchall())
        added, changed = [], []
        for position, item in enumerate(items):
            digest = item.digest()
            values = [item.id, item.name, item.category, item.description, json.dumps(item.specs),
                      json.dumps(item.fields), item.image, item.image_type, digest, position]
            if item.id not in before:
                added.append(item.id)
                con.execute(f"INSERT INTO catalog_items ({_COLUMNS}, imported_at, updated_at) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [*values, now, now])
            elif before[item.id] != digest:
                changed.append(item.id)
                con.execute("UPDATE catalog_items SET name = ?, category = ?, description = ?, specs = ?, fields = ?, "
                            "image = ?, image_type = ?, digest = ?, position = ?, updated_at = ? WHERE id = ?",
                            [*values[1:], now, item.id])
            else:
                con.execute("UPDATE catalog_items SET position = ? WHERE id = ?", [position, item.id])
        listed = {item.id for item in items}
        absent = sorted(set(before) - listed)
        # Absent items keep their place after the listed ones, in their old order.
        for offset, item_id in enumerate(absent):
            con.execute("UPDATE catalog_items SET position = ? WHERE id = ?", [len(items) + offset, item_id])
        stale = 0
        if changed:
            stale = len(con.execute(
                "UPDATE content SET status = 'stale', reviewed_at = NULL WHERE item_id IN (SELECT unnest(?)) "
                "AND status <> 'stale' RETURNING item_id", [changed]).fetchall())
        report = CatalogImport(file=file, items=len(items), added=added, changed=changed,
                               unchanged=len(items) - len(added) - len(changed), absent=absent, stale_pages=stale)
        con.execute("INSERT INTO catalog_imports VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [now, file, file_sha256, report.items, len(added), len(changed), report.unchanged,
                     len(absent), stale])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return report


def list_items(
    con: duckdb.DuckDBPyConnection, *, category: str | None = None, ids: list[str] | None = None,
    limit: int | None = None, offset: int = 0,
) -> list[CatalogItem]:
    """Items in catalog order, optionally of one category or these ids, one page at a time."""
    sql = f"SELECT {_COLUMNS} FROM catalog_items"
    where, params = [], []
    if category is not None:
        where.append("category = ?")
        params.append(category)
    if ids is not None:
        where.append("id IN (SELECT unnest(?))")
        params.append(list(ids))
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY position, id"
    if limit is not None:
        sql += " LIMIT ? OFFSET ?"
        params += [int(limit), int(offset)]
    return [_item(r) for r in con.execute(sql, params).fetchall()]


def count_items(con: duckdb.DuckDBPyConnection, *, category: str | None = None) -> int:
    if category is None:
        return con.execute("SELECT count(*) FROM catalog_items").fetchone()[0]
    return con.execute("SELECT count(*) FROM catalog_items WHERE category = ?", [category]).fetchone()[0]


def get_item(con: duckdb.DuckDBPyConnection, item_id: str) -> CatalogItem | None:
    row = con.execute(f"SELECT {_COLUMNS} FROM catalog_items WHERE id = ?", [item_id]).fetchone()
    return _item(row) if row else None


def item_positions(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Each item's place in the catalog (content generation seeds a page with it)."""
    return dict(con.execute("SELECT id, position FROM catalog_items").fetchall())
