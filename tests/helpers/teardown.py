"""`pipeline teardown --azure` tests' names in an ARM imitation, their config of target aks, and the CLI run against it.

setup = AzureSetup.fresh(imitation, tmp_path)      # td-<uid>, tdacr<uid>, td-aks-<uid>, td-pipeline-<uid>
provision.provision(setup.plan(), say=print)      # what `bootstrap --azure` makes in Azure
run = setup.cli("teardown", "--azure", "--yes")   # the console script; stdin is not a terminal
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.msi import ManagedServiceIdentityClient

from bootstrap.azure_arm import Imitation
from pipeline.azure import provision
from tests.e2e.support import PIPELINE, TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, UI_URL, self_deploy_apps_toml
from tests.helpers.azure import ARM_SCOPE, credential
from tests.helpers.cli import clean_env

LOCATION = "westeurope"
LOGIN_SERVER = "127.0.0.1:5000"  # the imitation's registries' loginServer (the local registry)
# What the imitation's client environment sets that config.toml's env overrides would read: never passed on.
CONFIG_OVERRIDES = frozenset({"AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZURE_LOCATION", "ACR_NAME", "AKS_CLUSTER_NAME"})


def credential_env(arm: Imitation) -> dict[str, str]:
    """The imitation's credential and CA for a client, without the names that would override config.toml."""
    return {k: v for k, v in arm.env.items() if k not in CONFIG_OVERRIDES}


@dataclass(frozen=True)
class AzureSetup:
    """One test's names in a shared imitation, and its config.toml of target aks."""

    arm: Imitation
    config: Path
    uid: str

    @classmethod
    def fresh(cls, arm: Imitation, directory: Path) -> AzureSetup:
        uid = uuid.uuid4().hex[:6]
        setup = cls(arm, directory / f"config-{uid}.toml", uid)
        setup.config.write_text(setup.config_text())
        return setup

    @property
    def group(self) -> str:
        return f"td-{self.uid}"

    @property
    def registry(self) -> str:
        return f"tdacr{self.uid}"

    @property
    def cluster(self) -> str:
        return f"td-aks-{self.uid}"

    @property
    def identity(self) -> str:
        return f"td-pipeline-{self.uid}"

    @property
    def namespace(self) -> str:
        return f"td-{self.uid}"

    @property
    def pipeline_app(self) -> str:
        return f"tdpw-{self.uid}"

    def config_text(self) -> str:
        return f"""
target = "aks"
[pipeline]
task_queue = "td-{self.uid}-deployments"
default_app = "tdsw-{self.uid}"
[azure]
subscription_id = "{self.arm.subscription_id}"
resource_group = "{self.group}"
location = "{LOCATION}"
endpoint = "{self.arm.endpoint}"
identity = "{self.identity}"
[acr]
name = "{self.registry}"
login_server = "{LOGIN_SERVER}"
[aks]
cluster_name = "{self.cluster}"
[kubernetes]
namespace = "{self.namespace}"
[temporal]
address = "{TEMPORAL_ADDRESS}"
namespace = "{TEMPORAL_NAMESPACE}"
ui_url = "{UI_URL}"
""" + self_deploy_apps_toml(sample_app=f"tdsw-{self.uid}", sample_queue=f"tdsw-{self.uid}", pipeline_app=self.pipeline_app)

    def plan(self) -> provision.Plan:
        """What `bootstrap --azure` with this config provisions (LROs polled each second)."""
        return provision.Plan(
            subscription_id=self.arm.subscription_id,
            resource_group=self.group,
            location=LOCATION,
            endpoint=self.arm.endpoint,
            registry_name=self.registry,
            login_server=LOGIN_SERVER,
            registry_admin_user=False,
            cluster_name=self.cluster,
            identity_name=self.identity,
            namespace=self.namespace,
            service_account=self.pipeline_app,
            polling_interval=1.0,
        )

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """`pipeline --config CONFIG ARGS` with the imitation's credential and nothing else of Azure."""
        return pipeline(self.config, *args, env=clean_env(**credential_env(self.arm)), timeout=timeout)


def pipeline(config: Path, *args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """The console script `pipeline --config CONFIG ARGS` in CONFIG's directory, stdin not a terminal; output printed."""
    done = subprocess.run(
        [PIPELINE, "--config", str(config), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=config.parent,
    )
    print(f"$ pipeline {' '.join(args)}  # exit {done.returncode}\n{done.stdout}{done.stderr}")
    return done


def msi(arm: Imitation) -> ManagedServiceIdentityClient:
    return ManagedServiceIdentityClient(
        credential(arm),
        arm.subscription_id,
        base_url=arm.endpoint,
        connection_verify=str(arm.ca_bundle),
        credential_scopes=[ARM_SCOPE],
    )


def gone(read: Callable[[], Any]) -> bool:
    """True when `read()` is ARM's 404."""
    try:
        read()
    except ResourceNotFoundError:
        return True
    return False
