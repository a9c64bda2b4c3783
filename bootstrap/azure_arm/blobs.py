"""A blob-storage-like endpoint on the imitation itself: build-source uploads and run logs, behind SAS query strings.

URLs look like Azure Storage SAS URLs,
`https://127.0.0.1:PORT/blob/<registry>/source/<yyyymmddHHMM>/<uuid>.tar.gz?sv=...&st=...&se=...&sr=b&sp=cw&spr=https&sig=...`,
and are checked like them: the signature (HMAC of permissions, start, expiry,
path, version with the seed's `sas_key`), the validity window and the
permission letter (`c`/`w` to PUT, `r` to GET). Errors are Storage's XML with
`x-ms-error-code`. `PUT` needs `x-ms-blob-type: BlockBlob`; `GET` honours
`Range`/`x-ms-range` (206 with `Content-Range`, 416 past the end), so a client
can follow a run log while the run writes it.

Metadata: a blob's user metadata (a `<blob>.meta.json` file next to it, written by
builds.py) comes back as `x-ms-meta-<name>` headers on Get Blob and on Get Blob
Properties (`HEAD`, with the blob's `Content-Length`), as Azure Storage returns it.
A run log carries `Complete: <status>` once the run's agent has written all of it:
`az acr` reads the log until that mark (azure-cli
src/azure-cli/azure/cli/command_modules/acr/_stream_utils.py, `_blob_is_not_complete`,
which asks `get_blob_properties` between reads). The metadata is read before the
bytes, so an answer that carries the mark carries the whole log.
"""

from __future__ import annotations

import base64
import datetime
import email.utils
import hashlib
import hmac
import json
import re
import urllib.parse
import uuid
from pathlib import Path

from aiohttp import web

SAS_VERSION = "2024-11-04"
SAS_LIFETIME = datetime.timedelta(hours=1)


def _fmt(t: datetime.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _signature(key: str, *, permissions: str, start: str, expiry: str, path: str, version: str) -> str:
    string_to_sign = "\n".join((permissions, start, expiry, path, version))
    return base64.b64encode(hmac.new(bytes.fromhex(key), string_to_sign.encode(), hashlib.sha256).digest()).decode()


def sas_url(base_url: str, key: str, blob_path: str, *, permissions: str) -> str:
    """`base_url/blob/<blob_path>?<SAS>` valid for an hour."""
    now = datetime.datetime.now(datetime.UTC)
    start, expiry = _fmt(now - datetime.timedelta(minutes=5)), _fmt(now + SAS_LIFETIME)
    path = "/blob/" + blob_path
    query = {
        "sv": SAS_VERSION,
        "st": start,
        "se": expiry,
        "sr": "b",
        "sp": permissions,
        "spr": "https",
        "sig": _signature(key, permissions=permissions, start=start, expiry=expiry, path=path, version=SAS_VERSION),
    }
    return f"{base_url}{urllib.parse.quote(path)}?{urllib.parse.urlencode(query)}"


def _storage_error(status: int, code: str, message: str) -> web.Response:
    request_id = str(uuid.uuid4())
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f"<Error><Code>{code}</Code><Message>{message}\nRequestId:{request_id}\n"
        f"Time:{datetime.datetime.now(datetime.UTC).isoformat()}</Message></Error>"
    )
    return web.Response(
        status=status,
        body=body.encode(),
        content_type="application/xml",
        headers={"x-ms-error-code": code, "x-ms-request-id": request_id, "x-ms-version": SAS_VERSION},
    )


def _check_sas(request: web.Request, key: str, needed: str) -> web.Response | None:
    q = request.query
    try:
        permissions, start, expiry, version, sig = q["sp"], q["st"], q["se"], q["sv"], q["sig"]
    except KeyError:
        return _storage_error(
            403, "AuthenticationFailed", "Server failed to authenticate the request. The SAS query string is incomplete."
        )
    expected = _signature(key, permissions=permissions, start=start, expiry=expiry, path=request.path, version=version)
    if not hmac.compare_digest(expected, sig):
        return _storage_error(
            403,
            "AuthenticationFailed",
            "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.",
        )
    now = _fmt(datetime.datetime.now(datetime.UTC))
    if not (start <= now <= expiry):
        return _storage_error(
            403, "AuthenticationFailed", f"Signed expiry time [{expiry}] must be after signed start time and the current time."
        )
    if not any(p in permissions for p in needed):
        return _storage_error(
            403,
            "AuthorizationPermissionMismatch",
            "This request is not authorized to perform this operation using this permission.",
        )
    return None


def blob_file(state_dir: Path, blob_path: str) -> Path:
    root = (state_dir / "blobs").resolve()
    path = (root / blob_path).resolve()
    if root not in path.parents:
        raise ValueError(f"blob path escapes the store: {blob_path}")
    return path


def _meta_file(path: Path) -> Path:
    return path.with_name(path.name + ".meta.json")


def set_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Set the blob's user metadata (Set Blob Metadata): replaced whole, written atomically."""
    tmp = path.with_name(path.name + ".meta.tmp")
    tmp.write_text(json.dumps(metadata))
    tmp.replace(_meta_file(path))


def metadata(path: Path) -> dict[str, str]:
    try:
        return {str(k): str(v) for k, v in json.loads(_meta_file(path).read_text()).items()}
    except (OSError, ValueError):
        return {}


def _headers(path: Path) -> dict[str, str]:
    stat = path.stat()
    return {
        "ETag": f'"0x{int(stat.st_mtime_ns):X}"',
        "Last-Modified": email.utils.formatdate(stat.st_mtime, usegmt=True),
        "x-ms-request-id": str(uuid.uuid4()),
        "x-ms-version": SAS_VERSION,
        "Accept-Ranges": "bytes",
    }


async def handle_put(request: web.Request) -> web.Response:
    app = request.app
    if denied := _check_sas(request, app["seed"].sas_key, "cw"):
        return denied
    if request.headers.get("x-ms-blob-type") != "BlockBlob":
        return _storage_error(
            400,
            "MissingRequiredHeader",
            "An HTTP header that's mandatory for this request is not specified: x-ms-blob-type (BlockBlob).",
        )
    path = blob_file(app["state_dir"], request.match_info["path"])
    path.parent.mkdir(parents=True, exist_ok=True)
    md5 = hashlib.md5()
    tmp = path.with_name(path.name + ".uploading")
    with tmp.open("wb") as f:
        async for chunk in request.content.iter_chunked(1 << 16):
            md5.update(chunk)
            f.write(chunk)
    tmp.replace(path)
    headers = _headers(path)
    headers.update({"Content-MD5": base64.b64encode(md5.digest()).decode(), "x-ms-request-server-encrypted": "true"})
    return web.Response(status=201, headers=headers)


_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


async def handle_get(request: web.Request) -> web.StreamResponse:
    app = request.app
    if denied := _check_sas(request, app["seed"].sas_key, "r"):
        return denied
    path = blob_file(app["state_dir"], request.match_info["path"])
    if not path.is_file():
        return _storage_error(404, "BlobNotFound", "The specified blob does not exist.")
    meta = metadata(path)  # before the bytes: a mark read here means the bytes below are all of the log
    data = path.read_bytes()
    headers = _headers(path)
    headers.update({f"x-ms-meta-{k}": v for k, v in meta.items()})
    headers["x-ms-blob-type"] = "AppendBlob" if "/logs/" in request.path else "BlockBlob"
    content_type = "text/plain; charset=utf-8" if path.suffix == ".log" else "application/octet-stream"
    range_header = request.headers.get("x-ms-range") or request.headers.get("Range")
    if range_header:
        match = _RANGE.match(range_header.strip())
        if not match:
            return _storage_error(
                400, "InvalidHeaderValue", f"The value for one of the HTTP headers is not in the correct format: {range_header}"
            )
        start = int(match.group(1))
        end = min(int(match.group(2)) if match.group(2) else len(data) - 1, len(data) - 1)
        if start >= len(data):
            response = _storage_error(416, "InvalidRange", "The range specified is invalid for the current size of the resource.")
            response.headers["Content-Range"] = f"bytes */{len(data)}"
            return response
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        return web.Response(
            status=206,
            body=data[start : end + 1],
            headers=headers,
            content_type=content_type.split(";")[0],
            charset="utf-8" if "charset" in content_type else None,
        )
    return web.Response(
        status=200,
        body=data,
        headers=headers,
        content_type=content_type.split(";")[0],
        charset="utf-8" if "charset" in content_type else None,
    )
