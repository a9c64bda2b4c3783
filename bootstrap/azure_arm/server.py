"""The aiohttp application: Entra ID, ARM, blobs and the admin API on one HTTPS port on 127.0.0.1."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from bootstrap.azure_arm import acr_auth, arm, blobs, identity, throttle
from bootstrap.azure_arm.builds import RunExecutor
from bootstrap.azure_arm.faults import FaultError, Faults
from bootstrap.azure_arm.oidc import OidcIssuers, discovery_context
from bootstrap.azure_arm.state import ROLE_CLIENTS, RunStore, Seed
from bootstrap.azure_arm.tls import ensure_certificates, server_context
from bootstrap.tls import write_private

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def load_or_create_seed(state_dir: Path, *, registry: str, empty: bool = False) -> Seed:
    """DIR/seed.json as it is; at the first start, the default seed (`empty`: no resource group, registry or cluster)."""
    path = state_dir / "seed.json"
    if path.exists():
        seed = Seed.load(path)  # brought up to date (Seed.with_client_roles), so saved again
        arm.finish_interrupted(seed)
        seed.save(path)
        return seed
    seed = Seed.default(login_server=registry, empty=empty)
    seed.save(path)
    return seed


def client_env(seed: Seed, *, base_url: str, ca_pem: Path, client_name: str = "pipeline") -> dict[str, str]:
    """The environment a client of the imitation needs: the `pipeline` service principal (Owner on the
    subscription), or `client_name` ("contributor", "reader": Contributor / Reader only; DIR/env.<name>).

    AZURE_RESOURCE_GROUP and AZURE_LOCATION are named even when the group does not exist yet (an empty
    imitation); AZURE_REGISTRY_* and AZURE_AKS_* only when a registry / cluster is seeded.
    """
    client = next((c for c in seed.clients if c.display_name == client_name), None) or next(
        c for c in seed.clients if c.has_access
    )
    registry = seed.registries[0] if seed.registries else None
    plain = next((c for c in seed.clusters if not c.aad), seed.clusters[0] if seed.clusters else None)
    aad = next((c for c in seed.clusters if c.aad), None)
    return {
        "AZURE_TENANT_ID": seed.tenant_id,
        "AZURE_CLIENT_ID": client.client_id,
        "AZURE_CLIENT_SECRET": client.secret,
        "AZURE_AUTHORITY_HOST": base_url,
        "AZURE_SUBSCRIPTION_ID": seed.subscription_id,
        "AZURE_RESOURCE_MANAGER_ENDPOINT": base_url,
        "AZURE_RESOURCE_GROUP": seed.resource_group,
        "AZURE_LOCATION": seed.location,
        **({"AZURE_REGISTRY_NAME": registry.name, "AZURE_REGISTRY_LOGIN_SERVER": registry.login_server} if registry else {}),
        **({"AZURE_AKS_CLUSTER": plain.name} if plain else {}),
        **({"AZURE_AKS_AAD_CLUSTER": aad.name} if aad else {}),
        "REQUESTS_CA_BUNDLE": str(ca_pem),
        "SSL_CERT_FILE": str(ca_pem),
    }


@web.middleware
async def _loopback_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/_imitation/"):
        remote = request.remote or ""
        if not remote or not ipaddress.ip_address(remote).is_loopback:
            return web.json_response({"error": "the admin API answers loopback clients only"}, status=403)
    return await handler(request)


async def _add_faults(request: web.Request) -> web.Response:
    try:
        body = await request.json()
        for spec in body if isinstance(body, list) else [body]:
            request.app["faults"].add(spec)
    except (ValueError, FaultError, TypeError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(request.app["faults"].snapshot()["pending"], status=201)


async def _clear_faults(request: web.Request) -> web.Response:
    request.app["faults"].clear(requests=False)
    return web.Response(status=204)


async def _requests(request: web.Request) -> web.Response:
    return web.json_response(request.app["faults"].snapshot())


async def _reset(request: web.Request) -> web.Response:
    request.app["faults"].clear(requests=True)
    return web.Response(status=204)


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "endpoint": request.app["base_url"]})


async def _counted(request: web.Request, operation: str, handler: Handler) -> web.StreamResponse:
    faults: Faults = request.app["faults"]
    fault = faults.take_http(operation)
    if fault:
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
        response: web.StreamResponse = web.json_response(
            {"error": "temporarily_unavailable", "error_description": f"injected {fault.status}"},
            status=fault.status,
            headers=headers,
        )
    else:
        response = await handler(request)
    faults.record(operation=operation, method=request.method, path=request.path, status=response.status, client_id=None)
    return response


def build_app(*, state_dir: Path, seed: Seed, kubeconfig: Path | None, login_server: str = "127.0.0.1:5000") -> web.Application:
    app = web.Application(middlewares=[_loopback_only, throttle.throttling], client_max_size=16 * 1024 * 1024)
    faults = Faults()
    app["throttle"] = throttle.Throttle(faults)  # ARM's token buckets (throttle.py), per principal and subscription-wide
    runs = RunStore(state_dir / "runs")
    app["state_dir"], app["seed"], app["faults"], app["runs"] = state_dir, seed, faults, runs
    app["executor"] = RunExecutor(store=runs, faults=faults, state_dir=state_dir)
    app["kubeconfig"] = kubeconfig
    app["login_server"] = login_server  # the loginServer of registries created through Registries_Create
    app["operations"] = {}  # ARM asynchronous operations by id (state.Operation), in memory
    app["operation_seconds"] = dict(arm.OPERATION_SECONDS)
    app["cluster_token"] = None
    if kubeconfig is not None:
        import yaml

        doc = yaml.safe_load(kubeconfig.read_text())
        app["cluster_token"] = next((u["user"].get("token") for u in doc.get("users", []) if u["user"].get("token")), None)
    app["oidc"] = OidcIssuers(kubeconfig)  # the local cluster's issuer, and keys of assertion issuers
    app.cleanup_ctx.append(discovery_context)
    app["base_url"] = ""  # set once the port is bound
    app.router.add_get("/_imitation/health", _health)
    app.router.add_post("/_imitation/faults", _add_faults)
    app.router.add_delete("/_imitation/faults", _clear_faults)
    app.router.add_get("/_imitation/requests", _requests)
    app.router.add_post("/_imitation/reset", _reset)
    app.router.add_get("/common/discovery/instance", identity.handle_instance_discovery)
    app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", identity.handle_openid_configuration)
    app.router.add_post("/{tenant}/oauth2/v2.0/token", lambda r: _counted(r, "Token", identity.handle_token))
    app.router.add_post(  # ACR's data-plane token exchange (acr_auth.py)
        "/oauth2/exchange",
        lambda r: _counted(r, "Authentication_ExchangeAadAccessTokenForAcrRefreshToken", acr_auth.handle_exchange),
    )
    app.router.add_post(
        "/oauth2/token",
        lambda r: _counted(r, "Authentication_ExchangeAcrRefreshTokenForAcrAccessToken", acr_auth.handle_token),
    )
    app.router.add_put("/blob/{path:.+}", lambda r: _counted(r, "Blob_Put", blobs.handle_put))
    app.router.add_get("/blob/{path:.+}", lambda r: _counted(r, "Blob_Get", blobs.handle_get))
    app.router.add_route("*", "/subscriptions/{tail:.*}", arm.handle)
    return app


def _prepare(state_dir: Path, *, registry: str, empty: bool) -> tuple[Path, Path, Path, Path, Seed]:
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    ca_pem, server_pem, server_key = ensure_certificates(state_dir)
    return state_dir, ca_pem, server_pem, server_key, load_or_create_seed(state_dir, registry=registry, empty=empty)


async def serve(
    *,
    state_dir: Path,
    port: int,
    registry: str,
    kubeconfig: Path | None,
    ready: asyncio.Event | None = None,
    empty: bool = False,
) -> None:
    """Serve until SIGTERM/SIGINT (or cancellation); write DIR/env and then DIR/endpoint once listening.

    `empty` matters only at the first start of DIR: the seed then has no resource group, registry or cluster.
    """
    state_dir, ca_pem, server_pem, server_key, seed = _prepare(state_dir, registry=registry, empty=empty)
    app = build_app(
        state_dir=state_dir,
        seed=seed,
        kubeconfig=kubeconfig.resolve() if kubeconfig else None,  # noqa: ASYNC240
        login_server=registry,
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_context(server_pem, server_key))
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base_url = f"https://127.0.0.1:{bound}"
    app["base_url"] = base_url
    for registry_name, run_id in app["runs"].unfinished():
        app["runs"].update(registry_name, run_id, status="Queued", private={"resumed": True})
        app["executor"].start(registry_name, run_id)
    env = client_env(seed, base_url=base_url, ca_pem=ca_pem)
    write_private(state_dir / "env", "".join(f"{k}={v}\n" for k, v in env.items()).encode())
    write_private(state_dir / "env.json", json.dumps(env, indent=2).encode())
    for name in ROLE_CLIENTS:  # DIR/env.contributor, DIR/env.reader: the same form, another principal
        other = client_env(seed, base_url=base_url, ca_pem=ca_pem, client_name=name)
        write_private(state_dir / f"env.{name}", "".join(f"{k}={v}\n" for k, v in other.items()).encode())
    (state_dir / "endpoint").write_text(base_url + "\n")
    log.info("Azure Resource Manager imitation on %s (state %s)", base_url, state_dir)
    if ready:
        ready.set()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        await stop.wait()
    finally:
        (state_dir / "endpoint").unlink(missing_ok=True)
        await runner.cleanup()
