# syntax=docker/dockerfile:1
# One image for the whole suite; the command picks the service:
#   docker run IMAGE python -m atp_router   (atp_observer, atp_adapters, atp_gateway; the default is the gateway)
# Build: docker build -t atp:dev .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: resolve the pinned runtime dependencies and the project into a venv ----
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/atp
WORKDIR /src

# Dependencies get their own layer: it is rebuilt only when the pins or the dependency list change.
# requirements.txt also pins the test and lint tools, so it is used as constraints on pyproject's runtime
# dependencies: the image gets exactly the pinned versions and none of the test tooling.
COPY requirements.txt pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > runtime-requirements.in \
    && /opt/atp/bin/pip install --constraint requirements.txt --requirement runtime-requirements.in

# README.m[d]: pyproject names README.md as the readme; the glob keeps the build working while it is absent.
COPY README.m[d] ./
COPY libs/common libs/common
COPY services services
COPY tools tools
# A regular (not editable) install: the runtime stage copies only the venv, never the sources.
RUN /opt/atp/bin/pip install --no-deps . \
    && /opt/atp/bin/python -c "import atp_tools.probe, grpc_health.v1.health_pb2"

# ---- runtime: the venv on a clean slim base, as a non-root user, no compilers or package caches ----
FROM ${PYTHON_IMAGE} AS runtime

ARG ATP_UID=10001
ARG ATP_VERSION=0.1.0
LABEL org.opencontainers.image.title="atp" \
      org.opencontainers.image.description="ATP: an LLM routing gateway built as a gRPC microservice suite" \
      org.opencontainers.image.version="${ATP_VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid "${ATP_UID}" atp \
    && useradd --system --uid "${ATP_UID}" --gid atp --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin atp

COPY --from=builder /opt/atp /opt/atp

# Bytecode was compiled at install time; the root filesystem may be read-only at run time.
ENV PATH=/opt/atp/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONFAULTHANDLER=1 \
    ATP_LOG_JSON=true \
    ATP_GATEWAY_HOST=0.0.0.0 \
    ATP_ROUTER_HOST=0.0.0.0 \
    ATP_OBSERVER_HOST=0.0.0.0 \
    ATP_ADAPTERS_HOST=0.0.0.0

# var/ holds the observer's SQLite file and the adapters' observation spool (relative paths, defaults).
WORKDIR /app
RUN mkdir -p /app/var && chown "${ATP_UID}:${ATP_UID}" /app/var
VOLUME ["/app/var"]

USER ${ATP_UID}:${ATP_UID}

# gateway HTTP and metrics, then router, observer and adapters gRPC and their metrics.
EXPOSE 8080 9100 50051 9101 50052 9102 50053 9103

# The service is PID 1 on purpose: it handles SIGTERM itself (drain: NOT_SERVING, delay, grace, flush).
CMD ["python", "-m", "atp_gateway"]
