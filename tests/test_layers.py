"""The package graph stays layered: each package imports only the layers below it.

docs/architecture.md draws the same picture; this test is what keeps it true
(imports inside functions count too: a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Package -> the packages it may import. Bottom first.
ALLOWED: dict[str, set[str]] = {
    "contracts": set(),
    "localdb": set(),
    "artefacts": {"contracts"},
    "streams": {"contracts", "localdb"},
    "stores": {"contracts", "localdb"},
    "processor": {"contracts", "artefacts", "streams", "stores"},
    # The session state machine (control.sessions) is the one rule for marking a session live;
    # the producer task uses it, control never imports producer.
    "control": {"contracts", "artefacts", "stores"},
    "producer": {"contracts", "artefacts", "streams", "stores", "control"},
    "flowbot": {"contracts", "localdb", "artefacts", "streams", "stores", "processor", "control", "producer"},
}
PRODUCTION = set(ALLOWED)
#: Test and bench tooling sits above every production package (none of which may import it):
#: tests and bench share testkit and never import each other.
TOOLING: dict[str, set[str]] = {"testkit": set(), "tests": {"testkit"}, "bench": {"testkit"}}


def imported_packages(path: Path) -> set[str]:
    """Top-level first-party packages ``path`` imports (anywhere in the file)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found.update(name.split(".")[0] for name in names)
    return found & (PRODUCTION | set(TOOLING))


def test_every_package_imports_only_the_layers_below_it() -> None:
    wrong = []
    for package, allowed in ALLOWED.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for target in imported_packages(path) - allowed - {package}:
                wrong.append(f"{path.relative_to(ROOT)} imports {target}")
    assert wrong == []


def test_tests_and_bench_share_testkit_and_never_import_each_other() -> None:
    wrong = []
    for package, allowed in TOOLING.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for target in imported_packages(path) - PRODUCTION - allowed - {package}:
                wrong.append(f"{path.relative_to(ROOT)} imports {target}")
    assert wrong == []


def test_the_checker_sees_tooling_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from testkit.speech import say\nimport bench.captions\nfrom tests.conftest import x\n")
    assert imported_packages(module) == {"testkit", "bench", "tests"}


def module_graph(packages: list[str]) -> dict[str, set[str]]:
    """First-party module -> the first-party modules it imports (lazy imports included).

    ``from package import name`` depends on the submodule ``package.name`` when there is
    one, else on the package itself.
    """
    paths = {}
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            paths[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                deps.update(
                    f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in paths else node.module
                    for alias in node.names
                )
        graph[name] = (deps & set(paths)) - {name}
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Groups of modules that import each other, directly or round a circle (Tarjan's SCCs)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = [stack.pop()]
            while group[-1] != v:
                group.append(stack.pop())
            if len(group) > 1:
                circles.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return circles


def test_no_two_modules_import_each_other() -> None:
    assert import_circles(module_graph(list(ALLOWED))) == []


def test_the_circle_finder_sees_a_circle_through_a_lazy_import() -> None:
    graph = {"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}, "a.w": {"a.x"}}
    assert import_circles(graph) == [["a.x", "a.y", "a.z"]]


def test_the_checker_sees_lazy_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from flowbot.cli import main\n    import control.api\n")
    assert imported_packages(module) == {"flowbot", "control"}
