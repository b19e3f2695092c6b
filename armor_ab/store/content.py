"""Generated content in DuckDB (metadata and segments) and images as content-addressed PNG files.

Images are written first (temp file, then rename), the row last: a row never points at a
missing file, and a crash leaves at worst an unreferenced PNG that a rerun reuses.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from armor_ab.model.interleaved import InterleavedContent

# ``stale``: generated for an item whose catalog entry changed since (armor_ab.store.catalog). It is
# never served, counts as missing for generation (regenerated over), and may be approved again as is.
STATUSES = ("pending", "approved", "rejected", "stale")
REVIEW_STATUSES = ("approved", "rejected", "pending")  # what a review may set
SHA256 = re.compile(r"^[0-9a-f]{64}$")


def model_name(model: str) -> str:
    """A model as visitors may see it: its name, never the server's path to it
    (``/…/assets/models/armor-demo`` -> ``armor-demo``; a named configuration stays as it is)."""
    if "/" not in model and "\\" not in model:
        return model
    return re.split(r"[\\/]", model.rstrip("/\\"))[-1] or model


def images_dir_for(db_path: Path) -> Path:
    """Where a database's images live: ``images/`` beside the DuckDB file."""
    return Path(db_path).parent / "images"


def write_image(images_dir: Path, sha256: str, png: bytes) -> Path:
    """Store a PNG under its hash (atomically; an existing file already holds these bytes)."""
    path = images_dir / f"{sha256}.png"
    if path.exists():
        return path
    images_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=images_dir, suffix=".tmp")
    with os.fdopen(fd, "wb") as fh:
        fh.write(png)
    os.replace(tmp, path)
    return path


@dataclass(frozen=True)
class ContentRow:
    experiment: str
    variant: str
    item_id: str
    status: str
    content: dict
    digest: str
    prompt: str
    model: str
    generated_at: datetime
    reviewed_at: datetime | None

    def public(self) -> dict:
        return {
            "experiment": self.experiment, "variant": self.variant, "item_id": self.item_id,
            "status": self.status, "digest": self.digest, "prompt": self.prompt,
            "model": model_name(self.model) if self.model else self.model,
            "generated_at": self.generated_at.isoformat(),
            "reviewed_at": self.reviewed_at.isoformat() if self.reviewed_at else None,
            "content": with_image_urls(self.content),
        }


def with_image_urls(content: dict) -> dict:
    """The stored JSON as served: each image segment's URL on this API (relative: ``/v1/images/<sha>``),
    and the model by its name only (pages stored by older versions named the model's directory)."""
    segments = []
    for seg in content["segments"]:
        if seg["type"] == "image":
            seg = {k: v for k, v in seg.items() if k not in ("file", "codes")}
            seg["url"] = f"/v1/images/{seg['sha256']}"
        segments.append(seg)
    served = {**content, "segments": segments}
    metadata = content.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("model"), str):
        served["metadata"] = {**metadata, "model": model_name(metadata["model"])}
    return served


_COLUMNS = "experiment, variant, item_id, status, content, digest, prompt, model, generated_at, reviewed_at"


def _row(r: tuple) -> ContentRow:
    return ContentRow(r[0], r[1], r[2], r[3], json.loads(r[4]), *r[5:])


def exists(con: duckdb.DuckDBPyConnection, experiment: str, variant: str, item_id: str) -> bool:
    """Whether a current page is stored; a stale one does not count, so generation replaces it."""
    return con.execute(
        "SELECT 1 FROM content WHERE experiment = ? AND variant = ? AND item_id = ? AND status <> 'stale'",
        [experiment, variant, item_id],
    ).fetchone() is not None


def save_generated(
    con: duckdb.DuckDBPyConnection, images_dir: Path, experiment: str, variant: str, item_id: str,
    content: InterleavedContent, prompt: str, *, status: str = "pending", replace: bool = True,
) -> ContentRow | None:
    """Store freshly generated content (images first, then the row), ``pending`` review by default.

    With ``replace=False`` an existing row wins and nothing is written (returns None): on-demand
    generation must never overwrite a page someone generated or reviewed meanwhile. A ``stale``
    row is no page to keep (its item changed): it is replaced either way.
    """
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    if not replace and exists(con, experiment, variant, item_id):
        return None
    name = model_name(content.metadata.model)
    if name != content.metadata.model:  # the model's name and config hash, never a path on this server
        content = dataclasses.replace(content, metadata=dataclasses.replace(content.metadata, model=name))
    for image in content.images:
        write_image(images_dir, image.sha256, image.png)
    now = datetime.now(UTC)
    data = content.to_json()
    con.execute(
        f"INSERT OR REPLACE INTO content ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
        [experiment, variant, item_id, status, json.dumps(data), content.digest(), prompt, content.metadata.model, now],
    )
    return ContentRow(experiment, variant, item_id, status, data, content.digest(), prompt,
                      content.metadata.model, now, None)


def list_content(
    con: duckdb.DuckDBPyConnection, experiment: str, *, status: str | None = None, item_id: str | None = None
) -> list[ContentRow]:
    sql = f"SELECT {_COLUMNS} FROM content WHERE experiment = ?"
    params: list = [experiment]
    if status:
        sql += " AND status = ?"
        params.append(status)
    if item_id:
        sql += " AND item_id = ?"
        params.append(item_id)
    return [_row(r) for r in con.execute(sql + " ORDER BY item_id, variant", params).fetchall()]


def set_review(
    con: duckdb.DuckDBPyConnection, experiment: str, status: str, *, item_id: str | None = None,
    variant: str | None = None,
) -> int:
    """Approve or reject content (one item, one variant, or all of an experiment); returns rows changed.

    A ``stale`` page may be approved again as it is (its item changed, the reviewer found the page
    still right); ``stale`` itself is set only by a catalog import.
    """
    if status not in REVIEW_STATUSES:
        raise ValueError(f"status must be approved, rejected or pending, got {status!r}")
    sql = "UPDATE content SET status = ?, reviewed_at = ? WHERE experiment = ?"
    params: list = [status, datetime.now(UTC), experiment]
    if item_id:
        sql += " AND item_id = ?"
        params.append(item_id)
    if variant:
        sql += " AND variant = ?"
        params.append(variant)
    return len(con.execute(sql + " RETURNING item_id", params).fetchall())


def approved(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str, str], dict]:
    """(experiment, variant, item) -> serving JSON of every approved piece: the API's cache."""
    rows = con.execute(f"SELECT {_COLUMNS} FROM content WHERE status = 'approved'").fetchall()
    return {(r[0], r[1], r[2]): with_image_urls(json.loads(r[4])) for r in rows}


def statuses(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str, str], str]:
    """(experiment, variant, item) -> status of every stored piece (to tell missing from unapproved)."""
    rows = con.execute("SELECT experiment, variant, item_id, status FROM content").fetchall()
    return {(e, v, i): s for e, v, i, s in rows}
