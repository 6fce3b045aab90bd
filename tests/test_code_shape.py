"""The package stays readable: no module over 300 lines, no function over 60."""

import ast

import pytest

from .stage_deps import PACKAGE, ROOT

pytestmark = pytest.mark.code

FILES = sorted(PACKAGE.glob("*.py")) + sorted((ROOT / "stages").glob("*.py"))


def long_functions(source: str, limit: int = 60) -> list[tuple[str, int]]:
    """(name, lines) of every function or method longer than ``limit`` lines."""
    nodes = (n for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
    return [(n.name, n.end_lineno - n.lineno + 1) for n in nodes if n.end_lineno - n.lineno + 1 > limit]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_short_modules_and_functions(path):
    source = path.read_text(encoding="utf-8")
    assert len(source.splitlines()) <= 300
    assert long_functions(source) == []


def test_the_check_sees_a_long_function():
    body = "\n".join(f"    x{i} = {i}" for i in range(61))
    assert long_functions(f"def f():\n{body}\n") == [("f", 62)]
