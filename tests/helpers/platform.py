"""The platform under test: a real DuckDB file, seeded, and real ``armor-ab serve`` processes on loopback."""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from armor_ab import assets
from armor_ab.catalog.demo import demo_items
from armor_ab.catalog.items import CatalogItem
from armor_ab.experiments.loader import load_experiment_file
from armor_ab.store.catalog import import_items, write_photo
from armor_ab.store.content import images_dir_for
from armor_ab.store.db import connect
from armor_ab.store.experiments import set_status, upsert_experiment
from armor_ab.store.keys import create_key

ROOT = Path(__file__).resolve().parents[2]
DEMO_EXPERIMENT = assets.DEMO_EXPERIMENT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A running ``armor-ab serve`` process; restartable, killable."""

    db: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    log: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> Server:
        self.log = self.db.with_suffix(f".{self.port}.log")
        env = {**os.environ, **self.extra_env, "PYTHONUNBUFFERED": "1"}
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "armor_ab", "serve", "--db", str(self.db), "--port", str(self.port),
                 "--log-level", "warning", *self.extra_args],
                stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


@dataclass
class Platform:
    """A database with the demo experiment running, keys of every scope, and its server."""

    db: Path
    server: Server
    admin_key: str
    read_key: str
    client_key: str

    @property
    def url(self) -> str:
        return self.server.url

    def headers(self, scope: str = "client") -> dict[str, str]:
        return {"Authorization": f"Bearer {getattr(self, f'{scope}_key')}"}

    def client(self, scope: str = "client") -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers(scope), timeout=30.0)


@functools.cache
def _demo_items() -> tuple[tuple[CatalogItem, bytes | None], ...]:
    return tuple(demo_items())  # read once per test process: every seeded database imports it


def import_catalog(
    con, db: Path, items: list[tuple[CatalogItem, bytes | None]], file: str = "test-catalog",
) -> None:
    """Put ``items`` (with their photo bytes) in the database the way ``armor-ab catalog import`` does:
    photos into the image store beside ``db`` first, then the rows in one transaction."""
    for item, photo in items:
        if photo is not None:
            write_photo(images_dir_for(db), item.image, item.image_type, photo)
    import_items(con, [item for item, _ in items], file=file, file_sha256="0" * 64)


def seed_database(
    db: Path, experiment_file: Path = DEMO_EXPERIMENT, start: bool = True, started_days_ago: float = 0,
    items: list[str] | None = None,
) -> dict[str, str]:
    """The demo catalog (``items``: only these ids), the experiment (running unless ``start`` is false)
    and a key of every scope; returns the keys' secrets by scope."""
    con = connect(db)
    try:
        demo = [(item, photo) for item, photo in _demo_items() if items is None or item.id in items]
        import_catalog(con, db, demo, file="demo-catalog")
        spec = load_experiment_file(experiment_file)
        upsert_experiment(con, spec)
        if start:
            at = datetime.now(UTC) - timedelta(days=started_days_ago) if started_days_ago else None
            set_status(con, spec.key, "running", at=at)
        return {scope: create_key(con, scope, f"test-{scope}")[0] for scope in ("admin", "read", "client")}
    finally:
        con.close()


def wait_for_file(con, path: str, timeout: float = 20.0) -> bool:
    """A write job that holds the writer thread until ``path`` exists (runs in the database process)."""
    Path(path + ".running").touch()
    deadline = time.monotonic() + timeout
    while not Path(path).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return Path(path).exists()
