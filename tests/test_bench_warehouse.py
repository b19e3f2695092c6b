"""benchmarks/bench_warehouse.py runs end to end at a tiny scale: a store generated, the lake exported, the report
on DuckDB over the lake and on chDB (its MergeTree copy and its view over file()), every figure the same.
Spark is left out here (its JVM alone takes longer than this test may); test_warehouse_engines covers it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_warehouse_benchmark_runs_at_a_tiny_scale(tmp_path: Path) -> None:
    pytest.importorskip("chdb")
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_warehouse.py"), "--visitors", "500", "--events", "5000",
         "--runs", "1", "--engines", "duckdb,chdb,chdb-file", "--lake", str(tmp_path / "lake")],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert "exported 5,000 rows" in text
    assert "all engines agree within 1e-9: True" in text, text
    for label in ("DuckDB, lake", "chDB, MergeTree copy", "chDB, view over file()"):
        assert label in text
    assert (tmp_path / "lake" / "manifest.json").exists()
