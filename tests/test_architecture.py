"""The package's shape: rooms along the data flow, no import cycles, a thin CLI, small modules.

Every ``import`` counts, wherever it is (module level, inside a function, under
``TYPE_CHECKING``): a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "gcn_rag"
#: The rooms in data-flow order; a module imports only from its own room or upstream ones.
ROOMS = (
    "core",
    "corpus",
    "search",
    "guardrails",
    "answer",
    "model",
    "serving",
    "ops",
    "console",
    "cli",
)
#: Top-level modules that belong to a room (registered models pickle gcn_rag.pyfunc by name).
PLACED = {"gcn_rag.pyfunc": "model", "gcn_rag.__main__": "cli"}
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imported(module: str, path: Path) -> set[str]:
    """The package's modules that ``module`` imports (``from pkg import mod`` names mod)."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            relative = "." * node.level + (node.module or "")
            base = importlib.util.resolve_name(relative, package) if node.level else relative
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name in MODULES and name not in {module, "gcn_rag"}}


GRAPH = {module: _imported(module, path) for module, path in MODULES.items()}


def room(module: str) -> str:
    if module in PLACED:
        return PLACED[module]
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ROOMS) else "core"


def _cycle() -> list[str] | None:
    """One import cycle, as the modules along it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)) is not None:
                return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(GRAPH):
        if module not in state and (found := visit(module)) is not None:
            return found
    return None


def test_the_walker_sees_imports_of_every_kind() -> None:
    assert "gcn_rag.answer.extraction" in GRAPH["gcn_rag.answer.assistant"]  # module level
    assert "gcn_rag.search.embedding" in GRAPH["gcn_rag.answer.assistant"]  # inside a function
    assert "gcn_rag.model.registry" in GRAPH["gcn_rag.serving.manager"]  # TYPE_CHECKING
    assert room("gcn_rag.settings") == "core" and room("gcn_rag.cli") == "cli"
    assert room("gcn_rag.answer.generators.local") == "answer"


def test_no_import_cycles() -> None:
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_rooms_import_only_from_upstream_or_beside() -> None:
    wrong = [
        f"{module} ({room(module)}) imports {target} ({room(target)})"
        for module, targets in sorted(GRAPH.items())
        for target in sorted(targets)
        if ROOMS.index(room(target)) > ROOMS.index(room(module))
    ]
    assert wrong == []


def test_the_cli_is_thin_and_nothing_imports_it() -> None:
    lines = {module: len(path.read_text().splitlines()) for module, path in MODULES.items()}
    cli = sum(n for module, n in lines.items() if room(module) == "cli")
    assert cli <= 0.12 * sum(lines.values()), f"the CLI is {cli / sum(lines.values()):.1%}"
    users = [m for m, ts in GRAPH.items() if room(m) != "cli" and {room(t) for t in ts} & {"cli"}]
    assert users == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_and_functions_stay_small(module: str) -> None:
    source = MODULES[module].read_text()
    assert len(source.splitlines()) <= MAX_MODULE_LINES
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []
