"""An experiment's report as the server serves it: assembled in the database process, cached.

``GET …/results`` serves it as is; an ROI what-if asks for it to decide the verdict again with the
edited ROI (``reporting.verdict.decide_report``), so the dashboards never run the verdict themselves.
"""

from __future__ import annotations

import json

from armor_ab.reporting.report import experiment_report_json
from armor_ab.reporting.verdict import decide_report
from armor_ab.services.assignment import live_experiment
from armor_ab.services.state import AppState


async def report_json(state: AppState, key: str, cuped: bool | None = None) -> tuple[bytes, float]:
    """(the report's JSON, its age in seconds): cached until the experiment or, after ``report_max_age``
    seconds, its events change (``services.report_cache``); 404 for an unknown experiment."""
    record = live_experiment(state, key).record

    async def compute() -> bytes:
        return await state.read(experiment_report_json, record, cuped=cuped)

    version = (record.updated_at, record.status, record.bucket_version)
    return await state.reports.get((key, cuped), version, compute, events=state.store.committed_events)


async def verdict_with_roi(state: AppState, key: str, roi: dict) -> dict | None:
    """The experiment's verdict by the report's rules, with ``roi`` in place of the report's ROI."""
    body, _ = await report_json(state, key)
    return decide_report({**json.loads(body), "roi": roi})
