"""The live state of a server: the database process, and in-memory caches of small tables.

The API owns the DuckDB file through one child process (``armor_ab.store.process``) that holds
the only connection: event batches, admin writes and reads all go there. Experiments and key
hashes are small and read on every request, so they live in memory here and are refreshed from
the snapshot every admin write returns. The catalog (``catalog_items``) comes in the snapshot the
database process sends when it is ready: control copy, exposure segments, ``GET /v1/catalog/items``,
the ``/demo/`` site and on-demand generation all read it from here.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from armor_ab.catalog.items import CatalogItem
from armor_ab.content.control import control_content
from armor_ab.content.on_demand import OnDemand, OnDemandSettings
from armor_ab.content.pages import PageKey
from armor_ab.experiments.assignment import Assigner
from armor_ab.services.errors import ServiceError
from armor_ab.services.metrics import Metrics
from armor_ab.services.report_cache import ReportCache
from armor_ab.services.warehouse_reports import WarehouseReports
from armor_ab.store.content import save_generated
from armor_ab.store.experiments import ExperimentRecord
from armor_ab.store.process import Snapshot, StoreClient
from armor_ab.store.writer import StoreFaultError

T = TypeVar("T")


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode  # one encoder, not one per call


def json_bytes(value: object) -> bytes:
    return _encode(value).encode()


@dataclass(frozen=True)
class ServerSettings:
    """One server's settings (``armor-ab serve`` builds them from its options and ``EnvSettings``)."""

    db_path: Path
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 1024 * 1024
    body_timeout: float = 30.0  # seconds a request body may take to arrive whole (then 408; armor-ab serve --body-timeout)
    writer_queue: int = 20_000
    # Exposure ids known committed, so a returning visitor's request sends nothing to the writer. A
    # forgotten id costs one row the writer's dedup window drops (about a microsecond); 50,000 ids
    # keep the API's memory within ~5 MB of flat while the set fills and empties.
    exposure_cache_size: int = 50_000
    read_concurrency: int = 4
    report_max_age: float = 60.0  # seconds a report is served under live traffic before recomputing
    db_memory_limit: str = "1GB"  # DuckDB's buffer pool in the database process (reports need room)
    # Event ids the writer keeps in memory to tell a retry at once (armor_ab.store.dedup): ~21 bytes
    # each, allocated at start; hold at least ten minutes of peak ingestion (armor-ab serve --dedup-window).
    dedup_window: int = 8_000_000
    # A report's own budget, apart from the writer's: its joins, aggregates and sorts spill to disk
    # past report_memory_limit (DuckDB's per-connection operator_memory_limit; two reports run at
    # once), and it is interrupted after report_timeout_s (503 report_timeout).
    report_memory_limit: str = "256MB"
    report_timeout_s: float = 60.0
    db_lock_wait: float = 10.0  # seconds to wait for the file lock of a previous server that is exiting
    fast_path: bool = True  # serve GET …/assignment and …/content below FastAPI (see api/fastpath.py)
    images_dir: Path | None = None  # default: images/ beside the database
    on_demand_timeout: float = 2.0  # seconds a visitor waits for a page generated on demand
    generate_backend: str = "torch"  # torch | torch-cuda | onnxruntime | tensorrt, for on-demand pages
    engine_dir: Path | None = None  # the built engine the onnxruntime and tensorrt backends need
    # Seconds between the health monitor's checks of every running experiment (armor-ab serve
    # --health-interval; 0: no monitor, GET …/health still answers). See armor_ab.services.health.
    health_interval_s: float = 30.0
    # Where reports compute their statistics: None, the store's event log; else a warehouse URL or a
    # warehouse file (armor-ab serve --warehouse; armor_ab.services.warehouse_reports, docs/scale.md).
    warehouse: str | None = None
    # The event lake the server keeps (armor-ab serve --export-dir, --export-interval; services.lake_export):
    # every export_interval_s, the rows committed since the last export go to export_dir as Parquet.
    export_dir: Path | None = None
    export_interval_s: float = 60.0

    @property
    def images(self) -> Path:
        from armor_ab.store.content import images_dir_for

        return self.images_dir or images_dir_for(self.db_path)


@dataclass(frozen=True)
class LiveExperiment:
    record: ExperimentRecord
    assigner: Assigner
    variants: frozenset[str]


@dataclass
class AppState:
    settings: ServerSettings
    store: StoreClient
    metrics: Metrics
    experiments: dict[str, LiveExperiment] = field(default_factory=dict)
    keys: dict[str, tuple[str, str]] = field(default_factory=dict)
    variants: dict[str, frozenset[str]] = field(default_factory=dict)
    # Content serving caches: approved pages and control copy, pre-serialised to JSON bytes, and the
    # digest of each (an exposure of …/content records the digest of the page it served).
    content: dict[tuple[str, str, str], bytes] = field(default_factory=dict)
    content_digests: dict[tuple[str, str, str], str] = field(default_factory=dict)
    content_pictures: dict[tuple[str, str, str], tuple[str, ...]] = field(default_factory=dict)  # served pictures, by page
    # Every stored page's status; a page failing a blocking check is ``blocked`` (fallback ``guardrail``).
    content_status: dict[tuple[str, str, str], str] = field(default_factory=dict)
    control: dict[str, bytes] = field(default_factory=dict)
    control_digests: dict[str, str] = field(default_factory=dict)  # SHA-256 of each item's control bytes
    categories: dict[str, str] = field(default_factory=dict)  # item -> category, for exposure segments
    catalog: dict[str, CatalogItem] = field(default_factory=dict)  # by id, in catalog order
    exposures_seen: set[str] = field(default_factory=set)  # committed exposure ids
    exposures_pending: set[str] = field(default_factory=set)  # queued, not yet committed
    reports: ReportCache = field(default_factory=ReportCache)
    on_demand: OnDemand | None = None
    warehouse: WarehouseReports | None = None  # reports over a warehouse (ServerSettings.warehouse)

    @classmethod
    def open(cls, settings: ServerSettings) -> AppState:
        holder: dict[str, Any] = {}

        def on_commit(inserted: int, seconds: float, late: int) -> None:
            holder["m"].commit_seconds.observe(seconds)
            holder["m"].events_committed.inc(inserted)
            if late:
                holder["m"].late_lookups.inc(late)

        def on_memory(by_tag: dict[str, int]) -> None:
            gauge = holder["m"].db_memory
            gauge.clear()  # a tag that no longer holds memory drops out
            for tag, used in by_tag.items():
                gauge.labels(tag.lower()).set(used)

        def rows_committed(ids: list[str]) -> None:
            seen, pending = holder["s"].exposures_seen, holder["s"].exposures_pending
            if len(seen) + len(ids) > settings.exposure_cache_size:
                seen.clear()  # bounded memory; a forgotten id costs one row the writer drops
            seen.update(ids)
            pending.difference_update(ids)

        def rows_failed(ids: list[str]) -> None:
            holder["s"].exposures_pending.difference_update(ids)  # logged again on the next request
            holder["m"].exposures_deferred.inc(len(ids))

        store = StoreClient(
            settings.db_path, memory_limit=settings.db_memory_limit, writer_queue=settings.writer_queue,
            dedup_window=settings.dedup_window,
            read_concurrency=settings.read_concurrency, lock_wait_s=settings.db_lock_wait,
            report_memory_limit=settings.report_memory_limit, report_timeout_s=settings.report_timeout_s,
            # The report's modules (statistics, scipy: seconds) are imported when the database process
            # starts, not by the first report's message, which would hold up the batches behind it.
            preload=("armor_ab.reporting.report",),
            on_commit=on_commit, on_memory=on_memory, on_rows_committed=rows_committed, on_rows_failed=rows_failed,
        )
        metrics = Metrics(lambda: store.depth)
        holder["m"] = metrics
        state = cls(settings, store, metrics, reports=ReportCache(max_age=settings.report_max_age))
        if settings.warehouse is not None:
            state.warehouse = WarehouseReports(settings.warehouse, settings.report_timeout_s)
        holder["s"] = state
        state.apply(store.snapshot)
        state.on_demand = OnDemand(
            OnDemandSettings(timeout_s=settings.on_demand_timeout, backend=settings.generate_backend,
                             engine_dir=settings.engine_dir, images_dir=settings.images),
            state.catalog,
        )
        return state

    def close(self) -> None:
        if self.on_demand is not None:
            self.on_demand.close()
        if self.warehouse is not None:
            self.warehouse.close()
        self.store.close()

    # -- caches ----------------------------------------------------------------------------------
    def apply(self, snapshot: Snapshot) -> None:
        """Replace the in-memory copies of experiments, keys and content with a fresh snapshot."""
        self.experiments = {rec.key: self._live(rec) for rec in snapshot.experiments}
        self.variants = {k: e.variants for k, e in self.experiments.items()}
        self.keys = snapshot.keys
        self.content = {k: json_bytes(v) for k, v in snapshot.content.items()}
        self.content_pictures = {k: tuple(s["sha256"] for s in v["segments"] if s["type"] == "image")
                                 for k, v in snapshot.content.items()}
        self.content_digests = snapshot.content_digests
        self.content_status = snapshot.content_status
        if snapshot.catalog is not None:  # only the snapshot sent at start carries it
            self.load_catalog(snapshot.catalog)

    def load_catalog(self, items: list[CatalogItem]) -> None:
        """The catalog, its control copy per item (the page's text-only content, pre-serialised) and
        each item's category (exposure segments)."""
        self.catalog = {item.id: item for item in items}
        self.control = {item.id: json_bytes(control_content(item)) for item in items}
        self.control_digests = {item_id: hashlib.sha256(body).hexdigest() for item_id, body in self.control.items()}
        self.categories = {item.id: item.category for item in items}

    @staticmethod
    def _live(rec: ExperimentRecord) -> LiveExperiment:
        return LiveExperiment(rec, Assigner.from_experiment(rec), frozenset(v.key for v in rec.spec.variants))

    def variants_of(self) -> dict[str, frozenset[str]]:
        return self.variants

    # -- the pages on-demand generation asks about (content.pages.PageStore) -------------------------
    def served_pictures(self, experiment: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """(item id, picture hashes) of the experiment's served pages (content.pages.PageStore)."""
        return tuple((item_id, shas) for (exp, _, item_id), shas in self.content_pictures.items()
                     if exp == experiment and shas)

    def has_page(self, key: PageKey) -> bool:
        """A page is stored for (experiment, variant, item) in some review state."""
        return key in self.content or key in self.content_status

    async def store_generated(self, key: PageKey, page: Any, prompt: str, *, checks: Any = None,
                              status: str = "approved", reviewed_by: str | None = None) -> None:
        """Store a page generated on demand with its checks (``PageChecks``) and status (approved: live
        at once), never over an existing one. One that failed a blocking check is stored, never served."""
        experiment, variant, item_id = key
        await self.write(save_generated, self.settings.images, experiment, variant, item_id, page, prompt,
                         status=status, replace=False, reviewed_by=reviewed_by,
                         checks=checks.to_json() if checks is not None else None,
                         verdict=checks.verdict if checks is not None else None)

    # -- reads and writes --------------------------------------------------------------------------
    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(cursor, *args, **kwargs)`` in the database process (a module-level function)."""
        try:
            return await asyncio.wrap_future(self.store.read(fn, *args, **kwargs))
        except StoreFaultError as exc:
            raise unavailable(exc) from None

    async def read_bounded(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``read`` within the report budget (``report_memory_limit``, ``report_timeout_s``); raises
        ``armor_ab.store.process.ReadBudgetError`` over it."""
        try:
            return await asyncio.wrap_future(self.store.read_bounded(fn, *args, **kwargs))
        except StoreFaultError as exc:
            raise unavailable(exc) from None

    async def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(con, *args, **kwargs)`` on the writer thread, then refresh the caches it may have changed."""
        try:
            result, snapshot = await asyncio.wrap_future(self.store.write(fn, *args, **kwargs))
        except StoreFaultError as exc:
            raise unavailable(exc) from None
        self.apply(snapshot)
        return result


def unavailable(exc: StoreFaultError) -> ServiceError:
    """503 ``unavailable`` with Retry-After: the database cannot do it now (disk full, I/O error)."""
    return ServiceError(503, "unavailable", f"the database cannot do this now ({exc.cause}); retry later",
                        headers={"Retry-After": str(exc.retry_after)})
