"""Experiment records in DuckDB: upsert from a spec, lifecycle, history.

Every change writes a row to ``experiment_history`` in the same transaction, so who-saw-what
can be reconstructed for any point in time (bucket versions included).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb

from armor_ab.experiments.models import ExperimentSpec

STATUSES = ("draft", "running", "stopped")


class ExperimentError(ValueError):
    """A lifecycle rule was broken; ``code`` is stable for the API's error shape."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def __reduce__(self) -> tuple:  # rebuilt with all three arguments (it crosses to the API process)
        return (type(self), (self.code, self.message, self.field))


@dataclass(frozen=True)
class ExperimentRecord:
    spec: ExperimentSpec
    status: str
    bucket_version: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    stopped_at: datetime | None

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def effective_seed(self) -> str:
        """The seed hashed for assignment: a new bucket version re-seeds everyone."""
        seed = self.spec.seed
        return seed if self.bucket_version == 0 else f"{seed}:v{self.bucket_version}"

    def public(self) -> dict:
        """The JSON an API client sees (``ExperimentPublic``)."""
        return {
            "key": self.key,
            "status": self.status,
            "bucket_version": self.bucket_version,
            "effective_seed": self.effective_seed,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "stopped_at": self.stopped_at.isoformat() if self.stopped_at else None,
            "spec": self.spec.model_dump(mode="json"),
        }


_COLUMNS = "spec, status, bucket_version, created_at, updated_at, started_at, stopped_at"


def _record(row: tuple) -> ExperimentRecord:
    spec, status, bucket_version, created, updated, started, stopped = row
    return ExperimentRecord(
        spec=ExperimentSpec.model_validate_json(spec),
        status=status,
        bucket_version=bucket_version,
        created_at=created,
        updated_at=updated,
        started_at=started,
        stopped_at=stopped,
    )


def get_experiment(con: duckdb.DuckDBPyConnection, key: str) -> ExperimentRecord | None:
    row = con.execute(f"SELECT {_COLUMNS} FROM experiments WHERE key = ?", [key]).fetchone()
    return _record(row) if row else None


def list_experiments(con: duckdb.DuckDBPyConnection) -> list[ExperimentRecord]:
    rows = con.execute(f"SELECT {_COLUMNS} FROM experiments ORDER BY created_at, key").fetchall()
    return [_record(r) for r in rows]


def _history(con: duckdb.DuckDBPyConnection, rec: ExperimentRecord, action: str, now: datetime) -> None:
    con.execute(
        """INSERT INTO experiment_history
           SELECT ?, coalesce(max(revision), 0) + 1, ?, ?, ?, ?, ? FROM experiment_history WHERE key = ?""",
        [rec.key, action, rec.status, rec.bucket_version, rec.spec.model_dump_json(), now, rec.key],
    )


def _save(con: duckdb.DuckDBPyConnection, rec: ExperimentRecord, action: str) -> ExperimentRecord:
    con.execute("BEGIN")
    try:
        con.execute(
            """INSERT OR REPLACE INTO experiments
               (key, name, status, spec, bucket_version, created_at, updated_at, started_at, stopped_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [rec.key, rec.spec.name, rec.status, rec.spec.model_dump_json(), rec.bucket_version,
             rec.created_at, rec.updated_at, rec.started_at, rec.stopped_at],
        )
        _history(con, rec, action, rec.updated_at)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return rec


def upsert_experiment(
    con: duckdb.DuckDBPyConnection, spec: ExperimentSpec, *, new_bucket_version: bool = False
) -> tuple[ExperimentRecord, str]:
    """Create or update; returns the record and the action taken (create, update, rebucket, unchanged).

    Changing who-sees-what (seed, hash version, variants or weights) of a running experiment
    is refused unless ``new_bucket_version`` re-seeds it, which is recorded in the history.
    """
    now = datetime.now(UTC)
    old = get_experiment(con, spec.key)
    if old is None:
        rec = ExperimentRecord(spec, "draft", 0, now, now, None, None)
        return _save(con, rec, "create"), "create"
    if old.spec == spec and not new_bucket_version:
        return old, "unchanged"
    reassigns = old.spec.assignment_fields() != spec.assignment_fields()
    if old.status == "running" and reassigns and not new_bucket_version:
        raise ExperimentError(
            "running_experiment_reassignment",
            f"experiment {spec.key!r} is running: changing its variants, weights or seed would move "
            "visitors between variants; pass --new-bucket-version (API: new_bucket_version=true) to re-seed",
            field="variants",
        )
    bucket = old.bucket_version + 1 if new_bucket_version else old.bucket_version
    rec = ExperimentRecord(spec, old.status, bucket, old.created_at, now, old.started_at, old.stopped_at)
    action = "rebucket" if new_bucket_version else "update"
    return _save(con, rec, action), action


def set_status(
    con: duckdb.DuckDBPyConnection, key: str, status: str, *, at: datetime | None = None
) -> ExperimentRecord:
    """Move along draft -> running -> stopped (a stopped experiment may be restarted).

    ``at`` back-dates a first start, for experiments whose earlier traffic is imported or
    simulated (``events import``, ``simulate --days``): the analysis window opens there.
    """
    old = get_experiment(con, key)
    if old is None:
        raise ExperimentError("experiment_not_found", f"no experiment {key!r}", field="key")
    allowed = {"running": ("draft", "stopped"), "stopped": ("running",)}
    if old.status not in allowed.get(status, ()):
        raise ExperimentError(
            "invalid_transition", f"experiment {key!r} is {old.status}; it cannot go to {status}", field="status"
        )
    now = datetime.now(UTC)
    if at is not None:
        if at.tzinfo is None or at > now:
            raise ExperimentError("invalid_start", "a start time needs a timezone and cannot be in the future",
                                  field="at")
        if status != "running" or old.started_at is not None:
            raise ExperimentError("invalid_start", "only a first start can be back-dated", field="at")
    rec = ExperimentRecord(
        old.spec, status, old.bucket_version, old.created_at, now,
        (at or now) if status == "running" and old.started_at is None else old.started_at,
        now if status == "stopped" else None,
    )
    return _save(con, rec, "start" if status == "running" else "stop")


def spec_json(rec: ExperimentRecord) -> str:
    return json.dumps(rec.public())
