"""The one error tree (pipeline/errors.py): each class says once whether it is retryable, and the workflow follows."""

from __future__ import annotations

import inspect

import pytest
from temporalio.exceptions import ApplicationError

from pipeline import errors
from pipeline.activities import _application_error
from pipeline.workflows import NON_RETRYABLE, RETRY

pytestmark = pytest.mark.unit

CLASSES = [c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__]
RETRYABLE = {"RegistryError", "KubeUnavailable", "KubeExpired", "AzureThrottled", "AzureUnavailable", "VersioningError"}


def test_every_error_is_in_the_one_tree_and_named_in_its_docstring() -> None:
    assert all(issubclass(c, errors.PipelineError) for c in CLASSES)
    for c in CLASSES:
        assert f" {c.__name__} " in errors.__doc__ or c is errors.PipelineError, f"{c.__name__} is missing from the tree"


def test_the_workflow_retries_exactly_what_the_classes_call_retryable() -> None:
    names = {c.__name__ for c in CLASSES if c is not errors.PipelineError}
    assert {c.__name__ for c in CLASSES if c.retryable} == RETRYABLE
    assert set(NON_RETRYABLE) == names - RETRYABLE
    assert list(RETRY.non_retryable_error_types or []) == NON_RETRYABLE


@pytest.mark.parametrize(
    "kind", [c for c in CLASSES if c not in (errors.PipelineError, errors.ConfigError)], ids=lambda c: c.__name__
)
def test_an_activity_raises_each_as_an_application_error_of_its_name(kind: type[errors.PipelineError]) -> None:
    if issubclass(kind, errors.RolloutFailed):
        error = kind("CrashLoopBackOff", "pod x: CrashLoopBackOff")
    else:
        error = kind("what failed")
    translated = _application_error(error)
    assert isinstance(translated, ApplicationError) and translated.type == kind.__name__
    assert translated.non_retryable is (kind.__name__ in NON_RETRYABLE)


def test_the_layers_re_export_the_same_classes() -> None:
    from pipeline import kube
    from pipeline.azure import errors as azure_errors

    assert kube.KubeForbidden is errors.KubeForbidden and azure_errors.AcrRunFailed is errors.AcrRunFailed
    assert (
        kube.errors.error_for_status(403) is errors.KubeForbidden and kube.errors.error_for_status(503) is errors.KubeUnavailable
    )
