"""The layout shows the architecture: no import cycles, and no module importing upward.

Layers, bottom to top: the shared helpers (errors, _util, _io, _progress, trust, settings);
inputs / checks / judge / runtime / converters; diagnose; pipelines and model_zoo; cli and
demo. Lazy (function-level) imports count too: a cycle hidden in a function is still a cycle.
"""

from __future__ import annotations

import ast
import collections
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
LAYER = {
    "inputs": 1, "checks": 1, "judge": 1, "runtime": 1, "converters": 1,
    "diagnose": 2, "engines": 2, "settings": 2,  # settings resolve into the stages' objects (policy, isolation, ...)
    "pipelines": 3, "model_zoo": 3, "cli": 4, "demo": 4, "demo_keras": 4, "demo_torch": 4, "__main__": 5,
}


def _imports() -> dict[str, set[str]]:
    mods = {}
    for p in (SRC / "onnxgate").rglob("*.py"):
        name = ".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        mods[name] = p
    edges: dict[str, set[str]] = collections.defaultdict(set)
    for m, p in mods.items():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("onnxgate"):
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            edges[m] |= {n for n in names if n in mods and n != m}
    return edges


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    seen, on, stack, found = set(), set(), [], []

    def visit(u: str) -> None:
        seen.add(u)
        on.add(u)
        stack.append(u)
        for v in sorted(graph.get(u, ())):
            if v in on:
                found.append(stack[stack.index(v):] + [v])
            elif v not in seen:
                visit(v)
        stack.pop()
        on.discard(u)

    for u in sorted(graph):
        if u not in seen:
            visit(u)
    return found


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYER.get(parts[1], 0) if len(parts) > 1 else 0


def test_no_import_cycles():
    assert _cycles(_imports()) == []


def test_no_module_imports_upward():
    upward = [
        f"{m} -> {n}" for m, targets in _imports().items() for n in targets
        if _layer(n) > _layer(m) and m != "onnxgate"  # the package's lazy API table names everything
    ]
    assert upward == [], "\n".join(upward)
