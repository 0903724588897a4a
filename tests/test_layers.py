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


def test_the_checker_sees_lazy_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from flowbot.cli import main\n    import control.api\n")
    assert imported_packages(module) == {"flowbot", "control"}
