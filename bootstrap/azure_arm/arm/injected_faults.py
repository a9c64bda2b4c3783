"""An injected HTTP fault (`POST /_imitation/faults`, see ../faults.py) as the ARM error it stands for."""

from __future__ import annotations

import datetime
import re

from aiohttp import web

from bootstrap.azure_arm.arm.context import ArmError
from bootstrap.azure_arm.faults import HttpFault
from bootstrap.azure_arm.state import Seed

# (code, message) of an injected 4xx fault that names neither.
_GENERIC_ERRORS = {
    400: ("BadRequest", "The request is invalid (injected fault)."),
    404: ("ResourceNotFound", "The resource was not found (injected fault)."),
    409: (
        "Conflict",
        "The request conflicts with the current state of the resource: another operation on it is in progress "
        "(injected fault). Retry once it has completed.",
    ),
}


def fault_error(fault: HttpFault, request: web.Request, seed: Seed, headers: dict[str, str]) -> ArmError:
    """429 TooManyRequests (Retry-After), a 4xx with the fault's or ARM's generic code, or a 500/503 outage."""
    if fault.status == 429:
        return ArmError(
            429,
            "TooManyRequests",
            "The request is being throttled as the limit has been reached for operation type - "
            f"{'Read' if request.method == 'GET' else 'Write'}. For more information, see - https://aka.ms/srpthrottlinglimits",
            {"Retry-After": str(fault.retry_after or 1)},
        )
    if fault.status < 500:  # 400/409/...: the code and message of the fault, else ARM's generic ones
        code, message = _GENERIC_ERRORS.get(fault.status, ("BadRequest", "The request is invalid."))
        registry = re.search(r"/registries/([^/]+)", request.path)  # a fault's message may name them (tasksNotAllowed)
        message = (fault.message or message).replace("{registry}", registry.group(1) if registry else "")
        return ArmError(fault.status, fault.code or code, message.replace("{subscription}", seed.subscription_id))
    return ArmError(fault.status, "InternalServerError" if fault.status == 500 else "ServiceUnavailable",
                    "Encountered internal server error. Diagnostic information: timestamp "
                    f"'{datetime.datetime.now(datetime.UTC):%Y%m%dT%H%M%SZ}', subscription id '{seed.subscription_id}', "
                    f"tracking id '{headers['x-ms-request-id']}', request correlation id '{headers['x-ms-correlation-request-id']}'.",
                    {"Retry-After": str(fault.retry_after)} if fault.retry_after else None)  # fmt: skip
