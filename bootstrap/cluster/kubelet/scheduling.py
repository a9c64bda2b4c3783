"""The scheduler's node filter for the one node: nodeSelector and required node affinity, as kube-scheduler judges them.

`unschedulable_reason(pod, node_labels)` is None when the pod fits the node, else
the FailedScheduling message kube-scheduler writes for one node that does not
match (`0/1 nodes are available: 1 node(s) didn't match Pod's node
affinity/selector. ...`). Checked: `spec.nodeSelector` (every pair must equal the
node's label) and `spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution`
(any term matches; a term's matchExpressions all hold, operators In, NotIn,
Exists, DoesNotExist, Gt, Lt; matchFields on metadata.name). Taints, resources
and preferred affinity are not considered (the node has no taints; the cluster
does not account resources).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Obj = dict[str, Any]

NO_MATCH = (
    "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. "
    "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
)


def _expression_holds(expression: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, operator = str(expression.get("key", "")), str(expression.get("operator", ""))
    values = [str(v) for v in expression.get("values") or []]
    present = key in labels
    if operator == "In":
        return present and labels[key] in values
    if operator == "NotIn":
        return not present or labels[key] not in values
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and len(values) == 1:
        try:
            have, bound = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return have > bound if operator == "Gt" else have < bound
    return False


def _term_matches(term: Mapping[str, Any], labels: Mapping[str, str], node_name: str) -> bool:
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False  # an empty term matches no node (Kubernetes' rule)
    by_field = {"metadata.name": node_name}
    return all(_expression_holds(e, labels) for e in expressions) and all(_expression_holds(f, by_field) for f in fields)


def unschedulable_reason(pod: Obj, node_labels: Mapping[str, str], node_name: str) -> str | None:
    """None when `pod` may run on the node with `node_labels`; kube-scheduler's FailedScheduling message otherwise."""
    spec = pod.get("spec") or {}
    selector = spec.get("nodeSelector") or {}
    if any(node_labels.get(str(k)) != str(v) for k, v in selector.items()):
        return NO_MATCH
    required = (
        ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    ).get("nodeSelectorTerms")
    if required is not None and not any(_term_matches(t, node_labels, node_name) for t in required):
        return NO_MATCH
    return None
