"""What every rendered pod carries for the pipeline to read back: its readiness gate and what it polls.

The renderer writes these (pipeline/render.py); the readiness gate's controller
(pipeline/readiness.py) and the rollout wait's diagnosis (pipeline/kube/rollout.py)
read them from the pods. A module of names only, so each layer imports it
without importing the others.
"""

# The condition type of the readiness gate: True once Temporal lists the pod as a poller.
POLLING_CONDITION = "pipeline.temporal.io/polling"
# Pod template annotations: the task queue, the queue types (comma-separated) and the Temporal namespace.
TASK_QUEUE_ANNOTATION = "pipeline.temporal.io/task-queue"
QUEUE_TYPES_ANNOTATION = "pipeline.temporal.io/queue-types"
TEMPORAL_NAMESPACE_ANNOTATION = "pipeline.temporal.io/temporal-namespace"
