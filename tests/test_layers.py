"""Imports run downward only, and no module imports itself back through others.

Every import in the package counts, at module level or inside a function: a lazy import of
a higher layer is still a dependency on it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "assay"  # the package, read as source

# top to bottom; a module may import its own layer and any layer below it
LAYERS = ("cli", "report|export|serve|interop", "runner", "studies", "study", "methods", "training", "models",
          "agents", "world", "agenda", "errors")
RANK = {name: len(LAYERS) - i for i, layer in enumerate(LAYERS) for name in layer.split("|")}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str) -> set[str]:
    """The assay modules that ``path`` imports, resolved to module names."""
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("assay.")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            if base.startswith("assay."):
                found.add(base)
                found |= {f"{base}.{a.name}" for a in node.names}
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module(p): p for p in ROOT.rglob("*.py")}
    return {m: {i for i in _imports(p, m) if i in files and i != m} for m, p in files.items()}


def _layer(module: str) -> str:
    return module.split(".")[1]


def test_no_module_imports_a_higher_layer():
    graph = _graph()
    assert len(graph) > 50  # the walk found the package
    upward = sorted(f"{m} imports {i}" for m, deps in graph.items() for i in deps
                    if RANK[_layer(i)] > RANK[_layer(m)])
    assert not upward, "imports that point up a layer:\n" + "\n".join(upward)


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(path[path.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    # a package importing its own submodules from __init__ is not a cycle unless one of
    # them imports the package back
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_check_sees_an_upward_import(tmp_path):
    """The walk resolves relative and lazy imports, so a hidden upward import is caught."""
    fake = tmp_path / "assay" / "models" / "sneaky.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("def f():\n    from ..runner import plan\n    import assay.study.rules\n")
    found = _imports(fake, "assay.models.sneaky")
    assert {"assay.runner", "assay.runner.plan", "assay.study.rules"} <= found
    assert all(RANK[_layer(i)] > RANK["models"] for i in found)
