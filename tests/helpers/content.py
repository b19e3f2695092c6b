"""Variant-content helpers shared by ``test_content`` and ``test_content_on_demand``."""

from __future__ import annotations

import json
from pathlib import Path

from armor_ab.assets import DEMO_CATALOG
from armor_ab.experiments.assignment import Assigner

EXP = "catalog-interleaved"


def small_catalog(directory: Path, ids: list[str]) -> Path:
    data = json.loads((DEMO_CATALOG / "catalog.json").read_text())
    data["products"] = [p for p in data["products"] if p["id"] in ids]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "catalog.json").write_text(json.dumps(data))
    return directory


def users_by_variant(spec) -> dict[str, str]:
    assigner = Assigner.from_experiment(spec)
    found: dict[str, str] = {}
    for i in range(1000):
        found.setdefault(assigner.assign(f"visitor-{i}").variant, f"visitor-{i}")
        if len(found) == 2:
            return found
    raise AssertionError("no split")
