"""What every creating PUT checks the same way: a known location, tags, no move to another location."""

from __future__ import annotations

from typing import Any

from bootstrap.azure_arm.arm.context import ArmError

# Regions a resource may be created in (ARM's names, lower case without spaces).
LOCATIONS = frozenset(
    {"eastus", "eastus2", "westus", "westus2", "westus3", "centralus", "northcentralus", "southcentralus", "westcentralus",
     "canadacentral", "brazilsouth", "northeurope", "westeurope", "uksouth", "ukwest", "francecentral",
     "germanywestcentral", "swedencentral", "switzerlandnorth", "norwayeast", "polandcentral", "italynorth",
     "eastasia", "southeastasia", "japaneast", "japanwest", "koreacentral", "australiaeast", "centralindia",
     "southafricanorth", "uaenorth"}
)  # fmt: skip


def normal_location(value: Any) -> str:
    """ARM's normal form of a location ("West Europe" -> "westeurope")."""
    return str(value or "").replace(" ", "").lower()


def known_location(value: Any, what: str) -> str:
    location = normal_location(value)
    if not location:
        raise ArmError(400, "LocationRequired", "The location property is required for this definition.")
    if location not in LOCATIONS and what == "resourceGroups":  # ARM's own answer for a group, not a provider's
        raise ArmError(
            400,
            "LocationNotAvailableForResourceGroup",
            f"The provided location '{value}' is not available for resource group. "
            f"List of available regions is '{','.join(sorted(LOCATIONS))}'.",
        )
    if location not in LOCATIONS:
        raise ArmError(
            400,
            "LocationNotAvailableForResourceType",
            f"The provided location '{value}' is not available for resource type '{what}'. "
            f"List of available regions for the resource type is '{','.join(sorted(LOCATIONS))}'.",
        )
    return location


def moved(kind: str, name: str, group: str, old: str, new: str) -> ArmError:
    """ARM's answer to a PUT that would move an existing resource to another location."""
    return ArmError(
        400,
        "InvalidResourceLocation",
        f"The resource '{name}' already exists in location '{old}' in resource group '{group}'. "
        f"A resource with the same name cannot be created in location '{new}'. Please select a new resource name.",
    )


def tags(body: dict[str, Any]) -> dict[str, str]:
    found = body.get("tags") or {}
    if not isinstance(found, dict):
        raise ArmError(400, "InvalidRequestContent", "The 'tags' property must be an object of strings.")
    return {str(k): str(v) for k, v in found.items()}
