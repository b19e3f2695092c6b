"""`armor-ab serve`: the HTTP API over the DuckDB file (the one process that owns it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from armor_ab.cli._common import DbOption, fail
from armor_ab.config import CATALOG_ENV


def serve_command(
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    cors_origin: Annotated[
        list[str] | None, typer.Option("--cors-origin", help="allowed origin for client endpoints (repeatable)")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug | info | warning")] = "info",
    catalog: Annotated[Path | None, typer.Option("--catalog", envvar=CATALOG_ENV,
                                                 help="catalog directory for control copy (default: the demo catalog)")] = None,
    on_demand_timeout: Annotated[float, typer.Option(
        help="seconds a visitor waits for a page generated on demand (variants with on_demand: true)")] = 2.0,
    generate_backend: Annotated[str, typer.Option(help="backend for on-demand pages: torch | onnxruntime | tensorrt")] = "torch",
    engine: Annotated[Path | None, typer.Option(help="built engine directory (onnxruntime, tensorrt backends)")] = None,
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs)."""
    from dataclasses import replace

    from armor_ab.api.app import settings_from_env
    from armor_ab.store.db import DatabaseLockedError, SchemaVersionError
    from armor_ab.web.server import serve

    settings = settings_from_env(db)
    if cors_origin:
        settings = replace(settings, cors_origins=tuple(cors_origin))
    if catalog:
        settings = replace(settings, catalog_dir=catalog)
    if generate_backend not in ("torch", "onnxruntime", "tensorrt"):
        fail(f"--generate-backend must be torch, onnxruntime or tensorrt, not {generate_backend!r}")
    if generate_backend != "torch" and engine is None:
        fail(f"--generate-backend {generate_backend} needs --engine DIR (built by `armor-ab engine build`)")
    if on_demand_timeout < 0:
        fail("--on-demand-timeout cannot be negative")
    settings = replace(settings, on_demand_timeout=on_demand_timeout, generate_backend=generate_backend,
                       engine_dir=engine)
    try:
        serve(settings, host=host, port=port, log_level=log_level)
    except (DatabaseLockedError, SchemaVersionError) as exc:
        fail(str(exc))


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
