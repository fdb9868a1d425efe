"""The packages' import graph: no cycles between modules, and no service importing another service."""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

from tests.support.source_parse import parse_source

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = {
    "atp_common": ROOT / "libs/common/atp_common",
    "atp_gateway": ROOT / "services/gateway/atp_gateway",
    "atp_router": ROOT / "services/router/atp_router",
    "atp_observer": ROOT / "services/observer/atp_observer",
    "atp_adapters": ROOT / "services/adapters/atp_adapters",
    "atp_tools": ROOT / "tools/atp_tools",
}


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts))
            found[name.removesuffix(".__init__")] = path
    return found


def _runtime_imports(tree: ast.Module) -> Iterator[str]:
    """Imports that run when the module loads (those under `if TYPE_CHECKING:` do not)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


# Both tests read the same parse of every module: the tree does not change within a run.
@functools.cache
def _graph() -> dict[str, frozenset[str]]:
    modules = _modules()
    graph: dict[str, frozenset[str]] = {}
    for name, path in modules.items():
        tree = parse_source(path.read_text(), str(path))
        graph[name] = frozenset(t for t in _runtime_imports(tree) if t in modules and t != name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_no_module_imports_itself_through_others() -> None:
    # A package importing its own submodules from __init__ is how a package exposes its surface, not a
    # cycle between peers: drop the package's own __init__ edges into its children.
    graph = {name: {t for t in targets if not t.startswith(name + ".")} for name, targets in _graph().items()}
    assert _cycles(graph) == []


def test_services_import_only_the_common_library() -> None:
    services = [p for p in PACKAGES if p != "atp_common"]
    crossings = sorted(
        (name, target)
        for name, targets in _graph().items()
        for target in targets
        if name.split(".")[0] in services and target.split(".")[0] not in ("atp_common", name.split(".")[0])
    )
    assert crossings == []
