"""The import floors of docs/ARCHITECTURE.md, checked on the source: models/ imports neither
pipeline/ nor serving/, and pipeline/ never imports serving/ at module level (the `dcgan` command
adds serving's commands from entry points; the balancing experiment imports the client when it
runs)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def module_level_imports(path: Path) -> set[str]:
    """Top-level package names imported outside functions (what importing the module runs)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name.split(".")[0] for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.add(child.module.split(".")[0])
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                continue
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"


@pytest.mark.parametrize(
    "package,forbidden",
    [("models", {"pipeline", "serving"}), ("pipeline", {"serving"})],
)
def test_no_module_imports_a_floor_above_its_own(package: str, forbidden: set[str]) -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(module_level_imports(path) & forbidden)
        for path in sorted((REPO / package).rglob("*.py"))
        if module_level_imports(path) & forbidden
    }
    assert offenders == {}


def test_the_dcgan_command_still_has_the_serving_commands() -> None:
    from pipeline.cli import app

    names = {command.name for command in app.registered_commands}
    groups = {group.name for group in app.registered_groups}
    assert {"serve", "generate", "balance"} <= names and "torchserve" in groups
