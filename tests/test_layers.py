"""Imports point down the layers: orchestration, then agent_runtime, then tools, with lib/ beneath all three (and
access/, the API's tokens, beneath orchestration)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Each package, and the packages of this project it must never import.
FORBIDDEN = {
    "lib": {"orchestration", "agent_runtime", "tools", "shop", "memory", "faults", "access"},
    # Who may call the API: beneath orchestration, which declares the scope of every endpoint.
    "access": {"orchestration", "agent_runtime", "tools", "memory", "shop"},
    "tools": {"orchestration", "agent_runtime", "memory"},
    "agent_runtime": {"orchestration"},
    "memory": {"orchestration", "agent_runtime", "tools"},
}


def _imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(package: str) -> None:
    upward = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts
        for name in sorted(_imported(path) & FORBIDDEN[package])
    ]
    assert upward == []


def test_the_policy_touches_no_database_and_no_clock() -> None:
    """Deciding is pure: the policy imports no ORM, no transaction, no settings, no time of its own."""
    impure = {"django.db", "django.conf", "django.utils.timezone", "time", "orchestration.services"}
    found = []
    for path in sorted((ROOT / "orchestration" / "policy").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            modules = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            found += [
                f"{path.name} imports {m}" for m in modules if any(m == i or m.startswith(i + ".") for i in impure)
            ]
    assert found == []
