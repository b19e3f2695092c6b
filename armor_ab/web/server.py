"""The whole server: the API with the browser side mounted on it, run on uvicorn (``armor-ab serve``).

The one place web/ touches the API: it takes the app ``armor_ab.api.app.create_app`` builds and
mounts the snippet and the example site on it.
"""

from __future__ import annotations

import sys

from fastapi import FastAPI

from armor_ab.api.app import ServerSettings, create_app
from armor_ab.web.routes import site_router


def create_server(settings: ServerSettings) -> FastAPI:
    """The API over one DuckDB file, with the snippet (``/v1/sdk/armor-ab.js``) and the example site (``/demo/``)."""
    app = create_app(settings)
    app.include_router(site_router)
    return app


def serve(settings: ServerSettings, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Run the server on uvicorn with uvloop and httptools until interrupted."""
    import uvicorn

    from armor_ab.logs import setup_logging

    setup_logging(log_level.upper())
    # The writer thread and the event loop share the GIL; the default 5 ms switch interval makes
    # every GIL hand-off of the writer wait behind request parsing (a convoy), so hand off sooner.
    sys.setswitchinterval(0.0005)
    app = create_server(settings)
    uvicorn.run(
        app, host=host, port=port, loop="uvloop", http="httptools", access_log=False, log_config=None,
        log_level=log_level, timeout_graceful_shutdown=10,
    )
