"""Pausing and resuming an experiment by hand (``POST /v1/experiments/{key}/pause`` and ``…/resume``).

A paused experiment keeps assigning visitors as before (its exposures carry ``paused: true``), but its
ARMOR arms serve control's copy (fallback ``paused``) until someone resumes it. The live-health monitor
(``services.health``) pauses a critical experiment by itself and never resumes one. Only a running
experiment pauses or resumes (409 ``invalid_transition`` otherwise); pausing a paused one keeps its
first cause, resuming a running one that is not paused changes nothing (``changed`` false). The history
row (``pause``/``resume``) records the cause or note and who: the API key's name (its id when it has none),
and a resume's row the critical problems it acknowledged (``[acknowledged: ...]`` at its end), which the
monitor reads back after a restart.
"""

from __future__ import annotations

from armor_ab.services.assignment import live_experiment
from armor_ab.services.auth import Principal
from armor_ab.services.errors import ServiceError
from armor_ab.services.health import HealthService
from armor_ab.services.state import AppState
from armor_ab.store.experiments import ExperimentError, ExperimentRecord, set_paused
from armor_ab.store.health import api_key_name

RESUMED = "resumed"  # the history note of a resume without one


async def actor(state: AppState, principal: Principal) -> str:
    """Who a request acts as in the history: its key's name, else the key's public id."""
    name = await state.read(api_key_name, principal.key_id)
    return name or f"key {principal.key_id}"


def _running(state: AppState, key: str) -> ExperimentRecord:
    record = live_experiment(state, key).record
    if record.status != "running":
        raise ServiceError(409, "invalid_transition",
                           f"experiment {key!r} is {record.status}; only a running experiment pauses or resumes",
                           field="status")
    return record


async def _set(state: AppState, key: str, paused: bool, cause: str, by: str,
               acknowledged: frozenset[str] = frozenset()) -> tuple[ExperimentRecord, bool]:
    _running(state, key)
    try:
        return await state.write(set_paused, key, paused, cause=cause, by=by, acknowledged=acknowledged)
    except ExperimentError as exc:
        raise ServiceError(404 if exc.code == "experiment_not_found" else 409, exc.code, exc.message,
                           exc.field) from None


async def pause_experiment(state: AppState, key: str, cause: str, by: str) -> tuple[ExperimentRecord, bool]:
    """Pause a running experiment's ARMOR arms; (the record, whether it changed)."""
    cause = cause.strip()
    if not cause:
        raise ServiceError(422, "validation_error", "a pause needs a cause", field="cause")
    return await _set(state, key, True, cause, by)


async def resume_experiment(
    state: AppState, key: str, note: str | None, by: str, health: HealthService | None = None,
) -> tuple[ExperimentRecord, bool]:
    """Resume a paused experiment; the live-health monitor (``health``) then leaves the critical problems
    of this moment alone (the human saw them: the history row names them, so a restart keeps them) and
    pauses again only for a new one."""
    note = (note or "").strip() or RESUMED
    codes: frozenset[str] = frozenset()
    if health is not None and _running(state, key).paused_at is not None:
        codes = await health.to_acknowledge(key)
    record, changed = await _set(state, key, False, note, by, codes)
    if changed and health is not None:
        health.acknowledge(key, codes)
    return record, changed


def pause_public(record: ExperimentRecord, changed: bool) -> dict:
    """The answer of ``…/pause`` and ``…/resume`` (``PauseStatePublic``)."""
    return {"key": record.key, "status": record.status, "paused": record.paused_at is not None,
            "paused_at": record.paused_at.isoformat() if record.paused_at else None,
            "pause_cause": record.pause_cause, "changed": changed}
