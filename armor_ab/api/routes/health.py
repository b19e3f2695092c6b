"""Live health of an experiment (``read``), and pausing or resuming its ARMOR arms by hand (``admin``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from armor_ab.api.deps import AdminKey, ReadKey, State
from armor_ab.api.schemas import ERRORS, ExperimentHealthPublic, PauseCreate, PauseStatePublic, ResumeCreate
from armor_ab.services.health import HealthService
from armor_ab.services.pause import actor, pause_experiment, pause_public, resume_experiment

router = APIRouter(prefix="/v1", responses=ERRORS)


def _health(request: Request) -> HealthService:
    return request.app.state.health


@router.get("/experiments/{key}/health", tags=["read"], response_model=ExperimentHealthPublic)
async def get_health(key: str, request: Request, state: State, principal: ReadKey):
    """The experiment's live health: SRM, traffic, fallbacks, content verdicts, ingestion lag, bots and
    guardrail metrics, its problems and status (ok, warn, critical). Also updates its series in /metrics."""
    return JSONResponse((await _health(request).check(key)).public())


@router.post("/experiments/{key}/pause", tags=["admin"], response_model=PauseStatePublic)
async def post_pause(key: str, body: PauseCreate, request: Request, state: State, principal: AdminKey):
    """Pause a running experiment: its ARMOR arms serve control's copy (fallback `paused`) until it is
    resumed; assignment is unchanged. The cause and the key's name go into its history."""
    record, changed = await pause_experiment(state, key, body.cause, await actor(state, principal))
    return JSONResponse(pause_public(record, changed))


@router.post("/experiments/{key}/resume", tags=["admin"], response_model=PauseStatePublic)
async def post_resume(key: str, body: ResumeCreate, request: Request, state: State, principal: AdminKey):
    """Resume a paused experiment's ARMOR arms. The live-health monitor leaves the critical problems of
    this moment alone afterwards, and pauses it again only for a new one."""
    record, changed = await resume_experiment(state, key, body.note, await actor(state, principal),
                                              _health(request))
    return JSONResponse(pause_public(record, changed))
