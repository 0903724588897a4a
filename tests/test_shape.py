"""The code keeps its shape: no production file over 500 lines, most functions short.

Issue 22's targets. "Production" is the nine layered packages of tests/test_layers.py
(everything but tests/, bench/ and testkit/); a function's length is its lines from
``def`` (decorators excluded) to its last line, nested functions counted on their own
too; the percentile is testkit's nearest-rank one, the same as every bench figure.
"""

from __future__ import annotations

import ast
from pathlib import Path

from testkit.stats import percentile
from tests.test_layers import PRODUCTION, ROOT

MAX_FILE_LINES = 500
MAX_FUNCTION_P90 = 25


def production_files() -> list[Path]:
    """Every Python file of the production packages."""
    return sorted(path for package in PRODUCTION for path in (ROOT / package).rglob("*.py"))


def function_lengths(path: Path) -> dict[str, int]:
    """``name:line`` -> length in lines of each function and method defined in ``path``."""
    lengths = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            lengths[f"{node.name}:{node.lineno}"] = node.end_lineno - node.lineno + 1
    return lengths


def test_no_production_file_is_over_500_lines() -> None:
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in production_files()}
    assert {name: n for name, n in sizes.items() if n > MAX_FILE_LINES} == {}


def test_function_length_p90_is_at_most_25_lines() -> None:
    lengths = [n for path in production_files() for n in function_lengths(path).values()]
    assert len(lengths) > 500  # the walk found the code
    assert percentile(lengths, 90) <= MAX_FUNCTION_P90


def test_function_lengths_count_def_to_last_line(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("@staticmethod\ndef f():\n    def g():\n        pass\n    return g\n\n\nasync def h(): ...\n")
    assert function_lengths(module) == {"f:2": 4, "g:3": 2, "h:8": 1}
