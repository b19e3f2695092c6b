"""Shared set-up of the dashboard tests.

A platform with simulated data: the demo experiment started 15 days ago, two
generated catalog pages pending review, and visitors with a known true effect sent through the
real API by ``armor-ab simulate``. The simulation runs once per test session (a template
directory); each test module copies it and serves its copy with its own ``armor-ab serve``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers.platform import ROOT, Server, free_port, seed_database

EXP = "catalog-interleaved"
VISITORS = 1500
EFFECT = "dwell=+8%,inquiry=+15%"
TRUE_DWELL_LIFT = 0.08
VIEWS = ROOT / "armor_ab" / "dashboards" / "views"
APP = ROOT / "armor_ab" / "dashboards" / "app.py"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run"]
PENDING_ITEMS = ("pumps-01", "valves-02")


def _seed_content(db: Path) -> None:
    """Two generated pages, pending review: one with a picture between two texts, one text only."""
    from PIL import Image

    from armor_ab.model.interleaved import ContentMetadata, ImageSegment, InterleavedContent, TextSegment
    from armor_ab.store.content import images_dir_for, save_generated
    from armor_ab.store.db import connect

    pages = {
        "pumps-01": InterleavedContent(
            [TextSegment("Pump P-01: 40 m head, stainless impeller."),
             ImageSegment.from_pil(Image.new("RGB", (96, 64), "teal")),
             TextSegment(" Quiet, compact, easy to service.")],
            ContentMetadata(model="hand-made", config_hash="-", seed=0, prompt="Describe Pump P-01")),
        "valves-02": InterleavedContent(
            [TextSegment("Valve V-02: a ball valve for water and oil.")],
            ContentMetadata(model="hand-made", config_hash="-", seed=0, prompt="Describe Valve V-02")),
    }
    con = connect(db)
    try:
        for item, page in pages.items():
            save_generated(con, images_dir_for(db), EXP, "armor", item, page, page.metadata.prompt)
    finally:
        con.close()


def simulated_template(factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The session's simulated platform directory (built on first use) and its API keys."""
    root = factory.getbasetemp() / "dashboard-template"
    done = root / "keys.json"
    if done.exists():
        return root, json.loads(done.read_text())
    root.mkdir(parents=True, exist_ok=True)
    db = root / "armor_ab.duckdb"
    keys = seed_database(db, started_days_ago=15)  # the simulated history (14 days) falls inside the window
    _seed_content(db)
    server = Server(db).start()
    try:
        sim = subprocess.run(
            [sys.executable, "-m", "armor_ab", "simulate", "--experiment", EXP, "--visitors", str(VISITORS),
             "--effect", EFFECT, "--days", "14", "--seed", "7", "--api", server.url, "--key", keys["client"],
             "--read-key", keys["read"]],
            capture_output=True, text=True, timeout=900, check=False)
        assert sim.returncode == 0, sim.stderr[-3000:]
    finally:
        server.stop()
    done.write_text(json.dumps(keys))
    return root, keys


@dataclass
class DashboardPlatform:
    """A served copy of the simulated platform."""

    root: Path
    server: Server
    keys: dict[str, str]

    @property
    def url(self) -> str:
        return self.server.url

    def headers(self, scope: str = "read") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[scope]}"}

    def get(self, path: str, scope: str = "read", **params: object) -> object:
        r = httpx.get(self.url + path, params=params, headers=self.headers(scope), timeout=120)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body: object, scope: str = "read") -> object:
        r = httpx.post(self.url + path, json=body, headers=self.headers(scope), timeout=120)
        r.raise_for_status()
        return r.json()

    def stop(self) -> None:
        self.server.stop()


def start_platform(factory: pytest.TempPathFactory, name: str) -> DashboardPlatform:
    src, keys = simulated_template(factory)
    dst = factory.mktemp(name)
    for path in src.iterdir():
        if path.is_dir():
            shutil.copytree(path, dst / path.name)
        elif path.suffix in (".duckdb", ".wal", ".json"):
            shutil.copy2(path, dst / path.name)
    server = Server(dst / "armor_ab.duckdb").start()
    return DashboardPlatform(dst, server, keys)


@dataclass
class Dashboard:
    """A running ``armor-ab dashboard`` process (Streamlit, headless) on a free port."""

    proc: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def start_dashboard(api: str, key: str, log: Path, timeout: float = 90.0) -> Dashboard:
    """``armor-ab dashboard --no-auth --headless`` with the key in the environment; waits for health."""
    port = free_port()
    env = {**os.environ, "ARMOR_AB_KEY": key, "PYTHONUNBUFFERED": "1"}
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "armor_ab", "dashboard", "--api", api, "--port", str(port), "--no-auth",
             "--headless"], stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    dash = Dashboard(proc, port, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dashboard exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{dash.url}/_stcore/health", timeout=1.0).text == "ok":
                return dash
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    dash.stop()
    raise RuntimeError(f"dashboard did not start:\n{log.read_text()[-3000:]}")
