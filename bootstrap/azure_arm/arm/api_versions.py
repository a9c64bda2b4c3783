"""The `api-version`s each resource provider's operations accept (anything else is 400 NoRegisteredProviderFound)."""

from __future__ import annotations

REGISTRY_VERSIONS = frozenset(
    {
        "2019-05-01", "2019-12-01-preview", "2020-11-01-preview", "2021-06-01-preview", "2021-08-01-preview",
        "2021-09-01", "2021-12-01-preview", "2022-02-01-preview", "2022-12-01", "2023-01-01-preview", "2023-06-01-preview",
        "2023-07-01", "2023-08-01-preview", "2023-11-01-preview", "2024-11-01-preview", "2025-03-01-preview", "2025-04-01",
        "2025-05-01-preview", "2025-06-01-preview", "2025-11-01",
    }
)  # fmt: skip
TASK_VERSIONS = frozenset({"2018-09-01", "2019-04-01", "2019-06-01-preview", "2025-03-01-preview"})
AKS_VERSIONS = frozenset(
    {f"{y}-{m:02d}-01" for y in (2024, 2025, 2026) for m in range(1, 13) if (y, m) <= (2026, 8)}
    | {"2026-08-01-preview", "2026-06-02-preview"}
)
RESOURCE_VERSIONS = frozenset(
    {"2019-10-01", "2020-06-01", "2020-10-01", "2021-01-01", "2021-04-01", "2022-09-01", "2023-07-01", "2024-03-01",
     "2024-07-01", "2024-11-01", "2025-03-01", "2025-04-01"}
)  # fmt: skip
AUTHORIZATION_VERSIONS = frozenset(
    {"2015-07-01", "2018-01-01-preview", "2018-09-01-preview", "2020-03-01-preview", "2020-04-01-preview",
     "2020-08-01-preview", "2020-10-01-preview", "2022-01-01-preview", "2022-04-01"}
)  # fmt: skip
# azure-mgmt-msi 7.1.0's ManagedServiceIdentityClient sends 2024-11-30 by default (its other profiles: 2018-11-30,
# 2021-09-30-preview, 2022-01-31-preview); 2026-05-31 is the version of Microsoft's examples (IdentityCreate.json, ...).
MSI_VERSIONS = frozenset({"2018-11-30", "2021-09-30-preview", "2022-01-31-preview", "2024-11-30", "2026-05-31"})
