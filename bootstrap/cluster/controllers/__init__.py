"""The cluster's controllers (kube-controller-manager's role), each `run()` until cancelled.

They share the cluster's one event loop with the API server and the kubelet:
store listeners only enqueue keys; each controller reconciles in its own loop.
"""

from bootstrap.cluster.controllers.cronjob import CronJobController
from bootstrap.cluster.controllers.deployment import DeploymentController
from bootstrap.cluster.controllers.gc import GarbageCollector
from bootstrap.cluster.controllers.job import JobController
from bootstrap.cluster.controllers.replicaset import ReplicaSetController
from bootstrap.cluster.controllers.serviceaccounts import ServiceAccountsController

__all__ = [
    "CronJobController",
    "DeploymentController",
    "GarbageCollector",
    "JobController",
    "ReplicaSetController",
    "ServiceAccountsController",
]
