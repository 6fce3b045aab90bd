"""The ``src/cifake`` modules a stage script runs: its imports, followed transitively through the package."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "cifake"


def _imports(path: Path) -> set[str]:
    """``cifake.x`` modules imported anywhere in ``path`` (also inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "cifake":
            if node.module == "cifake":  # from cifake import tracking
                found |= {f"cifake.{a.name}" for a in node.names}
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "cifake"}
    return found


def module_file(module: str) -> Path:
    return PACKAGE.joinpath(*module.split(".")[1:]).with_suffix(".py")


def package_files(script: Path) -> set[str]:
    """Paths (relative to the project root) of every package module ``script`` imports, transitively."""
    todo, seen = list(_imports(script)), set()
    while todo:
        module = todo.pop()
        if module in seen or not module_file(module).is_file():
            continue
        seen.add(module)
        todo += _imports(module_file(module))
    files = {module_file(m).relative_to(ROOT).as_posix() for m in seen}
    return files | {"src/cifake/__init__.py"} if files else files  # importing any module runs __init__
