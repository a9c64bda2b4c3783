"""Generate `protos.json`, the protobuf field table `protobuf.py` decodes request bodies with.

    python -m bootstrap.cluster.protogen --api GIT_DIR --apimachinery GIT_DIR [--ref v0.32.9]

GIT_DIR: clones (or bare git directories) of github.com/kubernetes/api and kubernetes/apimachinery; the
files are read at `--ref` (both repositories tag v0.<minor>.<patch> for Kubernetes 1.<minor>.<patch>).

Two sources, joined by (message, field number):
- `generated.proto` (go-to-protobuf's output): every message's fields with their number, proto type
  (scalar, message, `map<K, V>`) and `repeated`;
- the Go structs in the package's `*.go` files: the same fields' struct tags `json:"name,omitempty"
  protobuf:"bytes,N,opt,name=..."` and Go type, i.e. the JSON name (which generated.proto does not carry),
  `omitempty`, whether the Go field is a pointer (a pointer's zero value is sent and meaningful; a plain
  field's zero value is always sent and, with omitempty, means "absent") and `json:",inline"` (e.g.
  Volume.VolumeSource: a nested message on the wire, flattened into the parent in JSON).

Output (compact JSON): {"ref": ..., "packages": {apiVersion: proto package},
"messages": {"pkg.Message": {"N": [jsonName, type, flags]}}} where type is a scalar name ("string",
"int32", "bool", "bytes", ...), a message's full name, or ["map", keyType, valueType]; flags is a string
of "r" (repeated), "p" (Go pointer), "o" (omitempty), "i" (inline).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("protos.json")
DEFAULT_REF = "v0.32.9"  # Kubernetes 1.32

# (repository, directory, apiVersion or None for the shared apimachinery packages)
PACKAGES: list[tuple[str, str, str | None]] = [
    ("apimachinery", "pkg/apis/meta/v1", None),
    ("apimachinery", "pkg/runtime", None),
    ("apimachinery", "pkg/runtime/schema", None),
    ("apimachinery", "pkg/util/intstr", None),
    ("apimachinery", "pkg/api/resource", None),
    ("api", "core/v1", "v1"),
    ("api", "apps/v1", "apps/v1"),
    ("api", "batch/v1", "batch/v1"),
    ("api", "rbac/v1", "rbac.authorization.k8s.io/v1"),
    ("api", "authentication/v1", "authentication.k8s.io/v1"),
    ("api", "authorization/v1", "authorization.k8s.io/v1"),
    ("api", "coordination/v1", "coordination.k8s.io/v1"),
    ("api", "policy/v1", "policy/v1"),
    ("api", "autoscaling/v1", "autoscaling/v1"),
    ("api", "autoscaling/v2", "autoscaling/v2"),
]

_MESSAGE = re.compile(r"^message (\w+) \{")
_FIELD = re.compile(r"^\s+(optional|repeated)\s+([\w.]+)\s+(\w+)\s*=\s*(\d+)")
_MAP = re.compile(r"^\s+map<\s*([\w.]+)\s*,\s*([\w.]+)\s*>\s+(\w+)\s*=\s*(\d+)")
_STRUCT = re.compile(r"^type (\w+) struct \{")
_GO_FIELD = re.compile(r"^\s+(?:(\w+)\s+)?([*\[\]\w.]+)\s+`([^`]*)`")
_SCALARS = {"string", "bytes", "bool", "int32", "int64", "uint32", "uint64", "sint32", "sint64", "double", "float"}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(_git_dir(repo)), *args], check=True, capture_output=True, text=True).stdout


def _git_dir(repo: Path) -> Path:
    return repo / ".git" if (repo / ".git").exists() else repo


def _qualify(name: str, package: str) -> str:
    if name in _SCALARS:
        return name
    return name[1:] if name.startswith(".") else f"{package}.{name}"


def parse_proto(text: str) -> tuple[str, dict[str, dict[int, tuple[str, object, bool]]]]:
    """(package, {message: {number: (proto name, type, repeated)}}) of one generated.proto."""
    package = re.search(r"^package ([\w.]+);", text, re.M)
    assert package, "no package"
    pkg = package.group(1)
    messages: dict[str, dict[int, tuple[str, object, bool]]] = {}
    current: dict[int, tuple[str, object, bool]] | None = None
    for line in text.splitlines():
        if m := _MESSAGE.match(line):
            current = messages.setdefault(f"{pkg}.{m.group(1)}", {})
        elif line.startswith("}"):
            current = None
        elif current is not None and (m := _FIELD.match(line)):
            current[int(m.group(4))] = (m.group(3), _qualify(m.group(2), pkg), m.group(1) == "repeated")
        elif current is not None and (m := _MAP.match(line)):
            current[int(m.group(4))] = (m.group(3), ["map", _qualify(m.group(1), pkg), _qualify(m.group(2), pkg)], False)
    return pkg, messages


def parse_go(text: str) -> dict[str, dict[int, tuple[str, str]]]:
    """{struct: {protobuf number: (json tag, Go type)}} of one Go file."""
    structs: dict[str, dict[int, tuple[str, str]]] = {}
    current: dict[int, tuple[str, str]] | None = None
    for line in text.splitlines():
        if m := _STRUCT.match(line):
            current = structs.setdefault(m.group(1), {})
        elif line.startswith("}"):
            current = None
        elif current is not None and (m := _GO_FIELD.match(line)):
            tag = m.group(3)
            proto = re.search(r'protobuf:"(\w+),(\d+),', tag)
            if proto is None:
                continue
            js = re.search(r'json:"([^"]*)"', tag)
            current[int(proto.group(2))] = (js.group(1) if js else "", m.group(2))
    return structs


def generate(api: Path, apimachinery: Path, ref: str) -> dict[str, Any]:
    repos = {"api": api, "apimachinery": apimachinery}
    packages: dict[str, str] = {}
    messages: dict[str, dict[str, list[object]]] = {}
    for repo_name, directory, api_version in PACKAGES:
        repo = repos[repo_name]
        pkg, protos = parse_proto(_git(repo, "show", f"{ref}:{directory}/generated.proto"))
        if api_version:
            packages[api_version] = pkg
        go: dict[str, dict[int, tuple[str, str]]] = {}
        for name in _git(repo, "ls-tree", "--name-only", f"{ref}:{directory}").split():
            if name.endswith(".go") and not name.endswith("_test.go") and "generated" not in name:
                for struct, fields in parse_go(_git(repo, "show", f"{ref}:{directory}/{name}")).items():
                    go.setdefault(struct, {}).update(fields)
        for full, proto_fields in protos.items():
            tags = go.get(full.rsplit(".", 1)[1], {})
            table: dict[str, list[object]] = {}
            for number, (proto_name, typ, repeated) in sorted(proto_fields.items()):
                tag, go_type = tags.get(number, (f"{proto_name},omitempty", ""))
                json_name, _, options = tag.partition(",")
                flags = "r" if repeated else ""
                flags += "p" if go_type.startswith("*") else ""
                flags += "o" if "omitempty" in options.split(",") else ""
                flags += "i" if not json_name and "inline" in options.split(",") else ""
                table[str(number)] = [json_name or proto_name, typ, flags]
            messages[full] = table
    return {"ref": ref, "packages": packages, "messages": messages}


def dumps(table: dict[str, Any]) -> str:
    """Compact JSON, one message a line (readable diffs when the table is regenerated)."""

    def compact(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"), sort_keys=True)

    lines = [f"{compact(name)}:{compact(fields)}" for name, fields in sorted(table["messages"].items())]
    head = ",".join(f"{compact(k)}:{compact(table[k])}" for k in sorted(table) if k != "messages")
    return "{" + head + ',"messages":{\n' + ",\n".join(lines) + "\n}}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", type=Path, required=True, help="kubernetes/api clone or git directory")
    parser.add_argument("--apimachinery", type=Path, required=True, help="kubernetes/apimachinery clone or git directory")
    parser.add_argument("--ref", default=DEFAULT_REF)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    table = generate(args.api, args.apimachinery, args.ref)
    args.out.write_text(dumps(table))
    print(f"{args.out}: {len(table['messages'])} messages")


if __name__ == "__main__":
    main()
