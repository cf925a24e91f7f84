# syntax=docker/dockerfile:1
# One image for every Turnout process; the command picks which:
#   docker run IMAGE gateway                               (default, port 8000)
#   docker run IMAGE worker --version v1 --port 8101       (needs /app/models)
#   docker run -v DATA:/data IMAGE train --all --if-missing (writes /app/models)
# Targets: "runtime" (no models: compose and Kubernetes mount them) and "bundled" (runtime plus
# the trained models of the build context's models/ folder, running `turnout up`: Fly.io).

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: a virtualenv with exactly what uv.lock pins, then the project ------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    PATH=/opt/venv/bin:$PATH
# The same uv as the Makefile's UV_VERSION.
RUN pip install --no-cache-dir uv==0.13.10
WORKDIR /src
# Dependencies first, from the lock alone: this layer is rebuilt only when they change.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-install-project --no-editable
# Then the source (changes often, installs in seconds).
COPY README.md ./
COPY router ./router
COPY model_workers ./model_workers
RUN uv sync --frozen --no-editable

# --- runtime: the virtualenv, the experiments, a non-root user ------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="turnout" \
      org.opencontainers.image.description="Traffic router for machine-learning model versions" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid 10001 turnout \
    && useradd --system --uid 10001 --gid turnout --home-dir /app --shell /usr/sbin/nologin turnout
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY experiments ./experiments
RUN mkdir -p /app/models /app/state /data \
    && chown 10001:10001 /app/models /app/state
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TURNOUT_HOST=0.0.0.0 \
    TURNOUT_MODELS_DIR=/app/models \
    TURNOUT_EXPERIMENTS_DIR=/app/experiments \
    TURNOUT_STATE_DIR=/app/state \
    TURNOUT_DATASET=/data/labeled_data.csv \
    HEALTHCHECK_URL=http://127.0.0.1:8000/readyz
USER 10001:10001
EXPOSE 8000
# HEALTHCHECK_URL: a worker sets it to its own /readyz (compose does); training jobs disable it.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['HEALTHCHECK_URL'], timeout=2)"]
ENTRYPOINT ["turnout"]
CMD ["gateway"]

# --- bundled: models baked in, the whole stack in one container (Fly.io) --------------------
FROM runtime AS bundled
COPY --chown=10001:10001 models ./models
CMD ["up"]
