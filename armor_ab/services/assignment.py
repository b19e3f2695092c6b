"""A visitor's variant, and the first exposure it logs: the rules behind ``…/assignment`` and ``…/content``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from armor_ab.bots import is_bot
from armor_ab.event_schema import exposure_row
from armor_ab.events import CONTROL_CHARS, exposure_event_id, micros
from armor_ab.services.auth import Principal
from armor_ab.services.errors import ServiceError
from armor_ab.services.state import AppState, LiveExperiment, json_bytes
from armor_ab.store.writer import QueueFullError, WriterClosedError

MAX_ID = 200  # characters of a visitor, item or variant id in a query string
_CONTROL = re.compile(f"[{CONTROL_CHARS}]")  # the characters no id may hold (as in EventIn's ids)


def query_id(value: str | None, name: str, required: bool = False) -> str | None:
    """A visitor, item or variant id from a query parameter: blank is absent; 422 when required, too
    long, or holding a control character (NUL among them)."""
    if not value:
        if required:
            raise ServiceError(422, "validation_error", f"query parameter {name} is required", field=name)
        return None
    if len(value) > MAX_ID:
        raise ServiceError(422, "validation_error", f"{name} must be at most {MAX_ID} characters", field=name)
    if _CONTROL.search(value):
        raise ServiceError(422, "validation_error", f"{name} must not contain control characters", field=name)
    return value


def live_experiment(state: AppState, key: str) -> LiveExperiment:
    exp = state.experiments.get(key)
    if exp is None:
        raise ServiceError(404, "experiment_not_found", f"no experiment {key!r}", field="key")
    return exp


def device_of(user_agent: str | None) -> str | None:
    """The segment a visitor's browser falls in, the usual way: "Mobi" in the User-Agent."""
    if not user_agent:
        return None
    return "mobile" if "Mobi" in user_agent else "desktop"


@dataclass(frozen=True, slots=True)
class Resolved:
    """A visitor's assignment: ``variant`` is None outside the experiment (or when it is not running).

    ``unlogged``: the exposure ``exposure_id`` names is still to be logged, by whoever decides what the
    visitor is shown (``…/content`` logs it with the page it served: ``services.serving``)."""

    experiment: LiveExperiment
    variant: str | None
    in_experiment: bool
    exposure_id: str | None
    unlogged: bool = False
    user_id: str | None = None
    user_agent: str | None = None

    def body(self) -> bytes:
        """The ``…/assignment`` answer (``AssignmentPublic``) as JSON bytes."""
        return json_bytes({"experiment": self.experiment.record.key, "variant": self.variant,
                           "in_experiment": self.in_experiment, "exposure_id": self.exposure_id})


def log_exposure(
    state: AppState, exp: LiveExperiment, user_id: str, variant: str, item_id: str | None,
    device: str | None = None, user_agent: str | None = None, *, key: str | None = None,
    page: str | None = None, fallback: str | None = None,
) -> str:
    """Queue a visitor's first exposure; returns its fixed event id.

    The assignment answer does not wait for this commit: a DuckDB commit costs milliseconds and a
    page must not. The writer commits queued exposures in group transactions within one flush.
    Durability comes from two places: an id is only marked "seen" once committed, so a visitor
    whose exposure was still queued in a crash logs it again on the next request; and clients
    (armor-ab.js) put the same ``exposure_id`` in their acknowledged event batches, where the fixed
    id makes it a no-op when the server already has it. A full queue is counted, never hidden.

    A known bot's User-Agent (``armor_ab.bots``) adds ``"bot": true`` to the exposure's properties:
    the analysis excludes the visitor. Checked only here, when a first exposure is queued, so a
    returning visitor's request costs nothing more.

    ``page``: the digest of the page the visitor was shown (``…/content``: the ARMOR page's stored
    digest, or the digest of control's copy), ``fallback``: why the variant's page was not, when it
    was not. ``key``: the event id when the caller has it already.
    """
    if key is None:
        key = exposure_event_id(exp.record.key, exp.record.bucket_version, user_id)
    if key in state.exposures_seen or key in state.exposures_pending:
        return key
    now = micros(datetime.now(UTC))
    # The exposure carries the visitor's segments (analysis reads them from the first exposure).
    # ``paused``: the experiment's ARMOR arms served control's copy then; the analysis leaves such visitors out.
    props = {"category": state.categories.get(item_id) if item_id else None, "device": device,
             "bot": True if user_agent and is_bot(user_agent) else None,
             "paused": True if exp.record.paused_at is not None else None, "page": page, "fallback": fallback}
    props_json = json_bytes({k: v for k, v in props.items() if v}).decode() if any(props.values()) else None
    row = exposure_row(event_id=key, experiment=exp.record.key, variant=variant, user_id=user_id,
                       item_id=item_id, ts=now, received_at=now, properties=props_json)
    try:
        state.store.log_row(row)
    except (QueueFullError, WriterClosedError):
        state.metrics.exposures_deferred.inc()
        return key
    state.exposures_pending.add(key)
    return key


def assign_visitor(
    state: AppState, principal: Principal, key: str, user_id: str, item_id: str | None, force_variant: str | None,
    user_agent: str | None = None, *, log: bool = True,
) -> Resolved:
    """The visitor's variant in experiment ``key``, logging the first exposure (with ``log=False``, the
    exposure is left to the caller: ``Resolved.unlogged``, ``log_resolved``).

    ``force_variant`` (QA, admin keys only) shows that variant and logs nothing."""
    exp = live_experiment(state, key)
    if force_variant is not None:
        if not principal.may("admin"):
            raise ServiceError(403, "forbidden", "forcing a variant needs an admin key", field="force_variant")
        if force_variant not in exp.variants:
            raise ServiceError(422, "unknown_variant", f"experiment {key!r} has no variant {force_variant!r}",
                               field="force_variant")
        return Resolved(exp, force_variant, True, None)  # QA views log no exposure
    if exp.record.status != "running":
        return Resolved(exp, None, False, None)
    assignment = exp.assigner.assign(user_id)
    if not assignment.in_experiment:
        return Resolved(exp, None, False, None)
    if not log:
        exposure_id = exposure_event_id(exp.record.key, exp.record.bucket_version, user_id)
        return Resolved(exp, assignment.variant, True, exposure_id, True, user_id, user_agent)
    exposure_id = log_exposure(state, exp, user_id, assignment.variant, item_id, device_of(user_agent), user_agent)
    return Resolved(exp, assignment.variant, True, exposure_id)


def log_resolved(state: AppState, resolved: Resolved, item_id: str | None, page: str | None,
                 fallback: str | None) -> None:
    """Log the exposure ``assign_visitor(..., log=False)`` left unlogged, with the page served."""
    if resolved.unlogged:
        log_exposure(state, resolved.experiment, resolved.user_id, resolved.variant, item_id,
                     device_of(resolved.user_agent), resolved.user_agent, key=resolved.exposure_id,
                     page=page, fallback=fallback)
