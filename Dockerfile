# The pipeline image: every Argo step runs `mlops step NAME …` in it.
# Build: docker build -t <ecr>/mlops-<env>-pipeline:<version> .
FROM python:3.11.15-slim-bookworm AS build
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /app
# Locked dependencies first (a layer that changes only with uv.lock), then the project.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-dev --no-install-project
COPY pipelines ./pipelines
COPY bentos ./bentos
COPY stacks ./stacks
COPY policies ./policies
RUN uv sync --locked --no-dev --no-editable

FROM python:3.11.15-slim-bookworm
ARG GIT_COMMIT=unknown
# git (+ ssh for a deploy key): the gate and the monitor push promotions and rollbacks to the
# GitOps repository.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git openssh-client \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 mlops \
    && useradd --system --uid 10001 --gid mlops --home-dir /tmp --shell /usr/sbin/nologin mlops
COPY --from=build --chown=10001:10001 /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MLOPS_HOME=/tmp/mlops \
    MLOPS_GIT_COMMIT=$GIT_COMMIT \
    MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false \
    OMP_NUM_THREADS=1
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["mlops"]
CMD ["--help"]
