"""A single-node, Kubernetes-API-compatible cluster whose pods are real Docker containers.

Why: no real control plane can be installed on these machines, yet the pipeline
must be exercised against a cluster through the real `kubernetes` client and a
kubeconfig, so that it works unchanged on AKS or kind. This package is that
cluster; its contract is the Kubernetes REST API itself, checked with the real
`kubectl`.

Public surface (everything else is private):
- the process: `python -m bootstrap.cluster serve --state-dir DIR [--port 6443]`
  serves HTTPS on 127.0.0.1, writes `DIR/kubeconfig` (CA data + bearer token,
  0600) and runs until SIGTERM. State lives in DIR: `objects/` (one JSON file
  per object), `pki/` (CA, serving certificate, token, `sa.key`: the
  ServiceAccount token signing key), `kubelet/`.
- `bootstrap.cluster.server.serve(state_dir, port=...)` for embedding the same in a loop.
- the REST API: discovery, OpenAPI v2/v3, namespaces, configmaps, secrets,
  serviceaccounts (+token: TokenRequest, signed RS256 tokens with the
  issuer `https://127.0.0.1:<port>`, tokens.py), services, events, pods (+log, +status), deployments and
  replicasets (+status, +scale), roles, rolebindings, clusterroles,
  clusterrolebindings, poddisruptionbudgets, horizontalpodautoscalers (v2),
  selfsubjectaccessreviews, selfsubjectreviews; a default ServiceAccount per
  namespace (controllers/serviceaccounts.py); RBAC for ServiceAccount tokens
  (rbac.py); get, list (label/field
  selectors), watch (bookmarks, 410 Gone), create, update, delete (propagation,
  grace periods), deletecollection, JSON/merge/strategic merge patch,
  server-side apply with managedFields, `dryRun=All`, `fieldValidation`.
- OIDC discovery, unauthenticated (as AKS's OIDC issuer serves it):
  `/.well-known/openid-configuration` and `/openid/v1/jwks`, so a verifier
  (Entra ID's workload identity federation) can check the ServiceAccount tokens.
- `CLUSTER_NO_WORKLOADS=1`: serve the API and controllers without a kubelet (API tests).

Inside, one asyncio event loop runs the API server (`api.py`), the controllers
(`controllers/`) and the kubelet (`kubelet/`); the object store (`store.py`) is
only touched from that loop.

Pods get `hostPath`, `emptyDir`, `configMap`, `secret`, `downwardAPI` and
`projected` volumes (serviceAccountToken sources bound to the pod, rotated at
80% of their lifetime) and a mounted service-account token (kubelet/volumes.py), their name as hostname (resolving to their pod IP through a
kubelet-managed /etc/hosts), and readiness gates: Ready is ContainersReady and every
`spec.readinessGates` condition True, conditions another client writes through
pods/status are kept, and the kubelet re-evaluates Ready as soon as they change
(kubelet/podworker.py). Request bodies may be JSON, YAML or protobuf (protobuf.py,
from Kubernetes' own field table protos.json: kubectl's typed generators such as
`kubectl create configmap` work); answers are JSON. ServiceAccount tokens from
TokenRequest are authenticated and authorized by RBAC (rbac.py); the admin token
has every right. The one-node scheduler honours nodeSelector and required node
affinity (kubelet/scheduling.py). What it does not do: CBOR bodies or protobuf
answers, RBAC for the pods' own mounted token (still the cluster's admin bearer
token), admission webhooks, CRDs, aggregated discovery, multiple nodes, taints
and resource-based scheduling, Service networking (pods use host networking with
one loopback IP each), and watch history across
a restart (clients re-list after the 410 they get).
"""
