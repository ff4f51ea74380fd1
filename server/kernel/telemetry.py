"""Logging (JSON, with the trace id) and the OpenTelemetry tracer.

The tracer provider is created here and passed around, not installed globally, so tests
and several servers in one process do not share span pipelines. Spans are always
created (their trace ids are the ones we return); they leave the process only when an
OTLP endpoint is configured.
"""

from __future__ import annotations

import logging
import sys

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import NoOpTracer, Tracer
from pythonjsonlogger.json import JsonFormatter

from server.kernel.call_context import current_call
from server.kernel.config import LoggingConfig, TracingConfig


class _TraceIdFilter(logging.Filter):
    """Adds the current call's trace id to every record logged during the call."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "trace_id"):
            call = current_call.get()
            record.trace_id = call.trace_id if call else ""
        return True


def configure_logging(config: LoggingConfig) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if config.json_format:
        handler.setFormatter(JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(trace_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s [%(trace_id)s] %(message)s"))
    handler.addFilter(_TraceIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.level)
    # Libraries that log request lines or bodies stay quiet: bodies may carry secrets.
    for noisy in ("httpx", "httpcore", "openai", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def build_tracer_provider(config: TracingConfig) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": config.service_name}))
    if config.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(
            endpoint=config.otlp_endpoint, insecure=True)))
    return provider


def tracer(provider: TracerProvider, config: TracingConfig) -> Tracer:
    """The gateway's tracer; a no-op one when spans would not be exported anywhere (the
    interceptor still assigns and propagates trace ids)."""
    if not config.otlp_endpoint:
        return NoOpTracer()
    return provider.get_tracer("llmgw")
