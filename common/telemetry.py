"""Tracing (OpenTelemetry) and metrics (Prometheus) setup shared by every tier.

Tracing is configured from the standard `OTEL_*` variables: OTLP/HTTP when an endpoint is set
(`OTEL_EXPORTER_OTLP[_TRACES]_ENDPOINT`, e.g. Jaeger's :4318), one JSON span per line on stdout
with `OTEL_TRACES_EXPORTER=console`. With neither, spans are not recorded and cost next to
nothing. The trace context crosses the queue inside each event
envelope, so one request is one trace: HTTP -> publish -> writer apply -> MongoDB.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context

log = logging.getLogger(__name__)

_configured: dict[str, trace.TracerProvider] = {}


def tracing_requested(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    exporter = env.get("OTEL_TRACES_EXPORTER", "")
    if exporter == "none" or env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    return bool(exporter or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def setup_tracing(service_name: str) -> trace.TracerProvider:
    """Install the process's tracer provider once; later calls return the same provider."""
    if "provider" in _configured:
        return _configured["provider"]
    provider: trace.TracerProvider
    if tracing_requested():
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.instrumentation.pymongo import PymongoInstrumentor
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME", service_name)})
        sdk_provider = TracerProvider(resource=resource)
        if os.environ.get("OTEL_TRACES_EXPORTER", "") == "console":
            # One JSON span per line on stdout: for debugging and for the tracing tests.
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

            exporter = ConsoleSpanExporter(formatter=lambda span: span.to_json(indent=None) + "\n")
            sdk_provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            sdk_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(sdk_provider)
        PymongoInstrumentor().instrument(tracer_provider=sdk_provider)
        # Patches aiohttp's Application so every app built afterwards gets the server middleware.
        from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor

        AioHttpServerInstrumentor().instrument(tracer_provider=sdk_provider)
        provider = sdk_provider
        log.info("OpenTelemetry tracing enabled for %s", service_name)
    else:
        provider = trace.get_tracer_provider()
    _configured["provider"] = provider
    return provider


def inject_context() -> dict[str, str]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def extract_context(carrier: Mapping[str, str]) -> Context:
    return propagate.extract(dict(carrier))
