"""An experiment's report as the server serves it: assembled in the database process (or, with
``ServerSettings.warehouse``, over the warehouse: ``services.warehouse_reports``), cached.

``GET …/results`` serves it as is; an ROI what-if asks for it to decide the verdict again with the
edited ROI (``reporting.verdict.decide_report``), so the dashboards never run the verdict themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

from armor_ab.reporting.report import experiment_report_json
from armor_ab.reporting.verdict import decide_report
from armor_ab.services.assignment import live_experiment
from armor_ab.services.errors import ServiceError
from armor_ab.services.state import AppState
from armor_ab.store.process import ReadBudgetError

REPORT_RETRY_AFTER = 30  # seconds: a report that timed out may fit once the machine is less busy


async def report_json(state: AppState, key: str, cuped: bool | None = None) -> tuple[bytes, float]:
    """(the report's JSON, its age in seconds): cached until the experiment or, after ``report_max_age``
    seconds, its events change (``services.report_cache``); 404 for an unknown experiment.

    The report runs within its own budget in the database process (``ServerSettings.report_memory_limit``
    and ``report_timeout_s``), apart from the writer: over it, 503 ``report_timeout`` (with Retry-After)
    or ``report_too_large``, and the event log is not disturbed."""
    record = live_experiment(state, key).record
    version = (record.updated_at, record.status, record.bucket_version)
    warehouse = state.warehouse
    if warehouse is not None:  # the statistics run where the events are (services.warehouse_reports)
        # The store's event count says nothing of the warehouse's events: a report is recomputed once it is
        # older than report_max_age, whatever the store commits meanwhile.
        bucket = int(time.monotonic() // max(state.reports.max_age, 1e-3))
        return await state.reports.get((key, cuped), version,
                                       lambda: warehouse.report_json(record, cuped=cuped), events=bucket)

    async def compute() -> bytes:
        # Read-your-writes: the server logs exposures without waiting for their commit, so a report asked
        # right after traffic must first see them committed (one transaction, milliseconds).
        with contextlib.suppress(Exception):  # a failing writer still leaves the committed data to report on
            await asyncio.wrap_future(state.store.barrier())
        try:
            return await state.read_bounded(experiment_report_json, record, cuped=cuped)
        except ReadBudgetError as exc:
            headers = {"Retry-After": str(REPORT_RETRY_AFTER)} if exc.code == "report_timeout" else None
            raise ServiceError(503, exc.code, exc.message, headers=headers) from None

    return await state.reports.get((key, cuped), version, compute, events=state.store.committed_events)


async def verdict_with_roi(state: AppState, key: str, roi: dict) -> dict | None:
    """The experiment's verdict by the report's rules, with ``roi`` in place of the report's ROI."""
    body, _ = await report_json(state, key)
    return decide_report({**json.loads(body), "roi": roi})
