"""The event lake kept fresh by the server itself (``armor-ab serve --export-dir DIR``).

DuckDB lets one process open a database file to write, so while a server runs, ``armor-ab events export``
cannot open its file. The server exports instead: every ``export_interval_s`` seconds it runs
``armor_ab.store.lake.export_events`` on a read cursor of its database process, beside the writer and
without its lock. Each round exports the rows committed since the lake's last export (by commit sequence:
exactly once, crash-safe; docs/scale.md, "The event lake") and takes the lake's lock for its duration, so a
second exporter (another server, a CLI run on a copy) is refused for that round and the next round tries
again. A failing round (disk full, a lake that belongs to another database) is logged and counted, and
does not stop the next; the server's requests never wait for an export. A last round runs at shutdown, so
what the server acknowledged before it stopped is in the lake (and the exposures it logged, committed first).

Prometheus: ``armor_ab_lake_exported_rows_total``, ``armor_ab_lake_exported_through`` (the lake's
commit-sequence high-water mark), ``armor_ab_lake_last_export_timestamp_seconds`` and
``armor_ab_lake_export_failures_total``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from prometheus_client import Counter, Gauge

from armor_ab.services.state import AppState
from armor_ab.store.lake import ExportResult, export_events

log = logging.getLogger(__name__)


class LakeExporter:
    """One server's export loop over its own database."""

    def __init__(self, state: AppState, dest: Path, interval_s: float) -> None:
        if not interval_s > 0:
            raise ValueError(f"the export interval must be positive, not {interval_s!r}")
        self.state, self.dest, self.interval_s = state, Path(dest), interval_s
        self._stop = asyncio.Event()
        registry = state.metrics.registry
        self.rows = Counter("armor_ab_lake_exported_rows_total", "event rows exported to the Parquet lake",
                            registry=registry)
        self.through = Gauge("armor_ab_lake_exported_through",
                             "the lake's high-water mark: the highest commit sequence number exported", registry=registry)
        self.last = Gauge("armor_ab_lake_last_export_timestamp_seconds",
                          "when the last export round finished without error (Unix time)", registry=registry)
        self.failures = Counter("armor_ab_lake_export_failures_total", "export rounds that failed",
                                registry=registry)
        self.last_result: ExportResult | None = None
        self.last_error: str | None = None

    async def export_once(self) -> ExportResult | None:
        """One round; None when it failed (logged and counted)."""
        try:
            result: ExportResult = await self.state.read(export_events, str(self.dest),
                                                         database=str(self.state.settings.db_path))
        except Exception as exc:  # noqa: BLE001 - a round that fails must not end the loop
            self.failures.inc()
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("lake export failed", extra={"lake": str(self.dest), "error": self.last_error})
            return None
        self.last_result, self.last_error = result, None
        self.rows.inc(result.rows)
        self.through.set(result.exported_through)
        self.last.set(time.time())
        if result.rows or result.resumed:
            log.info("lake export", extra={"lake": str(self.dest), "rows": result.rows, "files": len(result.files),
                                           "through": result.exported_through, "seconds": round(result.seconds, 3)})
        return result

    async def run(self) -> None:
        """Export now, then every ``interval_s``, until ``stop``; one last round on the way out."""
        while not self._stop.is_set():
            await self.export_once()
            try:
                await asyncio.wait_for(self._stop.wait(), self.interval_s)
            except TimeoutError:
                pass
        # The exposures the server logged without waiting for their commit go in first (one transaction).
        with contextlib.suppress(Exception):
            await asyncio.wrap_future(self.state.store.barrier())
        await self.export_once()

    def stop(self) -> None:
        self._stop.set()
