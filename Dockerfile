# syntax=docker/dockerfile:1
# One image for every Turnout process; the command picks which:
#   docker run IMAGE gateway                               (default, port 8000)
#   docker run IMAGE worker --version v1 --port 8101       (needs /app/models)
#   docker run -v DATA:/data IMAGE train --all --if-missing (writes /app/models)
# Targets: "runtime" (no models: compose and Kubernetes mount them) and "bundled" (runtime plus
# the trained models of the build context's models/ folder, running `turnout up`: Fly.io).

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: a virtualenv with the dependencies, then the project --------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when they change.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && pip install --no-cache-dir -r requirements.txt
# Then the source (changes often, installs in seconds).
COPY README.md ./
COPY router ./router
COPY model_workers ./model_workers
RUN pip install --no-cache-dir --no-deps /src

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
