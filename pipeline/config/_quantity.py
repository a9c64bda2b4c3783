"""Kubernetes resource quantities ("500m", "0.5", "256Mi", "129e6"), parsed to numbers.

Validating them here, with the same grammar the API server uses, turns a typo
into a config error before a build starts instead of a rejected Deployment
after it. Suffixes that are legal but almost always mistakes are refused:
binary suffixes on CPU, and "m" (milli-bytes) on memory.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

_NUMBER = r"(?P<number>(?:\d+(?:\.\d*)?|\.\d+))"
_EXPONENT = r"[eE](?P<exponent>[+-]?\d+)"

_CPU = re.compile(rf"{_NUMBER}(?:(?P<suffix>m)|{_EXPONENT})?")
_MEMORY = re.compile(rf"{_NUMBER}(?:(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)|{_EXPONENT})?")

_MULTIPLIERS: dict[str, Decimal] = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}

CPU_RULE = 'a positive CPU quantity like "500m", "0.5" or "2"'
MEMORY_RULE = 'a positive memory quantity like "256Mi", "1Gi" or "128974848"'


def _parse(pattern: re.Pattern[str], text: str, rule: str) -> Decimal:
    """The quantity's value in base units, or ValueError naming the rule."""
    match = pattern.fullmatch(text)
    if match is None:
        raise ValueError(f"must be {rule}")
    value = Decimal(match["number"])
    if match["exponent"] is not None:
        value = value.scaleb(int(match["exponent"]))
    else:
        value *= _MULTIPLIERS[match["suffix"] or ""]
    if value <= 0:
        raise ValueError(f"must be {rule}")
    return value


def parse_cpu(text: str) -> Decimal:
    """CPU cores: "500m" -> 0.5, "2" -> 2. Raises ValueError if not a CPU quantity."""
    return _parse(_CPU, text, CPU_RULE)


def parse_memory(text: str) -> Decimal:
    """Memory in bytes: "1Ki" -> 1024, "129e6" -> 129000000. Raises ValueError if not memory."""
    return _parse(_MEMORY, text, MEMORY_RULE)


def cpu_millicores(text: str) -> int:
    """Whole millicores, rounded up as Kubernetes does ("0.0001" -> 1)."""
    return math.ceil(parse_cpu(text) * 1000)


def memory_bytes(text: str) -> int:
    """Whole bytes, rounded up as Kubernetes does ("0.5" -> 1)."""
    return math.ceil(parse_memory(text))
