"""Shared fixtures: a real DuckDB file and a real API server process on loopback.

The helpers themselves live in ``tests.helpers.platform``; they are re-exported here for the modules that
still import them from ``tests.conftest``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.platform import (  # noqa: F401 - re-exported
    DEMO_EXPERIMENT,
    ROOT,
    Platform,
    Server,
    free_port,
    seed_database,
    wait_for_file,
)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "armor_ab.duckdb"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    db = tmp_path_factory.mktemp("platform") / "armor_ab.duckdb"
    keys = seed_database(db)
    server = Server(db, extra_env={"ARMOR_AB_CORS_ORIGINS": "https://shop.example.com"}).start()
    try:
        yield Platform(db, server, keys["admin"], keys["read"], keys["client"])
    finally:
        server.stop()
