# syntax=docker/dockerfile:1
# One image for the whole of alertops: `alertops operator`, `alertops run`, `alertops build`.
# The operator's Deployment runs `alertops operator`; the pods it renders run
# `alertops run /etc/alertops/step.yaml` or `alertops build /etc/alertops/trainingset.yaml`.

# The base of both stages. Any image with `python` (3.11+, venv included), groupadd and useradd
# will do; the test environment passes one it builds from Debian packages (no registry needed).
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- deps: the dependencies alone, in a venv (a change of the code or README reuses it) ----
FROM ${BASE_IMAGE} AS deps
# Few layers: a builder whose storage copies every layer in full (buildah's vfs) pays for each.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/alertops/bin:$PATH
WORKDIR /src
# Placeholders stand in for the README and the packages, and go again with the build/ folder
# setuptools leaves (its stale copy of an empty __init__.py would be packaged instead of the real one).
# --upgrade-deps: a base's own pip may be old. Debian's 23.0 backtracked here for 14+ minutes
# (136 wheels downloaded, several versions each of the same packages); a current pip resolves
# the same dependencies in seconds.
COPY pyproject.toml ./
RUN python -m venv --upgrade-deps /opt/alertops \
 && mkdir -p step_runtime pipeline_operator \
 && touch README.md step_runtime/__init__.py pipeline_operator/__init__.py \
 && pip install --no-cache-dir . \
 && pip uninstall --yes alertops \
 && rm -rf build ./*.egg-info step_runtime pipeline_operator README.md

# ---- build: the package itself, as a wheel --------------------------------------------------
FROM deps AS build
COPY README.md ./
COPY step_runtime ./step_runtime
COPY pipeline_operator ./pipeline_operator
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---- runtime: the venv on a slim base, run as a fixed non-root user ------------------------
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="alertops" \
      org.opencontainers.image.description="Operator and step runtime for astronomical alert pipelines" \
      org.opencontainers.image.licenses="MIT"
# UID/GID 10001 match the securityContext the operator renders (runAsUser/runAsGroup/fsGroup).
RUN groupadd --system --gid 10001 alertops \
 && useradd --system --no-log-init --uid 10001 --gid alertops --home-dir /home/alertops --create-home alertops
# The dependencies' layer (about 1 GB) changes only with pyproject.toml; the package's is small.
# (A COPY, not RUN --mount=from=build: buildah's layer cache would reuse the RUN of an old wheel.)
COPY --from=deps /opt/alertops /opt/alertops
COPY --from=build /wheels /tmp/wheels
RUN /opt/alertops/bin/pip install --no-cache-dir --no-deps --no-index /tmp/wheels/alertops-*.whl \
 && rm -rf /tmp/wheels \
 && /opt/alertops/bin/alertops --help > /dev/null
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
