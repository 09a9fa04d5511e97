# Genesis-Flow: one image for every tier.
#
#   docker build -t genesis-flow .                         # the tiers
#   docker build -t genesis-flow --build-arg EXTRAS=ui .   # + the MLflow web UI, served by query
#   docker run --rm genesis-flow ingest | writer | query | init-db | dlq list | standalone
#
# Listens on 0.0.0.0 at the tier's default port (ingest 5001, query 5002, writer 5003,
# standalone 5000; `--port` or GENESIS_FLOW_PORT to change). Configuration is the environment
# of README's Configuration table. Runs as uid 10001 and writes nothing outside its working
# directory /var/lib/genesis-flow (standalone's data, file: artifact roots) and /tmp, so it also
# runs with a read-only root file system (deploy/k8s does).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# Comma-separated extras of pyproject.toml: "" (default) or "ui" (the mlflow package, whose wheel
# carries the web UI build).
ARG EXTRAS=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/genesis-flow
WORKDIR /src
COPY pyproject.toml README.md ./
COPY common ./common
COPY ingest ./ingest
COPY writer ./writer
COPY query ./query
COPY genesis_flow ./genesis_flow
RUN /opt/genesis-flow/bin/pip install --no-cache-dir ".${EXTRAS:+[${EXTRAS}]}" \
    && /opt/genesis-flow/bin/genesis-flow --help >/dev/null
COPY deploy/docker/healthcheck.py /opt/genesis-flow/healthcheck.py

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 genesis \
    && useradd --system --uid 10001 --gid genesis --home-dir /var/lib/genesis-flow --create-home \
       --shell /usr/sbin/nologin genesis
COPY --from=build /opt/genesis-flow /opt/genesis-flow
ENV PATH=/opt/genesis-flow/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GENESIS_FLOW_HOST=0.0.0.0
WORKDIR /var/lib/genesis-flow
USER 10001:10001
EXPOSE 5000 5001 5002 5003
# GET /health of whichever tier this container runs (healthy when it runs no server: init-db).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/opt/genesis-flow/healthcheck.py"]
ENTRYPOINT ["genesis-flow"]
CMD ["--help"]
