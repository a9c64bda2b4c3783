"""Base images for ACR Tasks: the same config.toml builds on both targets.

Azure builds on its own agents, which see only the uploaded context and the registries they can
pull from (Docker Hub and other public registries, and the run's own registry). A build argument
such as config.toml's `BASE_IMAGE = "pipeline-base:bookworm"` names an image that exists only in
this machine's Docker (bootstrap's debootstrapped base): on Azure the run fails at `FROM` with
`pull access denied for pipeline-base, repository does not exist or may require 'docker login'`.

So, for target "aks":

- `pipeline bootstrap --azure` copies every image a build argument names that the local Docker
  holds and that is not in any registry (no registry host in its name, no repository digest of its
  own name: made here, not pulled) into the registry under the same name, `<loginServer>/<name>`
  (`publish`), with `docker push` (a real ACR logged in with a refresh token exchanged from the
  caller's Entra ID token, as `az acr login --expose-token` hands out; a loopback registry, the
  local imitation's, anonymously). A name the registry already holds is left alone (never
  replaced: it may be a multi-platform index of it).
- The ACR builder sends a build argument whose value is a Docker Hub-style name as
  `<loginServer>/<name>` when the registry holds that image (`registry_copies`), and unchanged
  otherwise (a public image the agent pulls itself, e.g. `python:3.11-slim-bookworm`).
  config.toml is not changed and the local target still uses the local image.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from pipeline.azure import registry_token
from pipeline.azure.credentials import ca_bundle, default_credential
from pipeline.azure.errors import AzureError
from pipeline.config import PipelineConfig
from pipeline.registry import TokenSource, find_image, is_loopback

ACR_SCOPE = "https://management.core.windows.net/.default"  # what ACR's token exchange takes (registry_token.py)
ACR_TOKEN_USER = "00000000-0000-0000-0000-000000000000"  # the user name ACR expects with a refresh token


def docker_hub_name(value: str) -> str | None:
    """`name:tag` when `value` is an image reference without a registry host (Docker Hub's form); else None."""
    value = value.strip()
    if not value or any(c.isspace() for c in value) or value.startswith(("-", "/")) or "@" in value:
        return None
    first, _, rest = value.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return None
    last = value.rsplit("/", 1)[-1]
    if not last or not all(c.isalnum() or c in "._-:/" for c in value) or value.count(":") > 1:
        return None
    return value if ":" in last else f"{value}:latest"


def registry_copies(
    build_args: Mapping[str, str], login_server: str, *, auth: TokenSource | None, log: Callable[[str], None]
) -> dict[str, str]:
    """`build_args` with each Docker Hub-style image name the registry holds a copy of replaced by that copy."""
    resolved = dict(build_args)
    for key, value in build_args.items():
        name = docker_hub_name(value)
        if name is None:
            continue
        repository, _, tag = name.rpartition(":")
        try:
            found = find_image(f"{login_server}/{repository}", tag, auth=auth)
        except Exception as exc:  # noqa: BLE001 - the registry's answer only decides a rewrite: keep the value
            log(f"build argument {key}: could not ask registry {login_server} for {name} ({exc}); sent unchanged")
            continue
        if found is not None:
            resolved[key] = f"{login_server}/{name}"
            log(f"build argument {key}={value}: the registry's copy {resolved[key]} (bootstrap --azure put it there)")
    return resolved


@dataclass(frozen=True)
class Published:
    image: str
    target: str
    pushed: bool  # False: the registry already held it

    def line(self) -> str:
        return f"base image {self.image}: {'pushed to' if self.pushed else 'already in'} {self.target}"


def _refresh_token(login_server: str) -> str:
    """An ACR refresh token for the caller, exchanged from its Entra ID token (ACR's /oauth2/exchange)."""
    entra = default_credential().get_token(ACR_SCOPE).token
    form = {"grant_type": "access_token", "service": login_server, "access_token": entra}
    if tenant := os.environ.get("AZURE_TENANT_ID", ""):
        form["tenant"] = tenant
    try:
        response = requests.post(f"https://{login_server}/oauth2/exchange", data=form, verify=ca_bundle() or True, timeout=30)
    except requests.RequestException as exc:
        raise AzureError(f"registry {login_server}: token exchange failed: {type(exc).__name__}") from exc
    if response.status_code != 200:
        raise AzureError(f"registry {login_server}: token exchange answered {response.status_code}")
    return str(response.json()["refresh_token"])


def host_only(client: Any, name: str) -> str | None:
    """The local image id of `name` when the local Docker holds it and it was not pulled from a registry under that
    name (no repository digest of its own repository): the images Azure's agents cannot pull."""
    import docker.errors

    try:
        image = client.images.get(name)
    except docker.errors.ImageNotFound:
        return None
    repository = name.rpartition(":")[0]
    own = {repository, f"docker.io/{repository}", f"docker.io/library/{repository}"}
    if any(digest.split("@", 1)[0] in own for digest in image.attrs.get("RepoDigests") or []):
        return None
    return str(image.id)


def publish_for(config: PipelineConfig, *, say: Callable[[str], None]) -> list[Published]:
    """`publish` for every app's build arguments, into [acr].login_server (what `bootstrap --azure` calls)."""
    return publish([app.build_args for app in config.apps.values()], config.acr.login_server, say=say)


def publish(build_args: list[Mapping[str, str]], login_server: str, *, say: Callable[[str], None]) -> list[Published]:
    """Copy every host-only image the build arguments name into the registry as `<login_server>/<name>`."""
    import docker

    names = sorted({n for args in build_args for v in args.values() if (n := docker_hub_name(v))})
    if not names:
        return []
    client = docker.from_env(timeout=600)
    loopback = is_loopback(login_server)
    auth = None if loopback else {"username": ACR_TOKEN_USER, "password": _refresh_token(login_server)}
    lookup = None if loopback else registry_token.token_source(login_server)
    published: list[Published] = []
    try:
        for name in names:
            image_id = host_only(client, name)
            if image_id is None:
                continue
            target = f"{login_server}/{name}"
            repository, _, tag = target.rpartition(":")
            if find_image(repository, tag, auth=lookup) is not None:  # never replace what is there (e.g. an index)
                published.append(Published(name, target, pushed=False))
                say(published[-1].line())
                continue
            client.images.get(name).tag(repository, tag)
            for chunk in client.api.push(repository, tag=tag, stream=True, decode=True, auth_config=auth):
                if "error" in chunk:
                    raise AzureError(f"pushing base image {name} to {target}: {str(chunk['error']).strip()}")
            outcome = Published(name, target, pushed=True)
            published.append(outcome)
            say(outcome.line())
    finally:
        client.close()
    return published
