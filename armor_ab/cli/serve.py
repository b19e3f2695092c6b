"""`armor-ab serve`: the HTTP API over the DuckDB file (the one process that owns it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from armor_ab.cli._common import DbOption, fail


def serve_command(
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    cors_origin: Annotated[
        list[str] | None, typer.Option("--cors-origin", help="allowed origin for client endpoints (repeatable)")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug | info | warning")] = "info",
    catalog: Annotated[Path | None, typer.Option("--catalog", hidden=True,
                                                 help="gone: the catalog is the database's")] = None,
    on_demand_timeout: Annotated[float, typer.Option(
        help="seconds a visitor waits for a page generated on demand (variants with on_demand: true)")] = 2.0,
    generate_backend: Annotated[str, typer.Option(help="backend for on-demand pages: torch | torch-cuda | onnxruntime | tensorrt")] = "torch",
    engine: Annotated[Path | None, typer.Option(help="built engine directory (onnxruntime, tensorrt backends)")] = None,
    header_timeout: Annotated[float, typer.Option(
        help="seconds a request's line and headers may take to arrive (then 408 and close)")] = 10.0,
    body_timeout: Annotated[float, typer.Option(
        help="seconds a request body may take to arrive whole, however it trickles (then 408 and close)")] = 30.0,
    keep_alive_timeout: Annotated[float, typer.Option(
        help="seconds a kept-alive connection may idle between requests")] = 5.0,
    max_connections: Annotated[int, typer.Option(
        help="connections open at once; the next one gets 503 (see docs/security.md)")] = 1024,
    report_memory_limit: Annotated[str | None, typer.Option(
        help="memory one report's joins, aggregates and sorts take before they spill to disk, apart from "
             "the event writer's (a DuckDB size; default 256MB)")] = None,
    db_memory_limit: Annotated[str | None, typer.Option(
        help="DuckDB's buffer pool in the database process: its cache of table blocks fills up to it, and "
             "reports' memory comes out of it (a DuckDB size; default 1GB)")] = None,
    dedup_window: Annotated[int | None, typer.Option(
        help="event ids the writer keeps in memory to tell a retried event at once (~21 bytes each, "
             "allocated at start; hold ten minutes of peak ingestion; default 8000000)")] = None,
    report_timeout: Annotated[float | None, typer.Option(
        help="seconds a report may run before it is stopped: 503 report_timeout (default 60)")] = None,
    warehouse: Annotated[str | None, typer.Option(
        help="compute reports where the events are: a warehouse URL (chdb:, clickhouse://…, spark://local[N], "
             "sc://…, duckdb:///…; ?parquet=DIR for an event lake) or a warehouse file (.yaml) mapping your own "
             "tables (docs/scale.md); default: the store's event log")] = None,
    export_dir: Annotated[Path | None, typer.Option(
        "--export-dir", help="keep an event lake: the events committed since the last round go to this directory "
                             "as Parquet (by date, exactly once; docs/scale.md), every --export-interval seconds "
                             "and once more at shutdown")] = None,
    export_interval: Annotated[float, typer.Option(
        help="seconds between the rounds of --export-dir")] = 60.0,
    health_interval: Annotated[float | None, typer.Option(
        help="seconds between the live-health checks of every running experiment, which pause a critical one "
             "(health.auto_pause); 0 turns the monitor off (default 30)")] = None,
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs)."""
    from dataclasses import replace

    from armor_ab.api.app import settings_from_env
    from armor_ab.store.db import DatabaseLockedError, SchemaVersionError
    from armor_ab.store.process import check_dedup_window, check_memory_limit
    from armor_ab.web.server import ConnectionLimits, serve

    if catalog is not None:  # an old start script: say where the catalog went, start nothing
        fail("--catalog is gone: the server reads the catalog from its database. Import yours into it once "
             "with `armor-ab catalog import FILE` (same --db), then start the server without --catalog")
    settings = settings_from_env(db)
    if cors_origin:
        settings = replace(settings, cors_origins=tuple(cors_origin))
    if generate_backend not in ("torch", "torch-cuda", "onnxruntime", "tensorrt"):
        fail(f"--generate-backend must be torch, torch-cuda, onnxruntime or tensorrt, not {generate_backend!r}")
    if generate_backend not in ("torch", "torch-cuda") and engine is None:
        fail(f"--generate-backend {generate_backend} needs --engine DIR (built by `armor-ab engine build`)")
    if on_demand_timeout < 0:
        fail("--on-demand-timeout cannot be negative")
    settings = replace(settings, on_demand_timeout=on_demand_timeout, generate_backend=generate_backend,
                       engine_dir=engine)
    for name, seconds in (("header", header_timeout), ("body", body_timeout), ("keep-alive", keep_alive_timeout)):
        if not seconds > 0:
            fail(f"--{name}-timeout must be positive")
    if max_connections < 1:
        fail("--max-connections must be at least 1")
    settings = replace(settings, body_timeout=body_timeout)
    limits = ConnectionLimits(header_timeout=header_timeout, keep_alive_timeout=keep_alive_timeout,
                              max_connections=max_connections)
    if report_memory_limit is not None:
        try:
            settings = replace(settings, report_memory_limit=check_memory_limit(report_memory_limit,
                                                                                "--report-memory-limit"))
        except ValueError as exc:
            fail(str(exc))
    if db_memory_limit is not None:
        try:
            settings = replace(settings, db_memory_limit=check_memory_limit(db_memory_limit, "--db-memory-limit"))
        except ValueError as exc:
            fail(str(exc))
    if dedup_window is not None:
        try:
            settings = replace(settings, dedup_window=check_dedup_window(dedup_window, "--dedup-window"))
        except ValueError as exc:
            fail(str(exc))
    if report_timeout is not None:
        if not report_timeout > 0:
            fail("--report-timeout must be a positive number of seconds")
        settings = replace(settings, report_timeout_s=report_timeout)
    if health_interval is not None:
        if not (health_interval >= 0 and health_interval != float("inf")):
            fail("--health-interval must be a number of seconds, 0 or more (0: no health monitor)")
        settings = replace(settings, health_interval_s=health_interval)
    if not (export_interval > 0 and export_interval != float("inf")):
        fail("--export-interval must be a positive number of seconds")
    if export_dir is not None:
        from armor_ab.store.lake import LakeError, check_lake

        try:
            check_lake(export_dir)
        except LakeError as exc:
            fail(f"--export-dir {export_dir}: {exc}")
        settings = replace(settings, export_dir=export_dir.resolve(), export_interval_s=export_interval)
    if warehouse is not None:
        from armor_ab.store.event_source import WarehouseFileError
        from armor_ab.store.warehouse import check_warehouse_setting, redact

        try:
            check_warehouse_setting(warehouse)
        except WarehouseFileError as exc:  # it names the file and the field
            fail(str(exc))
        except ValueError as exc:
            fail(f"--warehouse {redact(warehouse)}: {exc}")
        settings = replace(settings, warehouse=warehouse)
    try:
        serve(settings, host=host, port=port, log_level=log_level, limits=limits)
    except (DatabaseLockedError, SchemaVersionError) as exc:
        fail(str(exc))


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
