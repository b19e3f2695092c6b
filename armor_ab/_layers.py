"""The package's layers, stated once, and the check that every import respects them.

    python -m armor_ab._layers            # exit 1 and list every import against the order, and any cycle
    python -m armor_ab._layers --mermaid  # the package graph as a Mermaid flowchart (docs/architecture.md)

Every package (and top-level module) of ``armor_ab`` has a layer below. A module may import its own
package and any package of a LOWER layer; never one of its own layer or above. That order makes a
cycle between packages impossible, and the check reports cycles on their own as well, so a wrong
table cannot hide one. Every import counts: top-level, lazy (inside a function) and
``TYPE_CHECKING`` ones, since each is a dependency a reader and a refactor must respect.

``tests/test_layers.py`` runs the check in ``make test``.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "armor_ab"
ROOT = Path(__file__).resolve().parent

# Lowest first. The chains the layers follow: model -> engine -> guardrails -> content; experiments -> store ->
# reporting -> services -> api -> web and dashboards; the dev tools and the CLI on top.
LAYERS: tuple[tuple[str, ...], ...] = (
    # 0. foundations: settings, logging, shipped files, the event log's one declaration, bot detection
    ("config", "logs", "assets", "event_schema", "bots"),
    # 1. pure domain code: statistics (maths and SQL text), money (ROI), the catalog, the model
    ("stats", "roi", "catalog", "model"),
    # 2. the event wire model, experiments as code (their ROI assumptions come from roi), the inference engine
    ("events", "experiments", "engine"),
    # 3. the event log and its database (store); WoHG fine-tuning (training)
    ("store", "training"),
    # 4. guardrails: the checks every generated page passes (they ask the model and its judge about pictures)
    ("guardrails",),
    # 5. generated content: prompts, generation through an engine, its checks, control copy, on-demand generation
    ("content",),
    # 6. the experiment report: reads the store, runs the statistics and the ROI, gives the verdict
    ("reporting",),
    # 7. the service layer under every door: auth, assignment, ingest, serving, review, live state, health
    ("services",),
    # 8. the HTTP API
    ("api",),
    # 9. what sits on the API: the browser side (snippet, example site) and the Streamlit dashboards
    ("web", "dashboards"),
    # 10. dev tools (``devtools``): the one-command demo, the traffic simulator
    ("devtools",),
    # 11. the command line (``armor-ab``; ``armor-ab simulate`` runs the simulator)
    ("cli",),
    # 12. ``python -m armor_ab``, and this check
    ("__main__", "_layers"),
)

# Imports allowed across layers only through one module: web mounts itself on the API app and
# uses nothing else of the API.
ONLY_THROUGH: dict[tuple[str, str], frozenset[str]] = {
    ("web", "api"): frozenset({"armor_ab.api.app"}),
}

# Pure packages import nothing else of armor_ab, not even the foundations: statistics is maths and SQL text,
# ROI is money maths; both are read and tested on their own.
PURE: frozenset[str] = frozenset({"stats", "roi"})

LAYER_OF: dict[str, int] = {unit: level for level, units in enumerate(LAYERS) for unit in units}


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    importer: str  # the importing package
    imported: str  # the imported module (dotted)
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} imports {self.imported}: {self.reason}"


def unit_of(module: str) -> str | None:
    """The package (or top-level module) a dotted ``armor_ab...`` name belongs to; None outside armor_ab."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    return parts[1] if len(parts) > 1 else ""


def module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = [PACKAGE, *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in a file, wherever it sits; relative ones resolved."""
    module = module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # ``from armor_ab import assets`` imports the unit ``assets``: name each imported name.
            if target == PACKAGE or (node.module is None and node.level):
                out += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
            else:
                out.append((node.lineno, target))
    return out


def check(root: Path = ROOT) -> tuple[list[Violation], dict[str, set[str]]]:
    """Every import against the layer order, and the package graph (importer -> imported units)."""
    violations: list[Violation] = []
    graph: dict[str, set[str]] = defaultdict(set)
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        importer = rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 or rel.name != "__init__.py" else ""
        if importer == "":
            continue  # armor_ab/__init__.py
        where = str(Path(PACKAGE) / rel)
        if importer not in LAYER_OF:
            violations.append(Violation(where, 1, importer, "-", "this package has no layer in armor_ab/_layers.py"))
            continue
        for line, target in imports_of(path, root):
            unit = unit_of(target)
            if unit is None or unit == importer:
                continue
            graph[importer].add(unit)
            if unit not in LAYER_OF:
                violations.append(Violation(where, line, importer, target, f"{unit!r} has no layer"))
                continue
            only = ONLY_THROUGH.get((importer, unit))
            if importer in PURE:
                violations.append(Violation(where, line, importer, target,
                                            f"{importer} is pure: it imports nothing else of {PACKAGE}"))
            elif only is not None and not any(target == m or target.startswith(m + ".") for m in only):
                violations.append(Violation(where, line, importer, target,
                                            f"{importer} may import {unit} only through {', '.join(sorted(only))}"))
            elif LAYER_OF[unit] == LAYER_OF[importer]:
                violations.append(Violation(where, line, importer, target,
                                            f"same layer ({LAYER_OF[unit]}): {importer} and {unit} must not import each other"))
            elif LAYER_OF[unit] > LAYER_OF[importer]:
                violations.append(Violation(where, line, importer, target,
                                            f"upward: {unit} is layer {LAYER_OF[unit]}, {importer} layer {LAYER_OF[importer]}"))
    return violations, dict(graph)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one package (Tarjan): each one is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(set(graph) | {w for ws in graph.values() for w in ws}):
        if v not in index:
            visit(v)
    return found


def mermaid(graph: dict[str, set[str]]) -> str:
    """The package graph, one subgraph per layer, highest layer first."""
    lines = ["flowchart TD"]
    for level in range(len(LAYERS) - 1, -1, -1):
        lines.append(f'  subgraph L{level}["layer {level}"]')
        lines += [f"    {unit.strip('_') or 'root'}" for unit in LAYERS[level]]
        lines.append("  end")
    for importer in sorted(graph):
        for unit in sorted(graph[importer]):
            lines.append(f"  {importer.strip('_')} --> {unit.strip('_')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m armor_ab._layers", description=__doc__.splitlines()[0])
    parser.add_argument("--mermaid", action="store_true", help="print the package graph as Mermaid")
    args = parser.parse_args(argv)
    violations, graph = check()
    if args.mermaid:
        print(mermaid(graph))
        return 0
    found = cycles(graph)
    for v in violations:
        print(v, file=sys.stderr)
    for c in found:
        print(f"cycle between packages: {' <-> '.join(c)}", file=sys.stderr)
    if violations or found:
        return 1
    print(f"layers: {sum(len(g) for g in graph.values())} package dependencies, all downward, no cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
