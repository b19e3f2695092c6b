"""The layer order of ``armor_ab/_layers.py`` holds for every import, and the check catches what it must."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from armor_ab import _layers


def test_the_package_respects_its_layers() -> None:
    violations, graph = _layers.check()
    assert violations == [], "\n".join(map(str, violations))
    assert _layers.cycles(graph) == []
    # the chains the architecture names are there, each pointing down
    for importer, imported in [("engine", "model"), ("content", "engine"), ("store", "experiments"),
                               ("reporting", "store"), ("reporting", "stats"), ("services", "store"),
                               ("api", "services"), ("web", "api"), ("dashboards", "api")]:
        assert imported in graph.get(importer, set()), (importer, imported)


def test_every_package_has_a_layer() -> None:
    units = {p.name.removesuffix(".py") for p in _layers.ROOT.iterdir()
             if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.name != "__init__.py")}
    assert units <= set(_layers.LAYER_OF), units - set(_layers.LAYER_OF)


def test_the_command_line_check_passes_and_draws_the_graph() -> None:
    done = subprocess.run([sys.executable, "-m", "armor_ab._layers"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    drawn = subprocess.run([sys.executable, "-m", "armor_ab._layers", "--mermaid"], capture_output=True, text=True)
    assert drawn.stdout.startswith("flowchart TD") and "api --> services" in drawn.stdout


def _tree(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "armor_ab"
    for name, text in files.items():
        path = pkg / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for directory in [pkg, *[p for p in pkg.rglob("*") if p.is_dir()]]:
        (directory / "__init__.py").touch()
    return pkg


def test_the_check_catches_upward_lazy_type_checking_relative_and_same_layer_imports(tmp_path) -> None:
    pkg = _tree(tmp_path, {
        "stats/maths.py": "from armor_ab.store.db import connect\n",  # upward, top level
        "store/db.py": "def f():\n    from armor_ab.api import app\n",  # upward, lazy
        "model/net.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from armor_ab.engine import x\n",
        "roi/money.py": "from ..stats import maths\n",  # same layer, relative
        "catalog/items.py": "from armor_ab import model\n",  # same layer, ``from armor_ab import``
        "web/site.py": "from armor_ab.api.deps import State\nfrom armor_ab.api.app import create_app\n",
        "engine/ok.py": "from armor_ab.model.net import y\nfrom . import other\n",  # allowed
        "newpkg/mod.py": "x = 1\n",  # no layer
        "roi/pure.py": "from armor_ab.config import env_settings\n",  # downward, but roi is pure
    })
    violations, graph = _layers.check(pkg)
    found = {(v.importer, v.imported) for v in violations}
    assert ("stats", "armor_ab.store.db") in found
    assert ("store", "armor_ab.api") in found
    assert ("model", "armor_ab.engine") in found
    assert ("roi", "armor_ab.stats") in found
    assert ("catalog", "armor_ab.model") in found
    assert ("web", "armor_ab.api.deps") in found and ("web", "armor_ab.api.app") not in found
    assert ("newpkg", "-") in found
    assert ("roi", "armor_ab.config") in found
    assert not any(v.importer == "engine" for v in violations)
    assert [v.line for v in violations if v.importer == "store"] == [2]


def test_cycles_are_found_even_where_the_table_would_allow_them() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _layers.cycles(graph) == [["a", "b", "c"]]
    assert _layers.cycles({"a": {"b"}, "b": set()}) == []


def test_the_architecture_doc_places_every_package_the_check_knows() -> None:
    """docs/architecture.md and _layers.py agree: every package in the table, at its layer."""
    import re

    doc = (Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| (\d+) \|", doc, re.M))
    expected = {unit: str(level) for unit, level in _layers.LAYER_OF.items() if not unit.startswith("_")}
    assert rows == expected
