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
VERDICTS = ("pass", "warn", "fail")  # the guardrails' verdict of a page (armor_ab.guardrails); NULL: never checked
# What ``statuses`` reports for a pending or approved page whose verdict is ``fail``: it is never
# served (``approved`` leaves it out) and the visitor's variant falls back with reason ``guardrail``.
BLOCKED = "blocked"
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
    checks: dict | None = None  # ``PageChecks.to_json()``; None: never checked
    verdict: str | None = None  # pass | warn | fail; None: never checked
    reviewed_by: str | None = None  # who set the status: a reviewer's (key's) name, or 'guardrails'
    reviewed_key: str | None = None  # the API key id of that review; 'cli' from the command line

    def failing(self) -> list[str]:
        """The checks that did not pass, in order (none when never checked)."""
        return [r["check"] for r in (self.checks or {}).get("results", ()) if r.get("status") != "pass"]

    def blocking(self) -> list[str]:
        """The checks whose failure blocks the page (a blocking check that failed)."""
        return _blocking(self.checks)

    def public(self) -> dict:
        return {
            "experiment": self.experiment, "variant": self.variant, "item_id": self.item_id,
            "status": self.status, "digest": self.digest, "prompt": self.prompt,
            "model": model_name(self.model) if self.model else self.model,
            "generated_at": self.generated_at.isoformat(),
            "reviewed_at": self.reviewed_at.isoformat() if self.reviewed_at else None,
            "reviewed_by": self.reviewed_by, "reviewed_key": self.reviewed_key,
            "verdict": self.verdict, "failing": self.failing(), "checks": self.checks,
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


_COLUMNS = ("experiment, variant, item_id, status, content, digest, prompt, model, generated_at, reviewed_at, "
            "checks, verdict, reviewed_by, reviewed_key")


def _row(r: tuple) -> ContentRow:
    return ContentRow(r[0], r[1], r[2], r[3], json.loads(r[4]), *r[5:10],
                      json.loads(r[10]) if r[10] is not None else None, *r[11:])


def _check_verdict(verdict: str | None) -> None:
    if verdict is not None and verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}")


def exists(con: duckdb.DuckDBPyConnection, experiment: str, variant: str, item_id: str) -> bool:
    """Whether a current page is stored; a stale one does not count, so generation replaces it."""
    return con.execute(
        "SELECT 1 FROM content WHERE experiment = ? AND variant = ? AND item_id = ? AND status <> 'stale'",
        [experiment, variant, item_id],
    ).fetchone() is not None


def save_generated(
    con: duckdb.DuckDBPyConnection, images_dir: Path, experiment: str, variant: str, item_id: str,
    content: InterleavedContent, prompt: str, *, status: str = "pending", replace: bool = True,
    checks: dict | None = None, verdict: str | None = None, reviewed_by: str | None = None,
    reviewed_key: str | None = None,
) -> ContentRow | None:
    """Store freshly generated content (images first, then the row), ``pending`` review by default,
    with the guardrails' ``checks`` (``PageChecks.to_json()``) and ``verdict`` where they ran.

    With ``replace=False`` an existing row wins and nothing is written (returns None): on-demand
    generation must never overwrite a page someone generated or reviewed meanwhile. A ``stale``
    row is no page to keep (its item changed): it is replaced either way. A page whose verdict is
    ``fail`` may be stored ``approved`` by no one: it is refused (``ValueError``).
    """
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    _check_verdict(verdict)
    if status == "approved" and verdict == "fail":
        raise ValueError("a page that fails a blocking check cannot be stored approved")
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
        f"INSERT OR REPLACE INTO content ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?)",
        [experiment, variant, item_id, status, json.dumps(data), content.digest(), prompt, content.metadata.model, now,
         json.dumps(checks) if checks is not None else None, verdict, reviewed_by, reviewed_key],
    )
    return ContentRow(experiment, variant, item_id, status, data, content.digest(), prompt,
                      content.metadata.model, now, None, checks, verdict, reviewed_by, reviewed_key)


def set_checks(
    con: duckdb.DuckDBPyConnection, experiment: str, variant: str, item_id: str, checks: dict, verdict: str,
) -> bool:
    """Record a page's fresh check results and verdict (``armor-ab content check``); its status is left
    as it is: an approved page whose verdict turns ``fail`` stays approved but is no longer served.
    Returns whether the page exists."""
    _check_verdict(verdict)
    return bool(con.execute(
        "UPDATE content SET checks = ?, verdict = ? WHERE experiment = ? AND variant = ? AND item_id = ? "
        "RETURNING item_id", [json.dumps(checks), verdict, experiment, variant, item_id]).fetchall())


def list_content(
    con: duckdb.DuckDBPyConnection, experiment: str, *, status: str | None = None, item_id: str | None = None,
    verdict: str | None = None,
) -> list[ContentRow]:
    sql = f"SELECT {_COLUMNS} FROM content WHERE experiment = ?"
    params: list = [experiment]
    if status:
        sql += " AND status = ?"
        params.append(status)
    if verdict:
        _check_verdict(verdict)
        sql += " AND verdict = ?"
        params.append(verdict)
    if item_id:
        sql += " AND item_id = ?"
        params.append(item_id)
    return [_row(r) for r in con.execute(sql + " ORDER BY item_id, variant", params).fetchall()]


@dataclass(frozen=True)
class Refused:
    """A page a review would have approved but may not: it fails a blocking check."""

    item_id: str
    variant: str
    failing: tuple[str, ...]  # the blocking checks it fails

    def describe(self) -> str:
        return f"{self.item_id} ({self.variant}) fails {', '.join(self.failing) or 'a blocking check'}"


@dataclass(frozen=True)
class Reviewed:
    """What a review did: the rows it changed (``changed``); the pages it refused to approve (``refused``:
    verdict ``fail``, which no one may approve); and, for a review by verdict, the pages that matched but
    were reviewed already (``unchanged``) and the pending pages of another verdict it passed over
    (``passed_over``)."""

    changed: int
    refused: tuple[Refused, ...] = ()
    unchanged: int = 0
    passed_over: int = 0

    @property
    def skipped(self) -> int:
        """Pages a bulk review left pending: refused ones, and (by verdict) those of another verdict."""
        return len(self.refused) + self.passed_over


def set_review(
    con: duckdb.DuckDBPyConnection, experiment: str, status: str, *, item_id: str | None = None,
    variant: str | None = None, verdict: str | None = None, reviewed_by: str | None = None,
    reviewed_key: str | None = None, all_or_nothing: bool = False,
) -> Reviewed:
    """Approve or reject content (one item, one variant, or all of an experiment); returns the rows
    changed, with the pages refused.

    A page whose verdict is ``fail`` (a blocking check failed) is never approved: it is skipped and
    listed in ``Reviewed.refused``; with ``all_or_nothing`` (a review that names its page) nothing
    changes when any is refused. It may still be rejected or set back to pending. A ``stale`` page
    may be approved again as it is (its item changed, the reviewer found the page still right);
    ``stale`` itself is set only by a catalog import. ``reviewed_by``/``reviewed_key``: who reviewed
    (a key's name and id, or a name and ``cli``), recorded with the time.

    With ``verdict`` (e.g. "approve what passes") only PENDING pages of that verdict change: a page a
    human already approved or rejected keeps its status and its reviewer (counted in ``unchanged``),
    and the pending pages of other verdicts are counted in ``passed_over``.
    """
    if status not in REVIEW_STATUSES:
        raise ValueError(f"status must be approved, rejected or pending, got {status!r}")
    _check_verdict(verdict)
    scope = " WHERE experiment = ?"
    params: list = [experiment]
    if item_id:
        scope += " AND item_id = ?"
        params.append(item_id)
    if variant:
        scope += " AND variant = ?"
        params.append(variant)
    where, unchanged, passed_over = scope, 0, 0
    if verdict:
        unchanged = con.execute(f"SELECT count(*) FROM content{scope} AND verdict = ? AND status <> 'pending'",
                                [*params, verdict]).fetchone()[0]
        passed_over = con.execute(f"SELECT count(*) FROM content{scope} AND status = 'pending' "
                                  "AND verdict IS DISTINCT FROM ?", [*params, verdict]).fetchone()[0]
        where = scope + " AND status = 'pending' AND verdict = ?"
        params = [*params, verdict]
    refused: tuple[Refused, ...] = ()
    if status == "approved":
        rows = con.execute(f"SELECT item_id, variant, checks FROM content{where} AND verdict = 'fail' "
                           "ORDER BY item_id, variant", params).fetchall()
        refused = tuple(Refused(i, v, tuple(_blocking(c))) for i, v, c in rows)
        if refused and all_or_nothing:
            return Reviewed(0, refused)
        where += " AND verdict IS DISTINCT FROM 'fail'"
    changed = con.execute(
        f"UPDATE content SET status = ?, reviewed_at = ?, reviewed_by = ?, reviewed_key = ?{where} RETURNING item_id",
        [status, datetime.now(UTC), reviewed_by, reviewed_key, *params]).fetchall()
    return Reviewed(len(changed), refused, unchanged, passed_over)


def _blocking(checks: str | dict | None) -> list[str]:
    data = (json.loads(checks) if isinstance(checks, str) else checks) or {}
    return [r["check"] for r in data.get("results", ())
            if r.get("status") == "fail" and r.get("action", "block") == "block"]


def served_pages(
    con: duckdb.DuckDBPyConnection,
) -> tuple[dict[tuple[str, str, str], dict], dict[tuple[str, str, str], str]]:
    """(serving JSON, digest) by (experiment, variant, item) of every page the API serves: approved,
    and not failing a blocking check (a page whose verdict is ``fail`` is never served, approved or not)."""
    rows = con.execute("SELECT experiment, variant, item_id, content, digest FROM content "
                       "WHERE status = 'approved' AND verdict IS DISTINCT FROM 'fail'").fetchall()
    return ({(r[0], r[1], r[2]): with_image_urls(json.loads(r[3])) for r in rows},
            {(r[0], r[1], r[2]): r[4] for r in rows})


def approved(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str, str], dict]:
    """(experiment, variant, item) -> serving JSON of every page served: the API's cache."""
    return served_pages(con)[0]


def statuses(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str, str], str]:
    """(experiment, variant, item) -> status of every stored piece (to tell missing from unapproved);
    a pending or approved page whose verdict is ``fail`` is ``blocked`` (fallback ``guardrail``)."""
    rows = con.execute(
        f"SELECT experiment, variant, item_id, CASE WHEN verdict = 'fail' AND status IN ('pending', 'approved') "
        f"THEN '{BLOCKED}' ELSE status END FROM content").fetchall()
    return {(e, v, i): s for e, v, i, s in rows}
