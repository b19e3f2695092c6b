"""`armor-ab dashboard`: the Streamlit dashboards (armor_ab/dashboards/app.py) over the HTTP API."""

from __future__ import annotations

import os
import sys
from importlib.resources import files
from pathlib import Path
from typing import Annotated

import typer

from armor_ab.cli._common import fail
from armor_ab.config import API_ENV, DASHBOARD_NO_AUTH_ENV, DEFAULT_API, env_settings

# Streamlit runs the entrypoint as a script; it ships in the wheel with the package armor_ab.dashboards.
APP = Path(str(files("armor_ab.dashboards"))) / "app.py"


def streamlit_command(app: Path, *, host: str, port: int, headless: bool) -> list[str]:
    """The ``streamlit run`` command line: no file watcher, no usage statistics, never a prompt.

    Without ``--server.showEmailPrompt false`` the first non-headless run on a machine stops at Streamlit's
    e-mail prompt (and exits when stdin is not a terminal)."""
    return [
        sys.executable, "-m", "streamlit", "run", str(app),
        "--server.address", host, "--server.port", str(port),
        "--server.headless", "true" if headless else "false", "--server.showEmailPrompt", "false",
        "--server.fileWatcherType", "none", "--server.runOnSave", "false",
        "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
    ]


def dashboard_env(api: str, no_auth: bool, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the dashboard reads: the API URL and the auth mode (armor_ab is installed, so no PYTHONPATH)."""
    env = dict(os.environ if base is None else base)
    env[API_ENV] = api
    env[DASHBOARD_NO_AUTH_ENV] = "1" if no_auth else "0"
    return env


def dashboard_command(
    api: Annotated[str, typer.Option("--api", envvar=API_ENV, help="API base URL")] = DEFAULT_API,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="dashboard TCP port")] = 8501,
    host: Annotated[str, typer.Option("--host", help="interface to listen on")] = "127.0.0.1",
    no_auth: Annotated[bool, typer.Option(
        "--no-auth", help="no sign-in: every viewer uses the key in $ARMOR_AB_KEY (trusted hosts only)")] = False,
    headless: Annotated[bool, typer.Option("--headless", help="do not open a browser")] = False,
) -> None:
    """Serve the dashboards (Experiments, Design, Results, ROI, Content) with `streamlit run`."""
    if not APP.is_file():
        fail(f"the dashboards are missing from this installation ({APP}): reinstall armor-ab")
    if no_auth and env_settings().key is None:
        fail("--no-auth needs a read or admin key in ARMOR_AB_KEY (create one: armor-ab keys create --scope read)")
    cmd = streamlit_command(APP, host=host, port=port, headless=headless)
    typer.echo(f"dashboard on http://{host}:{port} over the API at {api}"
               + (" (no sign-in: key from ARMOR_AB_KEY)" if no_auth else " (sign in with a read or admin key)"),
               err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # Replace this process: Ctrl-C and SIGTERM reach Streamlit directly, and no parent is left behind.
    os.execve(sys.executable, cmd, dashboard_env(api, no_auth))


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard_command)
