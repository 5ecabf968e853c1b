"""The package's floors hold and no two modules import each other, late imports included (parsed, not run).

Floors, top to bottom (a module imports only its own floor or lower ones):
``cli -> gateway -> engine (training) | planning -> inference (prediction) -> model (package, heads)
-> losses / metrics / transforms -> data / networks / viz -> io / device -> config / progress -> registry -> errors``.
Imports under ``if TYPE_CHECKING:`` are for annotations only and are not counted.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "medseg"

#: floor of each top-level part of ``medseg`` (higher imports lower)
FLOORS: dict[str, int] = {
    "errors": 0,
    "_version": 0,
    "palette": 0,
    "registry": 1,
    "config": 2,
    "progress": 2,
    "io": 3,
    "device": 3,  # device choice and torchrun ranks: shared by prediction, training and the gateway
    "viz": 4,
    "networks": 4,
    "data": 4,
    "metrics": 5,
    "losses": 5,
    "transforms": 5,
    "model": 6,
    "inference": 7,
    "engine": 8,
    "planning": 8,  # medseg plan: fingerprint, rules, memory estimate (beside engine, neither imports the other)
    "gateway": 9,
    "api": 10,  # medseg.api: the public Python API
    "cli": 11,
    "__main__": 12,
    "": 12,  # medseg/__init__.py: the public API, lazy
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _resolve(name: str) -> str | None:
    """The medseg module an import names (``medseg.a.b`` may be a module, or a name inside ``medseg.a``)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> Iterator[tuple[str, int]]:
    """``(imported medseg module, line)`` for every import statement in ``module``, at any depth."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_lines(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            target = _resolve(name) if name.startswith("medseg") else None
            if target is not None and target != module:
                yield target, node.lineno


GRAPH = {m: sorted({t for t, _ in imports_of(m)}) for m in MODULES}


def floor(module: str) -> int:
    part = module.split(".")[1] if "." in module else ""
    return FLOORS[part]


def test_every_part_has_a_floor() -> None:
    assert {m.split(".")[1] if "." in m else "" for m in MODULES} <= set(FLOORS)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    up = [f"{t} (line {line})" for t, line in imports_of(module) if floor(t) > floor(module)]
    assert not up, f"{module} imports a higher floor: {', '.join(up)}"


def test_inference_never_imports_engine_and_model_neither() -> None:
    for module in MODULES:
        part = module.split(".")[1] if "." in module else ""
        if part in ("inference", "model"):
            bad = [t for t in GRAPH[module] if t.startswith(("medseg.engine", "medseg.cli")) or (part == "model" and t.startswith("medseg.inference"))]
            assert not bad, f"{module} imports {bad}"


def test_no_import_cycles() -> None:
    """Tarjan's strongly connected components of the import graph: every one must be a single module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
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
                cycles.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"
