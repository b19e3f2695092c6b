"""`armor-ab dashboard` never prompts: Streamlit's first-run e-mail prompt must not stop it.

Started as a new user starts it: without --headless, on a fresh HOME (no Streamlit credentials file), with no
terminal on stdin. It must serve; the browser it opens is a stub that records the URL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from armor_ab.cli.dashboard import APP, streamlit_command
from tests.conftest import free_port

pytestmark = pytest.mark.timeout(180)


def test_streamlit_command_turns_the_email_prompt_off() -> None:
    cmd = streamlit_command(APP, host="127.0.0.1", port=8501, headless=False)
    assert cmd[cmd.index("--server.showEmailPrompt") + 1] == "false"
    assert cmd[cmd.index("--browser.gatherUsageStats") + 1] == "false"
    assert cmd[cmd.index("--server.headless") + 1] == "false"


def test_dashboard_without_headless_serves_on_a_fresh_home_without_a_terminal(tmp_path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    stub = tmp_path / "bin"
    stub.mkdir()
    opened = tmp_path / "opened"
    # Streamlit opens the browser with xdg-open on Linux (else Python's webbrowser, which reads $BROWSER).
    (stub / "xdg-open").write_text(f'#!/bin/sh\necho "$@" >> {opened}\n')
    (stub / "xdg-open").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER")}
    env.update(HOME=str(home), BROWSER="true", PATH=f"{stub}{os.pathsep}{env.get('PATH', '')}",
               ARMOR_AB_KEY="unused-by-this-test", XDG_CONFIG_HOME=str(home / ".config"))
    port = free_port()
    log = tmp_path / "dashboard.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "armor_ab", "dashboard", "--port", str(port), "--no-auth",
             "--api", "http://127.0.0.1:9"],
            stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        healthy = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                healthy = httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                pass
            if healthy:
                break
            time.sleep(0.3)
        out = log.read_text()
        assert healthy, f"the dashboard did not serve (exit {proc.poll()}):\n{out[-3000:]}"
        # Not headless: it opens the browser (here the stub) at its URL, just after it starts serving.
        deadline = time.monotonic() + 10
        while not opened.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        out = log.read_text()
        assert opened.exists() and f":{port}" in opened.read_text(), out[-3000:]
        assert "Email" not in out, out[-3000:]
        assert proc.poll() is None, out[-3000:]
        assert not (home / ".streamlit" / "credentials.toml").exists()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
