"""The test suite's own layout: shared code lives in ``tests/helpers/`` (or in fixtures of ``tests/conftest.py``),
never in a test module.

* No module under ``tests/`` imports a test module: ``import tests.test_x``, ``from tests.test_x import ...``,
  ``from tests import test_x``, ``from .test_x import ...``, ``from . import test_x``; nor does a script it
  hands to a child process (``"from tests.test_x import ..."`` in a string).
* Every ``test_*.py`` under ``tests/`` defines at least one test: a helper named like a test is a helper.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent


IN_STRINGS = re.compile(r"^\s*(?:from\s+(tests\.test_\w+)\s+import|import\s+(tests\.test_\w+))", re.MULTILINE)


def _is_test_module(dotted: str) -> bool:
    return dotted.rsplit(".", 1)[-1].startswith("test_")


def imported_test_modules(path: Path, package: str | None = None) -> set[str]:
    """The test modules ``path`` imports, as dotted names (``tests.test_x``), its string scripts included.

    ``package``: the module's package (``tests``, ``tests.helpers``), by default from its place under tests/.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    if package is None:
        package = ".".join(path.relative_to(TESTS.parent).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("tests.") and _is_test_module(a.name)}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            if module != "tests" and not module.startswith("tests."):
                continue
            if _is_test_module(module):
                found.add(module)
            else:  # ``from tests import test_x``: the names are modules
                found |= {f"{module}.{a.name}" for a in node.names if a.name.startswith("test_")}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found |= {a or b for a, b in IN_STRINGS.findall(node.value)}
    return found


def defines_a_test(path: Path) -> bool:
    tree = ast.parse(path.read_text(), filename=str(path))
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    for node in tree.body:
        if isinstance(node, functions) and node.name.startswith("test"):
            return True
        if isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            if any(isinstance(m, functions) and m.name.startswith("test") for m in node.body):
                return True
    return False


def test_the_checks_see_every_import_form(tmp_path: Path) -> None:
    # The checks themselves, on a module written for the purpose as if it were tests/helpers/probe.py.
    # (Built from pieces, so that this file's own strings hold no import of a test module.)
    pkg = "tests"
    probe = tmp_path / "probe.py"
    probe.write_text(
        f"import {pkg}.test_a\n"
        f"from {pkg}.test_b import x\n"
        f"from {pkg} import test_c, helpers\n"
        "from ..test_d import y\n"
        "from .. import test_e\n"
        f"from {pkg}.helpers.events import Events\n"
        f"import {pkg}.helpers\n"
        f"SCRIPT = '''\n    from {pkg}.test_f import rows\n'''\n"
        "class TestNothing:\n    def helper(self): ...\n"
        "def make_thing(): ...\n"
    )
    assert imported_test_modules(probe, "tests.helpers") == {f"tests.test_{c}" for c in "abcdef"}
    assert not defines_a_test(probe)
    assert defines_a_test(Path(__file__))


def test_no_module_imports_a_test_module() -> None:
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        name = path.relative_to(TESTS).as_posix()
        for module in sorted(imported_test_modules(path)):
            offenders.append(f"tests/{name} imports {module}")
    assert not offenders, (
        "shared test code belongs in tests/helpers/ (or a conftest fixture), not in a test module:\n  "
        + "\n  ".join(offenders)
    )


def test_every_test_module_defines_a_test() -> None:
    helpers = [
        f"tests/{path.relative_to(TESTS).as_posix()}"
        for path in sorted(TESTS.rglob("test_*.py"))
        if not defines_a_test(path)
    ]
    assert not helpers, (
        "modules named like tests that define none (move them to tests/helpers/): " + ", ".join(helpers)
    )
