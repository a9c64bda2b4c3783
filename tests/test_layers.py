"""The product's boundaries (README "Architecture"), checked on the source: who may import what."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.unit

PRODUCT = REPO_ROOT / "pipeline"


def imports_of(path: Path, *, top_level: bool = False) -> set[str]:
    """Every module name a file imports: at any depth (lazy imports inside functions too), or only at its top level."""
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    for node in tree.body if top_level else ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def importers(prefix: str) -> list[str]:
    return sorted(
        str(p.relative_to(REPO_ROOT))
        for p in PRODUCT.rglob("*.py")
        if any(m == prefix or m.startswith(prefix + ".") for m in imports_of(p))
    )


def test_the_product_never_imports_the_local_stack() -> None:
    assert importers("bootstrap") == []
    assert importers("tests") == [] and importers("sample_worker") == []


def test_only_the_kube_layer_imports_the_kubernetes_client() -> None:
    assert all(p.startswith("pipeline/kube/") for p in importers("kubernetes")), importers("kubernetes")


def test_only_the_azure_layer_imports_the_azure_sdks() -> None:
    assert all(p.startswith("pipeline/azure/") for p in importers("azure")), importers("azure")


def test_the_cli_reaches_the_workflow_by_its_contract_only() -> None:
    """The CLI side never loads the workflow or the activities (and with them every client library) to start;
    `pipeline worker` and `pipeline bootstrap` import the worker inside their own command."""
    for module in ("cli.py", "commands.py", "deployments.py"):
        imported = imports_of(PRODUCT / module, top_level=True)
        assert not imported & {"pipeline.workflows", "pipeline.activities", "pipeline.worker"}, (module, imported)


def test_the_errors_are_defined_in_one_module() -> None:
    defining = sorted(
        str(p.relative_to(REPO_ROOT))
        for p in PRODUCT.rglob("*.py")
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.ClassDef)
        and any(isinstance(b, ast.Name) and b.id.endswith(("Error", "Failed")) for b in node.bases)
    )
    assert set(defining) == {"pipeline/errors.py"}, defining
