# syntax=docker/dockerfile:1
# One image for the whole of alertops: `alertops operator`, `alertops run`, `alertops build`.
# The operator's Deployment runs `alertops operator`; the pods it renders run
# `alertops run /etc/alertops/step.yaml` or `alertops build /etc/alertops/trainingset.yaml`.

# The base of both stages. Any image with `python` (3.11+, venv included), groupadd and useradd
# will do; the test environment passes one it builds from Debian packages (no registry needed).
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- build: install the package and its dependencies into a venv --------------------------
FROM ${BASE_IMAGE} AS build
# Few layers: a builder whose storage copies every layer in full (buildah's vfs) pays for each.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/alertops/bin:$PATH
WORKDIR /src
# Dependencies first, so a code-only change reuses this layer. The placeholder packages and the
# build/ folder setuptools leaves in /src are removed: a stale build/lib copy of the empty
# __init__.py is newer than the real one copied below, and setuptools would package it instead.
COPY pyproject.toml README.md ./
RUN python -m venv /opt/alertops \
 && mkdir -p step_runtime pipeline_operator \
 && touch step_runtime/__init__.py pipeline_operator/__init__.py \
 && pip install --no-cache-dir . \
 && pip uninstall --yes alertops \
 && rm -rf build ./*.egg-info step_runtime pipeline_operator
COPY step_runtime ./step_runtime
COPY pipeline_operator ./pipeline_operator
RUN pip install --no-cache-dir --no-deps . \
 && alertops --help > /dev/null

# ---- runtime: the venv on a slim base, run as a fixed non-root user ------------------------
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="alertops" \
      org.opencontainers.image.description="Operator and step runtime for astronomical alert pipelines" \
      org.opencontainers.image.licenses="MIT"
# UID/GID 10001 match the securityContext the operator renders (runAsUser/runAsGroup/fsGroup).
RUN groupadd --system --gid 10001 alertops \
 && useradd --system --no-log-init --uid 10001 --gid alertops --home-dir /home/alertops --create-home alertops
COPY --from=build /opt/alertops /opt/alertops
# The root filesystem is read-only in the pods: caches go to the /tmp emptyDir.
ENV PATH=/opt/alertops/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    HOME=/home/alertops
USER 10001:10001
WORKDIR /home/alertops
# 8080: the runtime's /healthz, /readyz, /metrics; 8081/8082: the operator's liveness and metrics.
EXPOSE 8080 8081 8082
CMD ["alertops", "--help"]
