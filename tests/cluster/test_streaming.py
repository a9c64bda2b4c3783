"""kubectl exec / attach / cp / port-forward against the cluster with the kubelet, and the Python client's streams.

The real kubectl 1.32 speaks WebSocket `v5.channel.k8s.io` for exec and attach and
SPDY/3.1 tunnelled in a WebSocket for port-forward; the `kubernetes` client's
`stream()` negotiates v5 (falling back to v4) and forwards ports over
`v4.channel.k8s.io`. The pods are real Docker containers of the session's
workload cluster (host network), so what comes back is what the container did.
The framing itself (channel bytes, the v4 Status JSON, SPDY frames) is checked
byte for byte on a raw WebSocket and on the SPDY framer.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import select
import ssl
import struct
import subprocess
import tempfile
import termios
import time
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import websocket
import yaml
from kubernetes import client, config
from kubernetes.stream import portforward, stream

from bootstrap.cluster import spdy
from tests.cluster.workloads import BASE_IMAGE, docker_engine, unique
from tests.helpers import poll_until
from tests.helpers.cluster import KUBECTL, ClusterProcess, kubectl
from tests.helpers.processes import free_port

__all__ = ["docker_engine"]  # a session fixture used by name

SLEEPER = ["python3", "-c", "import time; time.sleep(3600)"]
ECHOER = "import sys\nfor line in sys.stdin:\n    print('got', line.strip(), flush=True)\n"


@pytest.fixture(scope="module")
def wl(workload_cluster: ClusterProcess, docker_engine: docker.DockerClient) -> Iterator[dict[str, Any]]:
    """A namespace of the workload cluster with three running pods: `shell` (two containers), `web`, `echoer`."""
    api_client = config.new_client_from_config(config_file=str(workload_cluster.kubeconfig))
    core = client.CoreV1Api(api_client)
    namespace = unique("stream")
    port = free_port()
    core.create_namespace({"metadata": {"name": namespace}})

    def container(name: str, command: list[str], **extra: Any) -> dict[str, Any]:
        return {"name": name, "image": BASE_IMAGE, "imagePullPolicy": "Never", "command": command, **extra}

    pods = {
        "shell": [container("main", SLEEPER), container("side", SLEEPER)],
        "web": [container("web", ["python3", "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", "/tmp"])],
        "echoer": [container("echoer", ["python3", "-u", "-c", ECHOER], stdin=True)],
    }
    for name, containers in pods.items():
        core.create_namespaced_pod(namespace, {"metadata": {"name": name}, "spec": {"containers": containers}})

    def all_running() -> bool:
        listed = core.list_namespaced_pod(namespace).items
        return len(listed) == 3 and all(
            p.status.phase == "Running" and all(cs.ready for cs in p.status.container_statuses or []) for p in listed
        )

    poll_until(all_running, timeout=60, what="the streaming pods running")
    poll_until(lambda: _connects(port), timeout=20, what="the web pod listening")
    try:
        yield {
            "core": core,
            "namespace": namespace,
            "port": port,
            "kubeconfig": workload_cluster.kubeconfig,
            "cluster": workload_cluster,
        }
    finally:
        core.delete_namespace(namespace, propagation_policy="Background")
        api_client.close()


def _connects(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _kubectl(wl: dict[str, Any], *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return kubectl(wl["kubeconfig"], "-n", wl["namespace"], *args, input=input, check=False)


# ----- exec -----


def test_exec_streams_and_exit_code(wl: dict[str, Any]) -> None:
    started = time.monotonic()
    result = _kubectl(wl, "exec", "shell", "-c", "main", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    print(f"kubectl exec round trip: {time.monotonic() - started:.3f}s")
    assert result.returncode == 3, result.stderr
    assert result.stdout == "out\n"
    assert "err\n" in result.stderr
    assert "command terminated with exit code 3" in result.stderr


def test_exec_defaults_the_container_and_runs_in_it(wl: dict[str, Any]) -> None:
    first = _kubectl(wl, "exec", "shell", "--", "hostname")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "shell"  # the pod's hostname, in the pod's container
    assert 'Defaulted container "main" out of: main, side' in first.stderr
    # -c picks the other container: a file made in one is not in the other
    assert _kubectl(wl, "exec", "shell", "-c", "side", "--", "touch", "/tmp/side-only").returncode == 0
    assert _kubectl(wl, "exec", "shell", "-c", "side", "--", "test", "-f", "/tmp/side-only").returncode == 0
    assert _kubectl(wl, "exec", "shell", "-c", "main", "--", "test", "-f", "/tmp/side-only").returncode == 1


def test_exec_stdin_ends_at_eof(wl: dict[str, Any]) -> None:
    """v5's CLOSE signal: kubectl half-closes stdin at EOF, so `wc -l` finishes."""
    result = _kubectl(wl, "exec", "-i", "shell", "-c", "main", "--", "sh", "-c", "wc -l; echo done", input="a\nb\nc\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["3", "done"]


def test_exec_interactive_tty(wl: dict[str, Any]) -> None:
    """`kubectl exec -it` on a terminal: a TTY in the container with kubectl's window size, the shell's exit code."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    env = dict(os.environ, KUBECACHEDIR=str(wl["kubeconfig"].parent / "kubecache"))
    argv = [
        KUBECTL,
        "--kubeconfig",
        str(wl["kubeconfig"]),
        "-n",
        wl["namespace"],
        "exec",
        "-it",
        "shell",
        "-c",
        "main",
        "--",
        "sh",
    ]
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    try:
        output = b""
        sent = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: kubectl exited and the terminal closed
                    break
                if not chunk:
                    break
                output += chunk
            if not sent and (b"# " in output or b"$ " in output):
                os.write(master, b"echo $((6*7)); tty; stty size; exit 5\n")
                sent = True
            elif not ready and proc.poll() is not None:
                break
        code = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    text = output.decode(errors="replace")
    assert code == 5, text
    assert "\r\n42\r\n" in text
    assert "/dev/pts/" in text
    assert "40 100" in text
    assert "command terminated with exit code 5" in text


def test_exec_errors(wl: dict[str, Any]) -> None:
    wrong = _kubectl(wl, "exec", "shell", "-c", "nope", "--", "true")
    assert wrong.returncode == 1
    assert "container nope is not valid for pod shell" in wrong.stderr
    missing = _kubectl(wl, "exec", "absent", "--", "true")
    assert missing.returncode == 1
    assert 'pods "absent" not found' in missing.stderr


def test_python_client_exec(wl: dict[str, Any]) -> None:
    core, namespace = wl["core"], wl["namespace"]
    out = stream(
        core.connect_get_namespaced_pod_exec,
        "shell",
        namespace,
        container="main",
        command=["sh", "-c", "echo py; echo e >&2"],
        stdin=False,
        stdout=True,
        stderr=True,
        tty=False,
    )
    assert sorted(out.splitlines()) == ["e", "py"]  # stdout and stderr interleave in no fixed order
    resp = stream(
        core.connect_get_namespaced_pod_exec,
        "shell",
        namespace,
        container="main",
        command=["sh", "-c", "read x; echo got $x; exit 4"],
        stdin=True,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )
    try:
        assert resp.subprotocol == "v5.channel.k8s.io"
        resp.write_stdin("abc\n")
        resp.run_forever(timeout=10)
        assert resp.read_stdout() == "got abc\n"
        assert resp.returncode == 4
    finally:
        resp.close()


def _raw_exec(wl: dict[str, Any], query: str, protocol: str, stdin: bytes | None = None) -> list[bytes]:
    """Every message of one exec over a raw WebSocket with `protocol`, in order."""
    doc = yaml.safe_load(Path(wl["kubeconfig"]).read_text())
    ca = base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"])
    with tempfile.NamedTemporaryFile(suffix=".crt") as ca_file:
        ca_file.write(ca)
        ca_file.flush()
        url = f"wss://127.0.0.1:{wl['cluster'].port}/api/v1/namespaces/{wl['namespace']}/pods/shell/exec?{query}"
        ws = websocket.create_connection(
            url,
            header=[f"Authorization: Bearer {wl['cluster'].token}"],
            subprotocols=[protocol],
            sslopt={"ca_certs": ca_file.name, "cert_reqs": ssl.CERT_REQUIRED},
            timeout=20,
        )
    try:
        assert ws.subprotocol == protocol
        if stdin is not None:
            ws.send_binary(b"\x00" + stdin)
        frames = []
        while True:
            opcode, data = ws.recv_data(control_frame=False)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            frames.append(data)
        return frames
    except websocket.WebSocketConnectionClosedException:
        return frames
    finally:
        ws.close()


def test_v4_websocket_framing(wl: dict[str, Any]) -> None:
    """v4.channel.k8s.io as the kubelet writes it: an empty stdout message first, output, then the Status on 3."""
    failed = _raw_exec(
        wl, "container=main&command=sh&command=-c&command=echo+hi%3B+exit+7&stdout=true&stderr=true", "v4.channel.k8s.io"
    )
    assert failed[0] == b"\x01"
    assert b"\x01hi\n" in failed
    status = json.loads(failed[-1][1:])
    assert failed[-1][:1] == b"\x03"
    assert status["status"] == "Failure"
    assert status["reason"] == "NonZeroExitCode"
    assert status["details"] == {"causes": [{"reason": "ExitCode", "message": "7"}]}
    ok = _raw_exec(wl, "container=main&command=true&stdout=true", "v4.channel.k8s.io")
    assert ok == [b"\x01", b'\x03{"metadata":{},"status":"Success"}']
    # base64.channel.k8s.io: text messages, channel as a digit, data base64
    encoded = _raw_exec(wl, "container=main&command=echo&command=b64&stdout=true", "base64.channel.k8s.io")
    assert "1" + base64.b64encode(b"b64\n").decode() in [f.decode() for f in encoded]


def test_exec_needs_create_on_pods_exec(wl: dict[str, Any]) -> None:
    """RBAC: a WebSocket GET of pods/exec needs `create` too (1.32's AuthorizePodWebsocketUpgradeCreatePermission)."""
    ns = wl["namespace"]
    assert _kubectl(wl, "create", "serviceaccount", "execer").returncode == 0
    token = _kubectl(wl, "create", "token", "execer").stdout.strip()
    grants = [
        ("create", "role", "exec-get", "--verb=get", "--resource=pods,pods/exec"),
        ("create", "rolebinding", "exec-get", "--role=exec-get", f"--serviceaccount={ns}:execer"),
    ]
    for grant in grants:
        assert _kubectl(wl, *grant).returncode == 0
    denied = _kubectl(wl, "--token", token, "exec", "shell", "-c", "main", "--", "true")
    assert denied.returncode == 1
    assert (
        f'pods "shell" is forbidden: User "system:serviceaccount:{ns}:execer" cannot create resource "pods/exec"' in denied.stderr
    )
    for grant in [
        ("create", "role", "exec-create", "--verb=create", "--resource=pods/exec"),
        ("create", "rolebinding", "exec-create", "--role=exec-create", f"--serviceaccount={ns}:execer"),
    ]:
        assert _kubectl(wl, *grant).returncode == 0
    allowed = poll_until(
        lambda: (r := _kubectl(wl, "--token", token, "exec", "shell", "-c", "main", "--", "echo", "in")).returncode == 0 and r,
        timeout=10,
        what="exec allowed by the new Role",
    )
    assert allowed.stdout == "in\n"


def test_exec_without_a_kubelet(cluster: ClusterProcess) -> None:
    """The API-only cluster stores pods but runs none: exec is refused with 503 before any upgrade."""
    ns = unique("nokubelet")
    kubectl(cluster.kubeconfig, "create", "namespace", ns)
    kubectl(cluster.kubeconfig, "-n", ns, "run", "p", f"--image={BASE_IMAGE}")
    result = kubectl(cluster.kubeconfig, "-n", ns, "exec", "p", "--", "true", check=False)
    assert result.returncode == 1
    assert "no kubelet runs in this cluster" in result.stderr
    kubectl(cluster.kubeconfig, "delete", "namespace", ns, "--wait=false")


# ----- attach and cp -----


def test_attach_streams_the_containers_stdio(wl: dict[str, Any]) -> None:
    env = dict(os.environ, KUBECACHEDIR=str(wl["kubeconfig"].parent / "kubecache"))
    argv = [KUBECTL, "--kubeconfig", str(wl["kubeconfig"]), "-n", wl["namespace"], "attach", "-i", "echoer"]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"hello\n")
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready, "no output from kubectl attach"
        assert proc.stdout.readline() == b"got hello\n"
    finally:
        proc.kill()
        proc.wait()
    logs = _kubectl(wl, "logs", "echoer")
    assert "got hello" in logs.stdout  # what attach showed is the container's own output


def test_cp_both_directions(wl: dict[str, Any], tmp_path: Path) -> None:
    source = tmp_path / "tree"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_text("alpha\n")
    (source / "sub" / "b.bin").write_bytes(bytes(range(256)) * 1024)
    up = _kubectl(wl, "cp", str(source), "shell:/tmp/tree", "-c", "main")
    assert up.returncode == 0, up.stderr
    assert _kubectl(wl, "exec", "shell", "-c", "main", "--", "cat", "/tmp/tree/a.txt").stdout == "alpha\n"
    back = tmp_path / "back"
    down = _kubectl(wl, "cp", "shell:/tmp/tree", str(back), "-c", "main")
    assert down.returncode == 0, down.stderr
    assert (back / "a.txt").read_text() == "alpha\n"
    assert (back / "sub" / "b.bin").read_bytes() == bytes(range(256)) * 1024


# ----- port-forward -----


def _start_port_forward(wl: dict[str, Any], local: int, remote: int) -> subprocess.Popen[str]:
    env = dict(os.environ, KUBECACHEDIR=str(wl["kubeconfig"].parent / "kubecache"))
    argv = [KUBECTL, "--kubeconfig", str(wl["kubeconfig"]), "-n", wl["namespace"], "port-forward", "pod/web", f"{local}:{remote}"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 20)
    assert ready, "kubectl port-forward printed nothing"
    assert proc.stdout.readline().startswith(f"Forwarding from 127.0.0.1:{local} -> {remote}")
    return proc


def test_kubectl_port_forward(wl: dict[str, Any]) -> None:
    payload = bytes(range(256)) * 8192  # 2 MiB: many SPDY DATA frames
    write = "open('/tmp/big', 'wb').write(bytes(range(256)) * 8192)"
    assert _kubectl(wl, "exec", "web", "--", "python3", "-c", write).returncode == 0
    local = free_port()
    proc = _start_port_forward(wl, local, wl["port"])
    try:
        for _ in range(2):  # two connections: two stream pairs in one session
            with urllib.request.urlopen(f"http://127.0.0.1:{local}/big", timeout=20) as resp:
                body = resp.read()
            assert hashlib.sha256(body).digest() == hashlib.sha256(payload).digest()
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_kubectl_port_forward_to_a_closed_port(wl: dict[str, Any]) -> None:
    closed, local = free_port(), free_port()
    proc = _start_port_forward(wl, local, closed)
    try:
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=10).read()
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert f"error forwarding port {closed} to pod web" in stderr
    assert "connection refused" in stderr
    assert proc.returncode == 1  # kubectl 1.32 ends the session: "lost connection to pod"


def test_kubectl_over_plain_spdy(wl: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """kubectl's fallback transport (and older kubectls'): POST + `Upgrade: SPDY/3.1`, for exec and port-forward."""
    monkeypatch.setenv("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")
    monkeypatch.setenv("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")
    failed = _kubectl(wl, "exec", "shell", "-c", "main", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (failed.returncode, failed.stdout) == (3, "out\n"), failed.stderr
    assert "err\n" in failed.stderr and "command terminated with exit code 3" in failed.stderr
    piped = _kubectl(wl, "exec", "-i", "shell", "-c", "main", "--", "wc", "-l", input="a\nb\n")
    assert (piped.returncode, piped.stdout.strip()) == (0, "2"), piped.stderr
    local = free_port()
    proc = _start_port_forward(wl, local, wl["port"])
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=20) as resp:
            assert b"Directory listing for /" in resp.read()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_python_client_port_forward(wl: dict[str, Any]) -> None:
    port = wl["port"]
    pf = portforward(wl["core"].connect_get_namespaced_pod_portforward, "web", wl["namespace"], ports=str(port))
    try:
        sock = pf.socket(port)
        sock.setblocking(True)
        sock.sendall(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        sock.close()
        assert data.startswith(b"HTTP/1.0 200 OK")
        assert b"Directory listing for /" in data
        assert pf.error(port) is None
    finally:
        pf.close()


# ----- the SPDY framer -----


@pytest.mark.unit
def test_spdy_framer_reads_client_frames_and_writes_replies() -> None:
    """Frames as spdystream writes them (one deflate context, SYNC_FLUSH per block), split at any byte."""
    deflate = zlib.compressobj(9, zdict=spdy.HEADER_DICTIONARY)

    def syn_stream(stream_id: int, headers: dict[str, str]) -> bytes:
        block = struct.pack(">I", len(headers))
        for name, value in headers.items():
            block += struct.pack(">I", len(name)) + name.encode() + struct.pack(">I", len(value)) + value.encode()
        body = struct.pack(">IIBB", stream_id, 0, 0, 0) + deflate.compress(block) + deflate.flush(zlib.Z_SYNC_FLUSH)
        return struct.pack(">HHI", 0x8003, spdy.SYN_STREAM, len(body)) + body

    wire = (
        syn_stream(1, {"streamtype": "error", "port": "80", "requestid": "0"})
        + syn_stream(3, {"streamtype": "data", "port": "80", "requestid": "0"})
        + spdy.Framer.data(3, b"GET", fin=True)
        + struct.pack(">HHII", 0x8003, spdy.PING, 4, 7)
    )
    framer = spdy.Framer()
    frames = [f for i in range(len(wire)) for f in framer.feed(wire[i : i + 1])]
    assert [(f.kind, f.stream_id) for f in frames] == [(spdy.SYN_STREAM, 1), (spdy.SYN_STREAM, 3), (0, 3), (spdy.PING, 0)]
    assert frames[1].headers == {"streamtype": ["data"], "port": ["80"], "requestid": ["0"]}
    assert frames[2].data == b"GET" and frames[2].fin
    assert frames[3].value == 7
    # what this side writes, read back by a peer's inflater
    writer = spdy.Framer()
    reply = writer.syn_reply(3) + writer.syn_reply(5)
    inflate = zlib.decompressobj(zdict=spdy.HEADER_DICTIONARY)
    first_len = struct.unpack(">I", reply[4:8])[0] & 0xFFFFFF
    assert reply[:4] == struct.pack(">HH", 0x8003, spdy.SYN_REPLY)
    assert struct.unpack(">I", reply[8:12])[0] == 3
    assert inflate.decompress(reply[12 : 8 + first_len]) == b"\x00\x00\x00\x00"
    assert inflate.decompress(reply[8 + first_len + 12 :]) == b"\x00\x00\x00\x00"
    assert len(spdy.HEADER_DICTIONARY) == 1423
