"""Microsoft.ContainerRegistry/registries builds: Registries_GetBuildSourceUploadUrl, Registries_ScheduleRun and
registries/runs (Runs_Get, Runs_GetLogSasUrl, Runs_Cancel, Runs_List). The build itself runs in ../../builds.py."""

from __future__ import annotations

import datetime
import re
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from bootstrap.azure_arm import blobs
from bootstrap.azure_arm.arm.context import ArmError, Context, json_response, read_body
from bootstrap.azure_arm.arm.providers.registries import registry_id
from bootstrap.azure_arm.authorization import granted, principal_of
from bootstrap.azure_arm.builds import now_iso
from bootstrap.azure_arm.state import TERMINAL_STATUSES, RegistrySeed, RunStore


async def registries_get_build_source_upload_url(ctx: Context) -> web.StreamResponse:
    registry = ctx.registry()
    relative = f"source/{datetime.datetime.now(datetime.UTC):%Y%m%d%H%M}/{uuid.uuid4()}.tar.gz"
    url = blobs.sas_url(ctx.base_url, ctx.seed.sas_key, f"{registry.name.lower()}/{relative}", permissions="cw")
    return json_response({"relativePath": relative, "uploadUrl": url})


# -- Registries_ScheduleRun ------------------------------------------------


def _source_blob(ctx: Context, registry: RegistrySeed, location: str) -> Path:
    """The uploaded archive named by `sourceLocation`: the upload's `relativePath`, or its full upload URL."""
    prefix = f"/blob/{registry.name.lower()}/"
    if location.startswith("source/"):
        blob_path = f"{registry.name.lower()}/{location}"
    elif location.startswith(ctx.base_url + prefix):
        blob_path = urllib.parse.unquote(urllib.parse.urlsplit(location).path).removeprefix("/blob/")
    else:
        raise ArmError(
            400,
            "InvalidParameter",
            f"sourceLocation '{location.split('?')[0]}' is neither the relativePath nor the uploadUrl returned by "
            "listBuildSourceUploadUrl for this registry (the imitation cannot fetch git or remote URLs).",
        )
    path = blobs.blob_file(ctx.request.app["state_dir"], blob_path)
    if not path.is_file():
        raise ArmError(400, "InvalidParameter", f"sourceLocation '{location.split('?')[0]}': nothing was uploaded there.")
    return path


# PlatformProperties of the 2025-03-01-preview spec (containerregistry_build.json; the SDK's OS, Architecture and
# Variant enums): by lower-case value, ACR's spelling.
_OS = {"linux": "Linux", "windows": "Windows"}
_ARCHITECTURES = {"amd64": "amd64", "x86": "x86", "386": "386", "arm": "arm", "arm64": "arm64"}
_VARIANTS = {"v6": "v6", "v7": "v7", "v8": "v8"}


def _check_platform(platform: Any) -> dict[str, str]:
    """The request's PlatformProperties checked against the spec's enums (400 InvalidParameter otherwise) and
    spelled as ACR echoes them; `architecture` defaults to amd64. Windows is a valid ACR platform that the
    imitation's Linux engine cannot build: refused too, saying so."""
    if not isinstance(platform, dict) or not platform.get("os"):
        raise ArmError(400, "InvalidParameter", "The parameter 'platform.os' of the DockerBuildRequest is required.")
    checked: dict[str, str] = {}
    for field, allowed in (("os", _OS), ("architecture", _ARCHITECTURES), ("variant", _VARIANTS)):
        value = platform.get(field)
        if value is None or value == "":
            continue
        if str(value).lower() not in allowed:
            raise ArmError(
                400,
                "InvalidParameter",
                f"The value '{value}' of parameter 'platform.{field}' is not valid. "
                f"Allowed values: {', '.join(allowed.values())}.",
            )
        checked[field] = allowed[str(value).lower()]
    if checked["os"] == "Windows":
        raise ArmError(400, "InvalidParameter", "platform.os 'Windows': the imitation's Docker engine builds Linux images only.")
    return {"os": checked["os"], "architecture": checked.get("architecture", "amd64")} | (
        {"variant": checked["variant"]} if "variant" in checked else {}
    )


def _check_build_request(body: dict[str, Any]) -> int:
    """What ACR refuses in a DockerBuildRequest (400 InvalidParameter); returns its timeout in seconds."""
    if body.get("type") != "DockerBuildRequest":
        raise ArmError(
            400, "InvalidParameter", f"run request type {body.get('type')!r}: the imitation implements DockerBuildRequest only."
        )
    for field in ("dockerFilePath", "platform"):
        if not body.get(field):
            raise ArmError(400, "InvalidParameter", f"The parameter '{field}' of the DockerBuildRequest is required.")
    body["platform"] = _check_platform(body["platform"])
    timeout = int(body.get("timeout") or 3600)
    if not 300 <= timeout <= 28800:
        raise ArmError(
            400, "InvalidParameter", f"The timeout {timeout} is out of range: it must be between 300 and 28800 seconds."
        )
    return timeout


def _run_resource(ctx: Context, registry: RegistrySeed, run_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """The new run as Runs_Get answers it: Queued."""
    created = now_iso()
    return {
        "type": "Microsoft.ContainerRegistry/registries/runs",
        "id": f"{registry_id(ctx.seed, registry)}/runs/{run_id}",
        "name": run_id,
        "properties": {
            "runId": run_id,
            "status": "Queued",
            "lastUpdatedTime": created,
            "runType": "QuickBuild",
            "createTime": created,
            "outputImages": [],
            "platform": dict(body["platform"]),  # as _check_platform spelled it
            "agentConfiguration": body.get("agentConfiguration") or {"cpu": 2},
            "provisioningState": "Succeeded",
            "isArchiveEnabled": bool(body.get("isArchiveEnabled", False)),
        },
    }


def _empty_log(state_dir: Path, registry: RegistrySeed, run_id: str) -> tuple[str, Path]:
    """The run's log blob (its name and file), created empty."""
    log_blob = f"{registry.name.lower()}/logs/{run_id}/rawtext.log"
    log_file = blobs.blob_file(state_dir, log_blob)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text("")
    return log_blob, log_file


REPOSITORY_WRITE = "Microsoft.ContainerRegistry/registries/repositories/content/write"


def _push_denied(ctx: Context, registry: RegistrySeed, body: dict[str, Any]) -> str:
    """Why the run's push will be refused ("" = it will not): a registry in AbacRepositoryPermissions mode gives a
    Quick Build run data-plane access only through `credentials.sourceRegistry.identity`; `[caller]` (what
    `az acr build` sends for such registries) pushes as the caller, who then needs a Container Registry Repository
    role's `repositories/content/write` on the registry. Legacy registries let the run push as the registry's own."""
    if registry.role_assignment_mode != "AbacRepositoryPermissions" or not body.get("isPushEnabled", True):
        return ""
    identity = str(((body.get("credentials") or {}).get("sourceRegistry") or {}).get("identity") or "")
    if identity != "[caller]":
        return "unauthorized: authentication required, visit https://aka.ms/acr/authorization for more information."
    if not granted(ctx.seed, principal_of(ctx.seed, ctx.claims), registry_id(ctx.seed, registry), REPOSITORY_WRITE, data=True):
        return "denied: requested access to the resource is denied"
    return ""


async def registries_schedule_run(ctx: Context) -> web.StreamResponse:
    registry = ctx.registry()
    body = await read_body(ctx)
    timeout = _check_build_request(body)
    source = _source_blob(ctx, registry, str(body.get("sourceLocation") or ""))
    app = ctx.request.app
    store: RunStore = app["runs"]
    run_id = store.next_run_id(registry.name)
    resource = _run_resource(ctx, registry, run_id, body)
    log_blob, log_file = _empty_log(app["state_dir"], registry, run_id)
    private = {
        "request": {k: v for k, v in body.items() if k != "credentials"},
        "sourceFile": str(source),
        "logBlob": log_blob,
        "logFile": str(log_file),
        "loginServer": registry.login_server,
        "timeout": timeout,
        "clientId": ctx.claims.client_id,
        "sourceRegistryIdentity": str(((body.get("credentials") or {}).get("sourceRegistry") or {}).get("identity") or ""),
        # the registry's answer to this run's push (ABAC mode without data-plane access), "" = accepted; the
        # executor (builds.py) fails the push step with it
        "pushDenied": _push_denied(ctx, registry, body),
    }
    answer = store.create(registry.name, run_id, {"resource": resource, "private": private})["resource"]
    app["executor"].start(registry.name, run_id)
    answer["type"] = "Microsoft.ContainerRegistry/registries/run"  # as RegistriesScheduleRun.json has it (singular)
    return json_response(answer)


# -- registries/runs -----------------------------------------------------


def _run(ctx: Context) -> tuple[RegistrySeed, dict[str, Any]]:
    registry = ctx.registry()
    record = ctx.request.app["runs"].get(registry.name, ctx.params["runId"])
    if record is None:
        raise ArmError(404, "ResourceNotFound", f"The run '{ctx.params['runId']}' was not found in registry '{registry.name}'.")
    return registry, record


async def runs_get(ctx: Context) -> web.StreamResponse:
    return json_response(_run(ctx)[1]["resource"])


async def runs_get_log_sas_url(ctx: Context) -> web.StreamResponse:
    _, record = _run(ctx)
    return json_response(
        {"logLink": blobs.sas_url(ctx.base_url, ctx.seed.sas_key, record["private"]["logBlob"], permissions="r")}
    )


async def runs_cancel(ctx: Context) -> web.StreamResponse:
    registry, record = _run(ctx)
    if record["resource"]["properties"]["status"] not in TERMINAL_STATUSES:
        ctx.request.app["executor"].cancel(registry.name, record["resource"]["name"])
    return web.Response(status=200)


_FILTER_CLAUSE = re.compile(r"^\s*(\w+)\s+(eq|ne|ge|gt|le|lt)\s+('(?:[^']*)'|\S+)\s*$", re.IGNORECASE)
_FILTER_FIELDS = {
    "runid": "runId",
    "status": "status",
    "taskname": "task",
    "createtime": "createTime",
    "finishtime": "finishTime",
    "runtype": "runType",
}


def _run_filter(expression: str) -> Callable[[dict[str, Any]], bool]:
    clauses = []
    for text in re.split(r"\s+and\s+", expression.strip(), flags=re.IGNORECASE) if expression.strip() else []:
        match = _FILTER_CLAUSE.match(text)
        if not match or match.group(1).lower() not in _FILTER_FIELDS:
            raise ArmError(
                400,
                "InvalidFilter",
                f"$filter clause '{text}' is not supported: use <RunId|Status|TaskName|RunType|CreateTime|FinishTime> <eq|ne|ge|gt|le|lt> <value> joined by 'and'.",
            )
        clauses.append((_FILTER_FIELDS[match.group(1).lower()], match.group(2).lower(), match.group(3).strip("'")))
    compare = {
        "eq": lambda a, b: a.lower() == b.lower(),
        "ne": lambda a, b: a.lower() != b.lower(),
        "ge": lambda a, b: a >= b,
        "gt": lambda a, b: a > b,
        "le": lambda a, b: a <= b,
        "lt": lambda a, b: a < b,
    }

    def accept(props: dict[str, Any]) -> bool:
        return all(compare[op](str(props.get(field) or ""), value) for field, op, value in clauses)

    return accept


async def runs_list(ctx: Context) -> web.StreamResponse:
    registry = ctx.registry()
    query = ctx.request.query
    accept = _run_filter(query.get("$filter", ""))
    runs = [r["resource"] for r in ctx.request.app["runs"].all(registry.name) if accept(r["resource"]["properties"])]
    runs.sort(key=lambda r: r["properties"]["createTime"], reverse=True)
    if "$top" in query:
        runs = runs[: int(query["$top"])]
    skip = int(query.get("$skipToken", "0") or 0)
    page_size = 10
    body: dict[str, Any] = {"value": runs[skip : skip + page_size]}
    if skip + page_size < len(runs):
        next_query = dict(query) | {"$skipToken": str(skip + page_size)}
        body["nextLink"] = f"{ctx.base_url}{ctx.request.path}?{urllib.parse.urlencode(next_query)}"
    return json_response(body)
