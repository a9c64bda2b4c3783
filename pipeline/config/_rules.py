"""The naming and format rules config values must follow, each with its English wording.

Each rule mirrors the system that will later reject the value (Kubernetes,
Azure, Temporal), so the mistake is reported while it is still a line in
config.toml rather than a failed deployment.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlsplit

from pipeline.config._reader import Rule

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOST = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")
_RESOURCE_GROUP = re.compile(r"[-\w.()]{0,89}[-\w()]")
_LOCATION = re.compile(r"[a-z0-9]+")
_ACR_NAME = re.compile(r"[A-Za-z0-9]{5,50}")
_AKS_NAME = re.compile(r"[A-Za-z0-9]([-_A-Za-z0-9]{0,61}[A-Za-z0-9])?")


def is_dns_label(text: str) -> bool:
    """Kubernetes' DNS-1123 label: what namespaces and Deployment names must be."""
    return len(text) <= 63 and _DNS_LABEL.fullmatch(text) is not None


def is_host_port(text: str) -> bool:
    """ "host:port" with a plausible host and a port from 1 to 65535; "[::1]:7233" too."""
    host, sep, port = text.rpartition(":")
    return bool(sep) and _HOST.fullmatch(host) is not None and _is_port(port)


def _is_port(text: str) -> bool:
    return text.isdigit() and 1 <= int(text) <= 65535


def is_url(text: str, schemes: tuple[str, ...] = ("http", "https")) -> bool:
    """An absolute URL with one of `schemes` and a host (and a valid port, if any)."""
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises ValueError for a port out of range
    except ValueError:
        return False
    return parts.scheme in schemes and bool(parts.hostname) and not any(c.isspace() for c in text)


def is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text.lower()
    except ValueError:
        return False


def is_zero(value: int | str) -> bool:
    """Whether a validated (normalised) surge/unavailable value means "none at all"."""
    return value in (0, "0%")


def _no_space(text: str) -> bool:
    return bool(text) and not any(c.isspace() for c in text)


DNS_LABEL = Rule(
    'a DNS-1123 label (lowercase letters, digits and "-", starting and ending with a letter or digit, at most 63 characters)',
    is_dns_label,
)
HOST_PORT = Rule("host:port", is_host_port)
HTTP_URL = Rule("an http(s) URL with a host", is_url)
HTTPS_URL = Rule("an https URL with a host", lambda t: is_url(t, ("https",)))
OPTIONAL_HTTPS_URL = Rule('an https URL with a host, or ""', lambda t: t == "" or is_url(t, ("https",)))
_MANAGED_IDENTITY_NAME = re.compile(r"[A-Za-z0-9][-_A-Za-z0-9]{2,127}")
MANAGED_IDENTITY_NAME = Rule(
    "a managed identity name: 3-128 letters, digits, '-' and '_', starting with a letter or digit",
    lambda t: _MANAGED_IDENTITY_NAME.fullmatch(t) is not None,
)
TASK_QUEUE = Rule("a non-empty task queue name without whitespace", _no_space)
NAMESPACE = Rule("a non-empty Temporal namespace without whitespace", _no_space)
API_KEY_ENV = Rule(
    'the NAME of the env var holding the API key (letters, digits and "_") or "", never the key itself',
    lambda t: t == "" or _ENV_NAME.fullmatch(t) is not None,
    echo=False,
)
OPTIONAL_UUID = Rule(
    'a subscription UUID like "00000000-0000-0000-0000-000000000000"',
    lambda t: t == "" or is_uuid(t),
)
RESOURCE_GROUP = Rule(
    'an Azure resource group name (1-90 letters, digits, "_", "-", ".", "(" or ")", not ending with ".")',
    lambda t: _RESOURCE_GROUP.fullmatch(t) is not None,
)
LOCATION = Rule('an Azure region name like "eastus"', lambda t: _LOCATION.fullmatch(t) is not None)
ACR_NAME = Rule(
    "5-50 letters and digits (the Azure Container Registry naming rule)",
    lambda t: _ACR_NAME.fullmatch(t) is not None,
)
OPTIONAL_ACR_NAME = Rule(
    '5-50 letters and digits (the Azure Container Registry naming rule), or "" for a name derived from '
    "[azure].subscription_id and [azure].resource_group",
    lambda t: t == "" or _ACR_NAME.fullmatch(t) is not None,
)
LOGIN_SERVER = Rule(
    'a registry host like "myregistry.azurecr.io" (no scheme), or "" for the default',
    lambda t: t == "" or _HOST.fullmatch(t) is not None or is_host_port(t),
)
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
OPTIONAL_SECRET_NAME = Rule(
    'the NAME of a Kubernetes Secret (a DNS-1123 subdomain: lowercase letters, digits, "-" and ".", at most 253) or ""',
    lambda t: t == "" or (len(t) <= 253 and _DNS_SUBDOMAIN.fullmatch(t) is not None),
)
AKS_NAME = Rule(
    'an AKS cluster name (1-63 letters, digits, "-" or "_", starting and ending with a letter or digit)',
    lambda t: _AKS_NAME.fullmatch(t) is not None,
)
BUILD_TARGET = Rule('a Dockerfile stage name without whitespace, or ""', lambda t: not any(c.isspace() for c in t))
NON_EMPTY_PATH = Rule("a non-empty path", bool)
_SECRET_KEY_REF = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/[-._a-zA-Z0-9]{1,253}")
SECRET_KEY_REF = Rule(
    'a Kubernetes Secret and key as "secret-name/key" or "", never the key itself',
    lambda t: t == "" or _SECRET_KEY_REF.fullmatch(t) is not None,
    echo=False,
)
