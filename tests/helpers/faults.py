"""The fault tests' isolated apps (tests/faults/conftest.py, tests/faults/test_concurrency.py): a fresh one, and its namespace gone."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

from pipeline import kube
from tests.e2e.support import KUBECONFIG, E2eApp


def new_app(prefix: str) -> E2eApp:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    directory = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    return E2eApp(name=name, directory=directory, worker_log=directory / "pipeline-worker.log")


def delete_namespace(name: str) -> None:
    with kube.connect(kubeconfig=str(KUBECONFIG)) as kc:
        kube.delete_object(kc, api_version="v1", kind="Namespace", name=name)
