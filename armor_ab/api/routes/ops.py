"""Operations: liveness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from armor_ab.api.deps import State
from armor_ab.api.schemas import HealthPublic

router = APIRouter(tags=["ops"])


@router.get("/healthz", response_model=HealthPublic, responses={503: {"model": HealthPublic}})
async def healthz(state: State):
    """Health: the database process is alive and can write, and the queue depth.

    503 ``degraded`` with its ``cause`` when it cannot write: gone, or a write fault (disk full, an
    I/O error) that it recovers from by itself once the cause is gone.
    """
    cause = state.store.fault
    return JSONResponse(
        {"status": "ok" if cause is None else "degraded", "cause": cause, "writer_alive": state.store.alive,
         "writer_queue": state.store.depth, "experiments": len(state.experiments)},
        status_code=200 if cause is None else 503,
    )


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}})
async def metrics(state: State):
    """Prometheus text: request counts and latency, writer queue depth, events committed."""
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
