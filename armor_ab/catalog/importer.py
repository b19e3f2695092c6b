"""Reading a manufacturer's catalog file (CSV, JSON lines or Parquet) into validated ``CatalogItem``s.

``armor-ab catalog import FILE [--images DIR]`` goes through here (``armor_ab.services.catalog_import``
stores the result). The whole file is read and checked before anything is written, so an import is
all or nothing; the first fault raises ``CatalogFileError`` naming the file, the row and the column.

Columns:

* ``id``, ``name``, ``category``, ``description`` (the control copy): required. ``id``, ``name`` and
  ``category`` must not be empty; ``id`` must match ``items.ITEM_ID`` (it is used in URLs and events).
* the specs, either ``spec_<label>`` columns (an empty cell is no spec) or one ``specs`` column
  holding a JSON object (a JSON text in CSV, an object in JSON lines, a struct, a map or a JSON text
  in Parquet). Labels must match ``items.FIELD_NAME``; values are scalars, kept as text; at most
  ``items.MAX_SPECS`` per item.
* ``image``: optional, the photo's path relative to the images directory (default: the catalog
  file's directory). It must stay inside that directory, exist, be at most ``MAX_IMAGE_BYTES`` and
  open as PNG, JPEG or WebP. An empty cell is no photo.
* every other column is kept as text in ``CatalogItem.fields`` (a template may name it); its name must
  match ``items.FIELD_NAME``.

Rows are numbered from 1, counting data rows only (the header is not a row): in CSV row 1 is the
first record after the header, so row N is line N + 1 of a file without line breaks inside cells
(and row N + 1 of a spreadsheet); in JSON lines row N is line N; in Parquet it is the record's
position. Blank lines are no items but are counted, so the numbers still match the lines.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

from PIL import Image

from .items import (
    CORE_FIELDS,
    FIELD_NAME,
    IMAGE_TYPES,
    ITEM_ID,
    MAX_CATEGORY,
    MAX_DESCRIPTION,
    MAX_NAME,
    MAX_SPECS,
    MAX_VALUE,
    CatalogItem,
)

MAX_IMAGE_BYTES = 20 * 1024 * 1024
SPEC_PREFIX = "spec_"
SPECS_COLUMN = "specs"
IMAGE_COLUMN = "image"
CSV_SUFFIXES = (".csv",)
JSONL_SUFFIXES = (".jsonl", ".ndjson")
PARQUET_SUFFIXES = (".parquet",)
_MAX_LENGTH = {"name": MAX_NAME, "category": MAX_CATEGORY, "description": MAX_DESCRIPTION}


class CatalogFileError(ValueError):
    """A fault in a catalog file; ``str()`` names the file, the row and the column it is in."""

    def __init__(self, path: Path | str, row: int | None, column: str | None, message: str) -> None:
        where = str(path) + (f": row {row}" if row is not None else "") + (f": column '{column}'" if column else "")
        super().__init__(f"{where}: {message}")
        self.path, self.row, self.column, self.message = path, row, column, message


@dataclass(frozen=True)
class Photo:
    """A checked photo file. Its bytes are read again when stored (``read``), not held in memory:
    a catalog of thousands of items with photos of several MB each would not fit."""

    path: Path
    name: str  # as the file wrote it
    row: int  # the first row that names it
    sha256: str
    media_type: str
    size: int

    def read(self) -> bytes:
        """The file's bytes as they were checked: the rows name them by this hash."""
        data = self.path.read_bytes()
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise OSError(f"file {self.name} changed during the import")
        return data


@dataclass(frozen=True)
class ParsedCatalog:
    """A catalog file, every row checked: the items in the file's order and their distinct photos."""

    path: Path
    file_sha256: str
    items: list[CatalogItem]
    photos: dict[str, Photo] = field(default_factory=dict)  # sha256 -> the first file with those bytes


# --- reading rows ---------------------------------------------------------------------------------

Row = dict[str, Any]


def _csv_rows(path: Path, data: bytes) -> tuple[list[str], Iterator[tuple[int, Row]]]:
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark (Excel's "CSV UTF-8") is not part of the header
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CatalogFileError(path, None, None, f"not UTF-8 text (line {line} of the file)") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise CatalogFileError(path, None, None, "the file is empty (expected a header row)") from None
    except csv.Error as exc:
        raise CatalogFileError(path, None, None, f"cannot read the header: {exc}") from None
    columns = [c.strip() for c in header]

    def rows() -> Iterator[tuple[int, Row]]:
        number = 0
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise CatalogFileError(path, number + 1, None, f"malformed CSV: {exc}") from None
            number += 1  # a blank line counts (as in an editor) but is no item
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(columns):
                raise CatalogFileError(path, number, None,
                                       f"{len(cells)} cells, but the header has {len(columns)} columns")
            yield number, dict(zip(columns, cells, strict=True))

    return columns, rows()


def _jsonl_rows(path: Path, data: bytes) -> tuple[list[str] | None, Iterator[tuple[int, Row]]]:
    def rows() -> Iterator[tuple[int, Row]]:
        for number, line in enumerate(data.split(b"\n"), start=1):
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                raise CatalogFileError(path, number, None, "not UTF-8 text") from None
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                raise CatalogFileError(path, number, None, f"invalid JSON: {exc.msg}") from None
            if not isinstance(row, dict):
                raise CatalogFileError(path, number, None, "expected a JSON object")
            yield number, {str(k).strip(): v for k, v in row.items()}

    return None, rows()  # JSON lines has no header: each row names its own columns


def _parquet_rows(path: Path, data: bytes) -> tuple[list[str], Iterator[tuple[int, Row]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
    except (OSError, pa.ArrowException) as exc:
        raise CatalogFileError(path, None, None, f"cannot read Parquet: {exc}") from None
    columns = [c.strip() for c in table.column_names]

    def rows() -> Iterator[tuple[int, Row]]:
        for batch in table.to_batches(max_chunksize=4096):  # one batch of Python objects at a time
            for row in batch.to_pylist():
                yield {str(k).strip(): v for k, v in row.items()}

    return columns, ((number, row) for number, row in enumerate(rows(), start=1))


def _read(path: Path) -> tuple[bytes, list[str] | None, Iterator[tuple[int, Row]]]:
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES + JSONL_SUFFIXES + PARQUET_SUFFIXES:
        raise CatalogFileError(path, None, None, "expected a .csv, .jsonl/.ndjson or .parquet file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CatalogFileError(path, None, None, f"cannot read the file: {exc.strerror or exc}") from None
    if suffix in CSV_SUFFIXES:
        return data, *_csv_rows(path, data)
    if suffix in JSONL_SUFFIXES:
        return data, *_jsonl_rows(path, data)
    return data, *_parquet_rows(path, data)


# --- checking columns and values ------------------------------------------------------------------


def _check_columns(path: Path, row: int | None, columns: list[str]) -> None:
    """Column names: the required ones there, no name twice, specs one way, the rest template names."""
    seen: set[str] = set()
    for position, name in enumerate(columns, start=1):
        if not name:
            raise CatalogFileError(path, row, None, f"column {position} has no name")
        if name in seen:
            raise CatalogFileError(path, row, name, "the column appears twice")
        seen.add(name)
        if name in CORE_FIELDS or name in (SPECS_COLUMN, IMAGE_COLUMN):
            continue
        label = name.removeprefix(SPEC_PREFIX) if name.startswith(SPEC_PREFIX) else name
        if not FIELD_NAME.match(label):
            kind = "spec label" if name.startswith(SPEC_PREFIX) else "column name"
            raise CatalogFileError(path, row, name, f"{kind} {label!r} is not a template name "
                                   "(a letter or _, then letters, digits or _; at most 64)")
    if row is None:  # a file with a header: every row has every column
        for name in CORE_FIELDS:
            if name not in seen:
                raise CatalogFileError(path, None, name, f"missing column (required: {', '.join(CORE_FIELDS)})")
    if SPECS_COLUMN in seen and any(c.startswith(SPEC_PREFIX) for c in seen):
        raise CatalogFileError(path, row, SPECS_COLUMN,
                               "specs come from spec_<label> columns or from one specs column, not both")


def _text(path: Path, row: int, column: str, value: Any) -> str | None:
    """A cell as text without the spaces at its ends (spreadsheets leave them); None for an empty cell."""
    if value is None:
        return None
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise CatalogFileError(path, row, column, f"{value} is not a value")
        text = repr(value)
    elif isinstance(value, str | int | Decimal):
        text = str(value)
    elif isinstance(value, datetime | date | time):
        text = value.isoformat()
    else:
        raise CatalogFileError(path, row, column, f"expected text or a number, got {type(value).__name__}")
    text = text.strip()
    if not text:
        return None
    if len(text) > MAX_VALUE and column not in _MAX_LENGTH:
        raise CatalogFileError(path, row, column, f"{len(text)} characters, more than {MAX_VALUE}")
    return text


def _core(path: Path, row: int, values: Row) -> tuple[str, str, str, str]:
    out = {}
    for name in CORE_FIELDS:
        if name not in values:
            raise CatalogFileError(path, row, name, f"missing (required: {', '.join(CORE_FIELDS)})")
        text = _text(path, row, name, values[name])
        if name == "description":
            out[name] = text or ""  # an item may have no control copy yet
            continue
        if text is None:
            raise CatalogFileError(path, row, name, f"the {name} is empty")
        out[name] = text
    for name, limit in _MAX_LENGTH.items():
        if len(out[name]) > limit:
            raise CatalogFileError(path, row, name, f"{len(out[name])} characters, more than {limit}")
    if not ITEM_ID.match(out["id"]):
        raise CatalogFileError(path, row, "id", f"{out['id']!r} is not an id (a letter or digit, then letters, "
                               "digits or . _ : + -; at most 128, no spaces or slashes)")
    return out["id"], out["name"], out["category"], out["description"]


def _spec_object(path: Path, row: int, value: Any) -> list[tuple[str, Any]]:
    """The ``specs`` column as (label, value) pairs in their order."""
    if value is None:
        return []
    if isinstance(value, str):
        if not value.strip():
            return []
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise CatalogFileError(path, row, SPECS_COLUMN, f"invalid JSON: {exc.msg}") from None
    elif isinstance(value, list) and all(isinstance(p, tuple) and len(p) == 2 for p in value):
        return list(value)  # a Parquet map reads as a list of (key, value) tuples
    if isinstance(value, dict):
        return list(value.items())
    raise CatalogFileError(path, row, SPECS_COLUMN, "expected a JSON object of label: value")


def _specs(path: Path, row: int, values: Row) -> dict[str, str]:
    if SPECS_COLUMN in values:
        pairs = [(label, SPECS_COLUMN, value) for label, value in _spec_object(path, row, values[SPECS_COLUMN])]
    else:
        pairs = [(c.removeprefix(SPEC_PREFIX), c, v) for c, v in values.items() if c.startswith(SPEC_PREFIX)]
    specs: dict[str, str] = {}
    for label, column, value in pairs:
        if not isinstance(label, str) or not FIELD_NAME.match(label):
            raise CatalogFileError(path, row, column, f"spec label {label!r} is not a template name "
                                   "(a letter or _, then letters, digits or _; at most 64)")
        if label in specs:
            raise CatalogFileError(path, row, column, f"spec {label!r} appears twice")
        try:
            text = _text(path, row, column, value)
        except CatalogFileError as exc:
            if column != SPECS_COLUMN:
                raise
            raise CatalogFileError(path, row, column, f"spec {label!r}: {exc.message}") from None
        if text is None:
            continue
        if len(specs) == MAX_SPECS:
            raise CatalogFileError(path, row, column, f"more than {MAX_SPECS} specs")
        specs[label] = text
    return specs


def _fields(path: Path, row: int, values: Row) -> dict[str, str]:
    out: dict[str, str] = {}
    for column, value in values.items():
        if column in CORE_FIELDS or column in (SPECS_COLUMN, IMAGE_COLUMN) or column.startswith(SPEC_PREFIX):
            continue
        text = _text(path, row, column, value)
        if text is not None:
            out[column] = text
    return out


class _Photos:
    """Checks each photo file once (rows may share one), relative to the images directory."""

    def __init__(self, catalog: Path, images_dir: Path) -> None:
        self.catalog, self.images_dir = catalog, images_dir
        self.root = images_dir.resolve()
        self.checked: dict[Path, Photo] = {}

    def check(self, row: int, value: Any) -> Photo | None:
        name = _text(self.catalog, row, IMAGE_COLUMN, value)
        if name is None:
            return None
        relative = Path(name)
        if relative.is_absolute() or relative.anchor:
            raise CatalogFileError(self.catalog, row, IMAGE_COLUMN,
                                   f"{name} is an absolute path; give it relative to {self.images_dir}/")
        target = (self.root / relative).resolve()  # follows links: a link out of the directory is out
        if not target.is_relative_to(self.root):
            raise CatalogFileError(self.catalog, row, IMAGE_COLUMN, f"{name} is outside {self.images_dir}/")
        if target in self.checked:
            return self.checked[target]
        if not target.is_file():
            raise CatalogFileError(self.catalog, row, IMAGE_COLUMN, f"file {name} not found under {self.images_dir}/")
        size = target.stat().st_size
        if size > MAX_IMAGE_BYTES:
            raise CatalogFileError(self.catalog, row, IMAGE_COLUMN,
                                   f"file {name} is {size} bytes, more than {MAX_IMAGE_BYTES // (1024 * 1024)} MB")
        try:
            data = target.read_bytes()
        except OSError as exc:
            raise CatalogFileError(self.catalog, row, IMAGE_COLUMN,
                                   f"cannot read file {name}: {exc.strerror or exc}") from None
        media_type = _image_type(data)
        if media_type is None:
            raise CatalogFileError(self.catalog, row, IMAGE_COLUMN,
                                   f"unreadable image {name} (expected a PNG, JPEG or WebP file)")
        photo = Photo(target, name, row, hashlib.sha256(data).hexdigest(), media_type, len(data))
        self.checked[target] = photo
        return photo


def _image_type(data: bytes) -> str | None:
    """The media type of a PNG, JPEG or WebP that decodes whole; None for anything else.

    ``verify`` checks the structure (a PNG's checksums) but not that the pixels decode, so a
    truncated JPEG passes it: the image is opened again and loaded."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = image.format
            image.verify()
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except Exception:  # noqa: BLE001 - Pillow's decoders fail on damaged files in many ways; each means unreadable
        return None
    return IMAGE_TYPES.get(kind or "")


# --- the file -------------------------------------------------------------------------------------


def parse_catalog(path: Path | str, images_dir: Path | str | None = None) -> ParsedCatalog:
    """Read and check every row of a catalog file; raises ``CatalogFileError`` at the first fault.

    ``images_dir`` is where the ``image`` paths start (default: the catalog file's directory).
    Nothing is written: the caller stores the result only once all of it is known good.
    """
    path = Path(path)
    images = Path(images_dir) if images_dir is not None else path.parent
    if not images.is_dir():
        raise CatalogFileError(path, None, None, f"images directory {images}/ not found")
    data, columns, rows = _read(path)
    if columns is not None:
        _check_columns(path, None, columns)
    photos = _Photos(path, images)
    items: list[CatalogItem] = []
    first_row: dict[str, int] = {}
    for number, values in rows:
        if columns is None:
            _check_columns(path, number, list(values))
        item_id, name, category, description = _core(path, number, values)
        if item_id in first_row:
            raise CatalogFileError(path, number, "id", f"duplicate id {item_id!r} (also row {first_row[item_id]})")
        first_row[item_id] = number
        specs = _specs(path, number, values)
        photo = photos.check(number, values.get(IMAGE_COLUMN))
        items.append(CatalogItem(
            id=item_id, name=name, category=category, description=description, specs=specs,
            image=photo.sha256 if photo else None, image_type=photo.media_type if photo else None,
            fields=_fields(path, number, values),
        ))
    if not items:
        raise CatalogFileError(path, None, None, "no items (the file has no data rows)")
    distinct: dict[str, Photo] = {}
    for photo in photos.checked.values():
        distinct.setdefault(photo.sha256, photo)
    return ParsedCatalog(path, hashlib.sha256(data).hexdigest(), items, distinct)
