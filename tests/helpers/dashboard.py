"""Shared set-up of the dashboard tests.

A platform with simulated data: the demo experiment started 15 days ago, two
generated catalog pages pending review, and visitors with a known true effect sent through the
real API by ``armor-ab simulate``. The simulation runs once per test session (a template
directory); each test module copies it and serves its copy with its own ``armor-ab serve``, after
an optional ``seed`` of its own on the copy (``seed_guarded``: a second running experiment whose
pages carry the guardrails' real verdicts).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from armor_ab.experiments.loader import load_experiment_file
from tests.helpers.platform import DEMO_EXPERIMENT, ROOT, Server, free_port, seed_database

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

# A second running experiment (no visitors) whose armor pages were checked by the real guardrails under
# GUARDED_POLICY: item -> (verdict, status). spec_fidelity blocks; terms and image_sanity only warn.
GUARDED = "catalog-guarded"
GUARDED_POLICY = {
    "spec_fidelity": {"action": "block"},
    "terms": {"action": "warn", "blocked": [r"\bcheapest\b"]},
    "image_sanity": {"action": "warn"},
    "modality": {"action": "off"}, "image_text": {"action": "off"}, "text_hygiene": {"action": "off"},
}
GUARDED_PAGES = {
    "pumps-01": ("pass", "approved"),  # auto-approved by the guardrails: served
    "pumps-02": ("pass", "pending"),
    "pumps-03": ("pass", "pending"),
    "motors-03": ("warn", "pending"),  # terms: "cheapest" (warn only)
    "valves-03": ("fail", "pending"),  # spec_fidelity: "16 bar" where the catalog says 10 bar; a blank picture
}
GUARDED_SPAN = "16 bar"  # the failing page's evidence in its second text segment, after a picture


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


def _noise(seed: int):
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (64, 96, 3), dtype=np.uint8))


def seed_guarded(db: Path) -> None:
    """``GUARDED``: the demo experiment under another key, running, with GUARDED_POLICY, and five armor
    pages checked by the real checks (spans and picture evidence as the checks give them)."""
    from PIL import Image

    from armor_ab.experiments.content_checks import ContentChecks
    from armor_ab.experiments.models import ExperimentSpec
    from armor_ab.guardrails.context import CheckContext
    from armor_ab.guardrails.page import Page
    from armor_ab.guardrails.pipeline import GUARDRAILS_REVIEWER, check_pages, resolve_expects
    from armor_ab.model.interleaved import ContentMetadata, ImageSegment, InterleavedContent, TextSegment
    from armor_ab.store.catalog import list_items
    from armor_ab.store.content import images_dir_for, save_generated
    from armor_ab.store.db import connect
    from armor_ab.store.experiments import set_status, upsert_experiment

    data = load_experiment_file(DEMO_EXPERIMENT).model_dump(mode="json", exclude_unset=True)
    data.update(key=GUARDED, hash_seed=GUARDED, name="Guarded ARMOR pages", content_checks=GUARDED_POLICY)
    spec = ExperimentSpec.model_validate(data)
    policy = ContentChecks.model_validate(GUARDED_POLICY)
    texts = {
        "pumps-01": ["Pump P-01 moves 250 m3/h with 11 kW.", _noise(1)],
        "pumps-02": ["Pump P-02: 1.5 kW, 25 m3/h.", _noise(2), " Quiet and compact."],
        "pumps-03": ["Pump P-03 for cooling circuits: 22 kW, 25 m3/h.", _noise(3)],
        "motors-03": ["Motor M-03: 7.5 kW at 2900 rpm, the cheapest flameproof motor.", _noise(4)],
        "valves-03": ["Valve V-03, a gate valve for chemical dosing.", Image.new("RGB", (96, 64), "grey"),
                      f" Rated {GUARDED_SPAN}, size DN20."],
    }
    pages = {item: InterleavedContent(
        [TextSegment(x) if isinstance(x, str) else ImageSegment.from_pil(x) for x in parts],
        ContentMetadata(model="hand-made", config_hash="-", seed=0, prompt=f"Describe {item}"))
        for item, parts in texts.items()}
    con = connect(db)
    try:
        upsert_experiment(con, spec)
        set_status(con, GUARDED, "running")
        catalog = {i.id: i for i in list_items(con)}
        expects = resolve_expects(spec.variant("armor").content)
        checked = check_pages([Page.from_content(p, catalog[i], p.metadata.prompt, expects, "armor")
                               for i, p in pages.items()], policy,
                              CheckContext(categories=tuple(sorted({i.category for i in catalog.values()}))))
        for (item, page), result in zip(pages.items(), checked, strict=True):
            verdict, status = GUARDED_PAGES[item]
            assert result.verdict == verdict, (item, result.to_json())
            save_generated(con, images_dir_for(db), GUARDED, "armor", item, page, page.metadata.prompt,
                           status=status, checks=result.to_json(), verdict=result.verdict,
                           reviewed_by=GUARDRAILS_REVIEWER if status == "approved" else None)
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


def start_platform(factory: pytest.TempPathFactory, name: str,
                   seed: Callable[[Path], None] | None = None) -> DashboardPlatform:
    """A served copy of the simulated platform; ``seed(db)`` writes to the copy before its server starts."""
    src, keys = simulated_template(factory)
    dst = factory.mktemp(name)
    for path in src.iterdir():
        if path.is_dir():
            shutil.copytree(path, dst / path.name)
        elif path.suffix in (".duckdb", ".wal", ".json"):
            shutil.copy2(path, dst / path.name)
    if seed is not None:
        seed(dst / "armor_ab.duckdb")
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
