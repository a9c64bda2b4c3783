"""The sample's workflows as a versioned worker registers them: each declaring its versioning behaviour.

With worker versioning (Temporal Worker Deployments) the server routes a
workflow's tasks by its behaviour: a PINNED workflow runs every task on the
Worker Deployment Version it started on until it closes; an AUTO_UPGRADE one
moves to the deployment's current version at its next task. The behaviour
comes from the worker with each completed workflow task, and the server
refuses it from an unversioned worker ("versioning behavior cannot be
specified without deployment options being set with versioned mode"), so the
declarations live here, on subclasses that keep each workflow's name and code
(sample_worker/workflows.py), and only sample_worker/worker.py's versioned
branch registers them. temporalio needs the run method and the signal handlers
re-declared on such a subclass (temporalio/workflow/_definition.py: "defined
on ... but not on the override"); they only call the parent's.

Why these behaviours: OrderWorkflow is short, so AUTO_UPGRADE costs nothing
and leaves no work on an old build; PinnedWorkflow is the long-running kind
that must finish on the code it started with; AutoUpgradeWorkflow is the
long-running kind that may move, which only works if each build replays the
histories of the others (no incompatible change to its code between builds).
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import VersioningBehavior

from sample_worker.workflows import (
    FINISH_SIGNAL,
    AutoUpgradeWorkflow,
    OrderInput,
    OrderResult,
    OrderWorkflow,
    PinnedWorkflow,
    RunReport,
)


@workflow.defn(name="OrderWorkflow", versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class VersionedOrderWorkflow(OrderWorkflow):
    @workflow.run
    async def run(self, order: OrderInput) -> OrderResult:
        return await super().run(order)


@workflow.defn(name="PinnedWorkflow", versioning_behavior=VersioningBehavior.PINNED)
class VersionedPinnedWorkflow(PinnedWorkflow):
    @workflow.signal(name=FINISH_SIGNAL)
    def finish(self) -> None:
        super().finish()

    @workflow.run
    async def run(self) -> RunReport:
        return await super().run()


@workflow.defn(name="AutoUpgradeWorkflow", versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class VersionedAutoUpgradeWorkflow(AutoUpgradeWorkflow):
    @workflow.signal(name=FINISH_SIGNAL)
    def finish(self) -> None:
        super().finish()

    @workflow.run
    async def run(self) -> RunReport:
        return await super().run()


# What a versioned worker registers, in place of the classes of sample_worker/workflows.py.
VERSIONED_WORKFLOWS = [VersionedOrderWorkflow, VersionedPinnedWorkflow, VersionedAutoUpgradeWorkflow]
