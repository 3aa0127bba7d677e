"""The floor plan of ../shared/DESIGN.md: every module imports only from its floor or below,
and none is longer than MAX_LINES."""

import ast
import pathlib

import implicit_inverse

FLOORS = {
    "estimators": 5, "cli": 5, "plotting": 5,
    "training": 4, "baselines": 4,
    "equilibrium": 3, "networks": 3,
    "operators": 2,
    "data": 1, "datasets": 1, "metrics": 1, "_validation": 1, "_runtime": 1,
    "_image_regressor": 1,
}
ROOT = pathlib.Path(implicit_inverse.__file__).parent


def _relative_imports(path):
    """``(top-level package or module imported, line)`` of each relative import in ``path``."""
    parts = path.relative_to(ROOT).parts[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(parts[:len(parts) - (node.level - 1)])
            target = base + (node.module.split(".") if node.module else [])
            names = [alias.name for alias in node.names]
            yield (target[0] if target else names[0]), node.lineno


def test_every_module_has_a_floor():
    tops = {path.relative_to(ROOT).parts[0].removesuffix(".py") for path in ROOT.rglob("*.py")}
    assert tops - {"__init__"} <= set(FLOORS), sorted(tops - set(FLOORS) - {"__init__"})


def test_no_module_imports_from_a_higher_floor():
    upward = []
    for path in ROOT.rglob("*.py"):
        own = path.relative_to(ROOT).parts[0].removesuffix(".py")
        if own == "__init__":
            continue
        for target, line in _relative_imports(path):
            target = target.removesuffix(".py")
            if FLOORS.get(target, 0) > FLOORS[own]:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not upward, upward


MAX_LINES = 450
"""Longest module of the package (one job per module)."""


def test_no_module_is_longer_than_the_limit():
    long = {str(path.relative_to(ROOT)): count for path in ROOT.rglob("*.py")
            if (count := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, long
