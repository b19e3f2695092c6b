"""The user's catalog for training and evaluation (``armor-ab train``, ``armor-ab eval``): from the database an
``armor-ab catalog import`` filled, or straight from a catalog file. The training layer cannot read the
database; this reads it and hands the items and their photo files over as an ``OwnCatalog``."""

from __future__ import annotations

from pathlib import Path

from armor_ab.training.own_pipeline import OwnCatalog


def read_own_catalog(db: Path | None, file: Path | None, images: Path | None = None) -> OwnCatalog:
    """Items and photo files of an imported catalog (``db``) or a catalog file (``file``, photos under
    ``images``, default the file's directory). Raises ``ValueError`` with a message for the user."""
    if (db is None) == (file is None):
        raise ValueError("name one catalog: --catalog-db FILE (imported) or --catalog-file FILE")
    if db is not None:
        return _from_db(Path(db))
    return _from_file(Path(file), images)


def _from_db(db: Path) -> OwnCatalog:
    import duckdb

    from armor_ab.store.catalog import image_path, list_items
    from armor_ab.store.content import images_dir_for
    from armor_ab.store.db import DatabaseLockedError, SchemaVersionError, connect

    if not db.is_file():
        raise ValueError(f"{db}: no such database file")
    try:
        con = connect(db, read_only=True)
    except (DatabaseLockedError, SchemaVersionError) as exc:
        raise ValueError(str(exc)) from None
    except duckdb.Error as exc:
        raise ValueError(f"{db}: cannot open the database ({exc})") from None
    try:
        items = list_items(con)
    except duckdb.Error as exc:
        raise ValueError(f"{db}: cannot read its catalog ({exc})") from None
    finally:
        con.close()
    if not items:
        raise ValueError(f"{db}: no catalog; import one first: armor-ab catalog import FILE --db {db}")
    store = images_dir_for(db)
    photos: dict[str, Path] = {}
    for item in items:
        if item.image and item.image_type:
            path = image_path(store, item.image, item.image_type)
            if not path.is_file():
                raise ValueError(f"{db}: the photo of item {item.id!r} is missing from the image store ({path}); "
                                 "import the catalog again")
            photos[item.id] = path
    return OwnCatalog(items, photos, {"kind": "db", "path": str(db.resolve())})


def _from_file(file: Path, images: Path | None) -> OwnCatalog:
    from armor_ab.catalog.importer import parse_catalog

    parsed = parse_catalog(file, images)  # CatalogFileError (a ValueError) names the file, row and column
    photos = {item.id: parsed.photos[item.image].path for item in parsed.items if item.image}
    source = {
        "kind": "file",
        "path": str(file.resolve()),
        "images": str((Path(images) if images else file.parent).resolve()),
        "file_sha256": parsed.file_sha256,
    }
    return OwnCatalog(parsed.items, photos, source)
