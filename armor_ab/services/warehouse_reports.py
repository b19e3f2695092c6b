"""Reports computed where the events are (``ServerSettings.warehouse``), not in the store's database process.

The server still owns the store (experiments, keys, content, and the exposures it logs); only the
report's statistics queries go to the warehouse, and only their aggregates come back. So the Results and
ROI pages, ``GET …/results`` and the ROI what-ifs work unchanged over ClickHouse, Spark or a Parquet lake.

One warehouse is opened on the first report and kept. Reports over it run one at a time in a worker
thread: the staged dialects keep their steps as a session's temporary tables (ClickHouse) or views
(Spark), which two concurrent reports on one session would share, and the engines parallelise each query
themselves. The report cache (``services.report_cache``) is what keeps a dashboard's repeated requests off
the warehouse. A failure closes the warehouse, so the next report opens it again (a dropped connection, a
restarted Spark Connect server), and answers 503 ``warehouse_unavailable`` naming the engine's error; the
URL's password is never in a message or a log line.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from armor_ab.logs import first_line
from armor_ab.services.errors import ServiceError
from armor_ab.store.experiments import ExperimentRecord
from armor_ab.store.warehouse import Warehouse, open_warehouse_setting, redact

log = logging.getLogger(__name__)
RETRY_AFTER_S = 30


class WarehouseReports:
    """Reports over one warehouse (a URL or a warehouse file), one at a time."""

    def __init__(self, setting: str, timeout_s: float) -> None:
        self.setting, self.timeout_s = setting, timeout_s
        self.where = redact(setting)
        self._wh: Warehouse | None = None
        self._lock = threading.Lock()

    def _report(self, record: ExperimentRecord, cuped: bool | None) -> bytes:
        # Imported here: the statistics (scipy) take seconds to import, which the API process's start
        # does not wait for when reports run in the database process.
        from armor_ab.reporting.report import experiment_report_json

        with self._lock:
            try:
                if self._wh is None:
                    self._wh = open_warehouse_setting(self.setting)
                started = time.perf_counter()
                body = experiment_report_json(self._wh, record, cuped=cuped)
            except Exception as exc:
                self._drop()
                log.warning("warehouse report failed", extra={"warehouse": self.where, "experiment": record.spec.key,
                                                              "error": type(exc).__name__})
                raise ServiceError(503, "warehouse_unavailable",
                                   f"the warehouse {self.where} could not compute the report: "
                                   f"{type(exc).__name__}: {first_line(exc, 500)}",
                                   headers={"Retry-After": str(RETRY_AFTER_S)}) from None
            log.info("warehouse report", extra={"warehouse": self.where, "experiment": record.spec.key,
                                                "seconds": round(time.perf_counter() - started, 3)})
            return body

    async def report_json(self, record: ExperimentRecord, cuped: bool | None = None) -> bytes:
        """The report's JSON, computed in a worker thread within ``timeout_s`` (then 503 ``report_timeout``;
        the query itself runs on to its end in the warehouse, and the next report waits for it)."""
        try:
            return await asyncio.wait_for(asyncio.to_thread(self._report, record, cuped), self.timeout_s)
        except TimeoutError:
            raise ServiceError(503, "report_timeout",
                               f"the warehouse {self.where} took longer than {self.timeout_s:g} s for this report",
                               headers={"Retry-After": str(RETRY_AFTER_S)}) from None

    def _drop(self) -> None:
        wh, self._wh = self._wh, None
        if wh is not None:
            try:
                wh.close()
            except Exception:  # noqa: BLE001 - it failed already; the next report opens a new one
                pass

    def close(self) -> None:
        with self._lock:
            self._drop()

