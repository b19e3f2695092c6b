"""Experiment records in DuckDB: upsert from a spec, lifecycle, history.

Every change writes a row to ``experiment_history`` in the same transaction, so who-saw-what
can be reconstructed for any point in time (bucket versions included).

A stored row whose spec no longer loads (written by hand, by older code with looser rules, or
broken in the file) is *quarantined*: ``list_experiments`` leaves it out, so the server still
starts and serves the others; ``list_quarantined`` shows it with the error; ``get_experiment``
refuses it with ``experiment_quarantined``; a valid spec for its key (``upsert_experiment``, the
API's PUT) replaces it, keeping its status, timestamps and bucket version (history action
``repair``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
from pydantic import ValidationError

from armor_ab.experiments.loader import error_field
from armor_ab.experiments.models import ExperimentSpec

STATUSES = ("draft", "running", "stopped")
log = logging.getLogger("armor_ab.store")


class ExperimentError(ValueError):
    """A lifecycle rule was broken; ``code`` is stable for the API's error shape."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def __reduce__(self) -> tuple:  # rebuilt with all three arguments (it crosses to the API process)
        return (type(self), (self.code, self.message, self.field))


def _lifecycle(rec: ExperimentRecord | QuarantinedExperiment) -> dict:
    """The key, status and dates of a stored experiment as JSON: loaded or quarantined alike."""
    iso = lambda t: t.isoformat() if t else None  # noqa: E731
    return {"key": rec.key, "status": rec.status, "bucket_version": rec.bucket_version,
            "created_at": rec.created_at.isoformat(), "updated_at": rec.updated_at.isoformat(),
            "started_at": iso(rec.started_at), "stopped_at": iso(rec.stopped_at)}


@dataclass(frozen=True)
class ExperimentRecord:
    spec: ExperimentSpec
    status: str
    bucket_version: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    stopped_at: datetime | None
    # Set while the ARMOR arms serve control's copy (live health turned critical, or a human paused it).
    paused_at: datetime | None = None
    pause_cause: str | None = None

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def paused(self) -> bool:
        return self.paused_at is not None

    @property
    def effective_seed(self) -> str:
        """The seed hashed for assignment: a new bucket version re-seeds everyone."""
        seed = self.spec.seed
        return seed if self.bucket_version == 0 else f"{seed}:v{self.bucket_version}"

    def public(self) -> dict:
        """The JSON an API client sees (``ExperimentPublic``)."""
        return {
            **_lifecycle(self),
            "effective_seed": self.effective_seed,
            "paused_at": self.paused_at.isoformat() if self.paused_at else None,
            "pause_cause": self.pause_cause,
            "spec": self.spec.model_dump(mode="json"),
        }


@dataclass(frozen=True)
class QuarantinedExperiment:
    """A stored experiment whose row does not load: kept out of the live ones until a valid spec replaces it."""

    key: str
    status: str
    bucket_version: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    stopped_at: datetime | None
    field: str | None  # the spec's field at fault (``status``, ``key`` for the row's own columns)
    error: str
    spec: str  # the stored text, as is

    def public(self) -> dict:
        """The JSON an admin sees (``QuarantinedExperimentPublic``)."""
        return {
            **_lifecycle(self),
            "field": self.field,
            "error": self.error,
            "spec": self.spec,
        }


_COLUMNS = "key, spec, status, bucket_version, created_at, updated_at, started_at, stopped_at, paused_at, pause_cause"
_logged: set[tuple[str, datetime]] = set()  # quarantined rows already logged (one line per row version)


def _load(row: tuple) -> ExperimentRecord | QuarantinedExperiment:
    """The row as a record, or quarantined with the first error when its spec or status does not load."""
    key, spec_text, status, bucket_version, created, updated, started, stopped, paused_at, pause_cause = row
    field: str | None
    try:
        spec = ExperimentSpec.model_validate_json(spec_text)
    except ValidationError as exc:
        err = exc.errors()[0]
        field, error = error_field(err["loc"]), err["msg"]
    except Exception as exc:  # whatever else a bad row raises must not stop the server (RecursionError, ...)
        field, error = None, f"{type(exc).__name__}: {exc}"
    else:
        if spec.key != key:
            field, error = "key", f"the spec's key {spec.key!r} is not the row's key {key!r}"
        elif status not in STATUSES:
            field, error = "status", f"status {status!r} is not one of {', '.join(STATUSES)}"
        else:
            return ExperimentRecord(spec, status, bucket_version, created, updated, started, stopped,
                                    paused_at, pause_cause)
    if (key, updated) not in _logged:
        _logged.add((key, updated))
        log.error("experiment quarantined: its stored spec does not load",
                  extra={"experiment": key, "field": field, "error": error})
    return QuarantinedExperiment(key, status, bucket_version, created, updated, started, stopped, field, error,
                                 str(spec_text))


def _quarantined_error(q: QuarantinedExperiment) -> ExperimentError:
    where = f" (field '{q.field}')" if q.field else ""
    return ExperimentError(
        "experiment_quarantined",
        f"experiment {q.key!r} is quarantined: its stored spec does not load{where}: {q.error}; "
        "replace it with a valid spec (PUT /v1/experiments/{key}, or armor-ab experiment apply FILE)",
        field="spec",
    )


def _get(con: duckdb.DuckDBPyConnection, key: str) -> ExperimentRecord | QuarantinedExperiment | None:
    row = con.execute(f"SELECT {_COLUMNS} FROM experiments WHERE key = ?", [key]).fetchone()
    return _load(row) if row else None


def get_experiment(con: duckdb.DuckDBPyConnection, key: str) -> ExperimentRecord | None:
    """The experiment, or None; raises ``ExperimentError`` (``experiment_quarantined``) for a row that does not load."""
    got = _get(con, key)
    if isinstance(got, QuarantinedExperiment):
        raise _quarantined_error(got)
    return got


def _load_all(con: duckdb.DuckDBPyConnection) -> list[ExperimentRecord | QuarantinedExperiment]:
    rows = con.execute(f"SELECT {_COLUMNS} FROM experiments ORDER BY created_at, key").fetchall()
    return [_load(r) for r in rows]


def list_experiments(con: duckdb.DuckDBPyConnection) -> list[ExperimentRecord]:
    """Every experiment that loads (the live ones); quarantined rows are left out (``list_quarantined``)."""
    return [r for r in _load_all(con) if isinstance(r, ExperimentRecord)]


def list_quarantined(con: duckdb.DuckDBPyConnection) -> list[QuarantinedExperiment]:
    """Every stored experiment whose row does not load, with its error."""
    return [r for r in _load_all(con) if isinstance(r, QuarantinedExperiment)]


def _history(con: duckdb.DuckDBPyConnection, rec: ExperimentRecord, action: str, now: datetime,
             note: str | None = None) -> None:
    con.execute(
        """INSERT INTO experiment_history (key, revision, action, status, bucket_version, spec, changed_at, note)
           SELECT ?, coalesce(max(revision), 0) + 1, ?, ?, ?, ?, ?, ? FROM experiment_history WHERE key = ?""",
        [rec.key, action, rec.status, rec.bucket_version, rec.spec.model_dump_json(), now, note, rec.key],
    )


def _save(con: duckdb.DuckDBPyConnection, rec: ExperimentRecord, action: str,
          note: str | None = None) -> ExperimentRecord:
    con.execute("BEGIN")
    try:
        con.execute(
            """INSERT OR REPLACE INTO experiments
               (key, name, status, spec, bucket_version, created_at, updated_at, started_at, stopped_at,
                paused_at, pause_cause)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [rec.key, rec.spec.name, rec.status, rec.spec.model_dump_json(), rec.bucket_version,
             rec.created_at, rec.updated_at, rec.started_at, rec.stopped_at, rec.paused_at, rec.pause_cause],
        )
        _history(con, rec, action, rec.updated_at, note)
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
    old = _get(con, spec.key)
    if isinstance(old, QuarantinedExperiment):
        return _repair(con, old, spec, new_bucket_version, now), "repair"
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
    rec = ExperimentRecord(spec, old.status, bucket, old.created_at, now, old.started_at, old.stopped_at,
                           old.paused_at, old.pause_cause)
    action = "rebucket" if new_bucket_version else "update"
    return _save(con, rec, action), action


def _stored_assignment(spec_text: str) -> tuple | None:
    """``assignment_fields()`` read leniently from a stored spec that does not validate; None if unreadable."""
    try:
        data = json.loads(spec_text)
        return (data.get("hash_seed") or data["key"], data.get("hash_version", 2),
                tuple((v["key"], float(v["weight"])) for v in data["variants"]))
    except Exception:  # noqa: BLE001 - unreadable means "cannot tell", which the caller treats as a change
        return None


def _repair(
    con: duckdb.DuckDBPyConnection, old: QuarantinedExperiment, spec: ExperimentSpec, new_bucket_version: bool,
    now: datetime,
) -> ExperimentRecord:
    """Replace a quarantined row with a valid spec, keeping its status, timestamps and bucket version.

    The rule of a running experiment holds: when the stored spec's variants, weights or seed cannot
    be read, or differ, the repair needs ``new_bucket_version``.
    """
    if (old.status == "running" and not new_bucket_version
            and _stored_assignment(old.spec) != spec.assignment_fields()):
        raise ExperimentError(
            "running_experiment_reassignment",
            f"experiment {spec.key!r} is running and quarantined: its stored variants, weights or seed are "
            "unreadable or differ from this spec's; pass --new-bucket-version (API: new_bucket_version=true) "
            "to re-seed",
            field="variants",
        )
    status = old.status if old.status in STATUSES else ("stopped" if old.started_at else "draft")
    bucket = old.bucket_version + 1 if new_bucket_version else old.bucket_version
    stopped = old.stopped_at if status == "stopped" else None
    rec = ExperimentRecord(spec, status, bucket, old.created_at, now, old.started_at, stopped)
    return _save(con, rec, "repair")


def set_status(
    con: duckdb.DuckDBPyConnection, key: str, status: str, *, at: datetime | None = None
) -> ExperimentRecord:
    """Move along draft -> running -> stopped (a stopped experiment may be restarted).

    ``at`` back-dates a first start, for experiments whose earlier traffic is imported or
    simulated (``events import``, ``simulate --days``): the analysis window opens there.
    """
    old = get_experiment(con, key)  # refuses a quarantined one
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
    # A pause ends with the run: a restarted experiment starts unpaused (the history keeps the pause).
    rec = ExperimentRecord(
        old.spec, status, old.bucket_version, old.created_at, now,
        (at or now) if status == "running" and old.started_at is None else old.started_at,
        now if status == "stopped" else None,
    )
    return _save(con, rec, "start" if status == "running" else "stop")


# The end of a resume's history note that names the critical problems the human acknowledged (live health).
_ACKNOWLEDGED = re.compile(r" \[acknowledged: ([a-z_]+(?:, [a-z_]+)*)\]$")
ACKNOWLEDGEMENT_END = "acknowledgement_end"  # the history action: the acknowledged problems are over


def acknowledged_codes(note: str | None) -> frozenset[str]:
    """The problem codes a resume's history note acknowledges (``set_paused(..., acknowledged=...)``)."""
    match = _ACKNOWLEDGED.search(note or "")
    return frozenset(match.group(1).split(", ")) if match else frozenset()


def set_paused(con: duckdb.DuckDBPyConnection, key: str, paused: bool, *, cause: str,
               by: str | None = None, acknowledged: Collection[str] = ()) -> tuple[ExperimentRecord, bool]:
    """Pause (the ARMOR arms serve control's copy; assignment is unchanged) or resume a running
    experiment; returns the record and whether anything changed (pausing a paused one keeps the
    first cause). The history row (``pause``/``resume``) carries the cause and who, and a resume's the
    live-health problem codes the human ``acknowledged`` (`` [acknowledged: a, b]`` at its end, read back
    by ``acknowledged_codes``)."""
    if paused and acknowledged:
        raise ValueError("only a resume acknowledges problems")
    if any(not re.fullmatch(r"[a-z_]+", c) for c in acknowledged):
        raise ValueError(f"problem codes are lower-case words, got {sorted(acknowledged)}")
    old = get_experiment(con, key)
    if old is None:
        raise ExperimentError("experiment_not_found", f"no experiment {key!r}", field="key")
    if paused and old.status != "running":
        raise ExperimentError("invalid_transition", f"experiment {key!r} is {old.status}; only a running one pauses",
                              field="status")
    if paused == old.paused:
        return old, False
    now = datetime.now(UTC)
    rec = dataclasses.replace(old, updated_at=now, paused_at=now if paused else None,
                              pause_cause=cause if paused else None)
    note = f"{cause} (by {by})" if by else cause
    if acknowledged:
        note += f" [acknowledged: {', '.join(sorted(acknowledged))}]"
    return _save(con, rec, "pause" if paused else "resume", note), True


# The history actions after which a resume's acknowledgement no longer holds, and the resume itself.
_ACK_ACTIONS = ("resume", "pause", "start", "stop", "repair", ACKNOWLEDGEMENT_END)


def acknowledgement(con: duckdb.DuckDBPyConnection, key: str) -> frozenset[str]:
    """The live-health problem codes the experiment's last resume acknowledged, while that resume still
    holds: no pause, stop, start, repair or ``acknowledgement_end`` after it. Empty otherwise."""
    row = con.execute(
        f"""SELECT action, note FROM experiment_history
            WHERE key = ? AND action IN ({", ".join("?" * len(_ACK_ACTIONS))})
            ORDER BY revision DESC LIMIT 1""",
        [key, *_ACK_ACTIONS],
    ).fetchone()
    return acknowledged_codes(row[1]) if row is not None and row[0] == "resume" else frozenset()


def end_acknowledgement(con: duckdb.DuckDBPyConnection, key: str, codes: Collection[str], *, by: str) -> bool:
    """Record in the history (action ``acknowledgement_end``) that the problems the last resume acknowledged,
    ``codes``, are over (the experiment was no longer critical); the record itself is unchanged. Writes
    nothing, and returns False, unless the history's acknowledgement is still ``codes``."""
    rec = get_experiment(con, key)
    if rec is None or not codes or acknowledgement(con, key) != frozenset(codes):
        return False
    con.execute("BEGIN")
    try:
        _history(con, rec, ACKNOWLEDGEMENT_END, datetime.now(UTC),
                 f"no longer critical: the problems acknowledged at the resume ({', '.join(sorted(codes))}) "
                 f"pause it again should they return (by {by})")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return True
