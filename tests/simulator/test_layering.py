"""The simulator and the product never import each other (the simulator never ships)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def imported_roots(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (REPO_ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        roots = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                roots.add(node.module.split(".")[0])
        found[str(path.relative_to(REPO_ROOT))] = roots
    return found


def test_production_code_never_imports_the_simulator() -> None:
    offenders = [path for path, roots in imported_roots("reconciler").items() if "cloudsim" in roots]
    assert offenders == []


def test_the_simulator_models_azure_without_the_product() -> None:
    offenders = [path for path, roots in imported_roots("cloudsim").items() if "reconciler" in roots]
    assert offenders == []
