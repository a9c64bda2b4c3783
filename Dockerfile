# Two images from one Dockerfile: the sample worker the pipeline deploys, and the pipeline's own worker
# (self-deployment: the pipeline-worker app of config.toml).
#
#   bootstrap/stack up                # builds the base image and wheelhouse/ (pip download -r */requirements.txt)
#   docker build --target sample-worker   --build-arg BASE_IMAGE=pipeline-base:bookworm -t sample-worker:dev .
#   docker build --target pipeline-worker --build-arg BASE_IMAGE=pipeline-base:bookworm -t pipeline-worker:dev .
#
# Builds run without network (and, here, behind a TLS-intercepting proxy), so
# dependencies come only from the host-built wheelhouse/. The base must have
# `python3 -m venv` with pip: python:3.11-slim-bookworm, or the local
# debootstrap'd pipeline-base:bookworm. Both stages use the same base, so the
# venv's interpreter symlink stays valid in the final stage.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- deps: a venv with the pinned runtime dependencies, installed offline ----
FROM ${BASE_IMAGE} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
COPY sample_worker/requirements.txt /tmp/build/requirements.txt
COPY wheelhouse/ /tmp/build/wheelhouse/
# pip is not needed at run time: dropping it shrinks the image and its attack surface.
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-index --find-links=/tmp/build/wheelhouse -r /tmp/build/requirements.txt \
 && /opt/venv/bin/python -m pip uninstall --yes pip \
 && rm -rf /tmp/build

# ---- sample-worker: the runtime image; only the venv and the code are copied in ----
FROM ${BASE_IMAGE} AS sample-worker
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="sample-worker" \
      org.opencontainers.image.description="Sample Temporal worker deployed by the temporal-deploy-pipeline" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
# A numeric uid/gid so Kubernetes' runAsNonRoot can verify the user without /etc/passwd.
RUN groupadd --system --gid 10001 worker \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin worker
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
# Owned by root, so the worker user cannot rewrite its own code.
COPY sample_worker/ /app/sample_worker/
COPY worker_health/ /app/worker_health/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
EXPOSE 8080
STOPSIGNAL SIGTERM
CMD ["python", "-m", "sample_worker"]

# ---- pipeline-deps: the same, with the pipeline's runtime dependencies ----
FROM ${BASE_IMAGE} AS pipeline-deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
COPY pipeline/requirements.txt /tmp/build/requirements.txt
COPY wheelhouse/ /tmp/build/wheelhouse/
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-index --find-links=/tmp/build/wheelhouse -r /tmp/build/requirements.txt \
 && /opt/venv/bin/python -m pip uninstall --yes pip \
 && rm -rf /tmp/build

# ---- pipeline-worker: the pipeline's own worker (DeploymentWorkflow and its activities) ----
# No config file and no credential inside: Temporal settings come from the environment
# (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, PIPELINE__PIPELINE__TASK_QUEUE, ...; see `pipeline worker`),
# the cluster from the pod's ServiceAccount token, Azure from workload identity.
FROM ${BASE_IMAGE} AS pipeline-worker
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="pipeline-worker" \
      org.opencontainers.image.description="The temporal-deploy-pipeline's own worker: deployment workflows and their activities" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
RUN groupadd --system --gid 10001 worker \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin worker
COPY --from=pipeline-deps /opt/venv /opt/venv
WORKDIR /app
COPY pipeline/ /app/pipeline/
COPY worker_health/ /app/worker_health/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
EXPOSE 8080
STOPSIGNAL SIGTERM
CMD ["python", "-m", "pipeline", "worker"]
