"""Importing a catalog file (`armor-ab catalog import`): check it whole, store its photos, then its items.

All or nothing: every row is checked first (``armor_ab.catalog.importer``); only then are the photos
written into the database's content-addressed image store and the items stored in one transaction
(``armor_ab.store.catalog.import_items``). A fault leaves the database as it was; at worst a photo
written before a failed transaction stays in the store unreferenced (a rerun reuses it).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from armor_ab.catalog.importer import IMAGE_COLUMN, CatalogFileError, parse_catalog
from armor_ab.store.catalog import CatalogImport, image_path, import_items, write_photo


def import_catalog(
    con: duckdb.DuckDBPyConnection, path: Path | str, images_dir: Path | str | None, db_images_dir: Path,
) -> CatalogImport:
    """Import ``path`` (CSV, JSON lines or Parquet) into the catalog; returns what changed.

    ``images_dir`` is where the file's ``image`` paths start (None: the file's directory);
    ``db_images_dir`` is the database's image store (``armor_ab.store.content.images_dir_for``).
    Raises ``CatalogFileError`` (file, row, column) before anything is written.
    """
    parsed = parse_catalog(path, images_dir)
    for photo in parsed.photos.values():
        if image_path(db_images_dir, photo.sha256, photo.media_type).exists():
            continue  # stored by an earlier import: same hash, same bytes
        try:
            data = photo.read()
        except OSError as exc:
            raise CatalogFileError(parsed.path, photo.row, IMAGE_COLUMN, str(exc)) from None
        write_photo(db_images_dir, photo.sha256, photo.media_type, data)
    return import_items(con, parsed.items, file=parsed.path.name, file_sha256=parsed.file_sha256)
