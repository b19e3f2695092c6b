"""The engine's module layout: imports go one way (no cycles, lazy imports included), the model never imports
the engine, and nothing imports ``tensorrt`` until a TensorRT backend is asked for."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import armor_ab

PACKAGE = Path(armor_ab.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every ``armor_ab`` module a file imports, at the top or inside a function (relative imports resolved)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names)  # ``from . import x`` names a module
    return {m for m in found if m.startswith("armor_ab.")}


def _graph(subpackage: str) -> dict[str, set[str]]:
    files = sorted((PACKAGE / subpackage).rglob("*.py"))
    modules = {_module_name(f): f for f in files}
    # A module's own package __init__ is imported with it: only edges between modules count.
    return {m: {i for i in _imports(f) if i in modules and i != m} for m, f in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return [*stack[stack.index(n):], n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_engine_modules_import_one_way() -> None:
    graph = _graph("engine")
    assert {"armor_ab.engine.loader", "armor_ab.engine.backends.base", "armor_ab.engine.backends.onnxruntime",
            "armor_ab.engine.backends.tensorrt"} <= set(graph)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])
    base = graph["armor_ab.engine.backends.base"]
    assert not {m for m in base if m.startswith("armor_ab.engine.backends.")}  # the protocol imports no backend
    assert not any("loader" in m for b in ("onnxruntime", "tensorrt") for m in graph[f"armor_ab.engine.backends.{b}"])


def test_model_and_training_never_import_the_engine() -> None:
    for sub in ("model", "training"):
        for path in sorted((PACKAGE / sub).rglob("*.py")):
            bad = {m for m in _imports(path) if m.startswith("armor_ab.engine")}
            assert not bad, (path, bad)
    assert _cycle(_graph("model")) is None and _cycle(_graph("training")) is None


def test_tensorrt_is_not_imported_unless_asked() -> None:
    code = (
        "import sys\n"
        "import armor_ab.engine, armor_ab.engine.loader, armor_ab.engine.build, armor_ab.engine.gpu_check\n"
        "import armor_ab.engine.backends.onnxruntime, armor_ab.engine.backends.tensorrt, armor_ab.cli\n"
        "from armor_ab.engine.backends.tensorrt import tensorrt_missing_reason\n"
        "import torch\n"
        "if not torch.cuda.is_available():\n"
        "    assert tensorrt_missing_reason()\n"
        "assert 'tensorrt' not in sys.modules, 'tensorrt was imported'\n"
        "assert 'onnxruntime' not in sys.modules, 'onnxruntime was imported'\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_relative_recipe_paths_are_relative_to_the_recipe_file(tmp_path: Path) -> None:
    from armor_ab.assets import DEMO_MODEL, build_recipe
    from armor_ab.engine.build_recipe import load_recipe

    shipped = load_recipe(build_recipe("armor-demo"))
    assert shipped.model_source() == (str(DEMO_MODEL.resolve()), True)
    (tmp_path / "models" / "mine").mkdir(parents=True)
    (tmp_path / "models" / "mine" / "config.json").write_text("{}")
    (tmp_path / "recipes").mkdir()
    recipe = tmp_path / "recipes" / "r.yaml"
    recipe.write_text("name: r\nmodel: armor-tiny\nmodel_dir: ../models/mine\n")
    assert load_recipe(recipe).model_source() == (str((tmp_path / "models" / "mine").resolve()), True)
    recipe.write_text("name: r\nmodel: armor-tiny\nmodel_dir: ../models/absent\n")
    assert load_recipe(recipe).model_source() == ("armor-tiny", False)  # no trained directory: the named config
