"""Log lines every tier writes: one JSON object per line by default, for log pipelines.

Each line has `time` (UTC, ISO 8601), `level`, `tier`, `instance`, `logger`, `message`, and when
a span is current, `trace_id` / `span_id` (the same ids Jaeger shows, so a log line leads to its
trace). Request lines (logger `genesis_flow.access`) add `method`, `route`, `status` and
`duration_ms`; they never carry bodies, query strings or headers, so no secret reaches a log.
`GENESIS_FLOW_LOG_FORMAT=text` prints plain lines for humans instead.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import msgspec
from opentelemetry import trace

ACCESS_LOGGER = "genesis_flow.access"
_REQUEST_FIELDS = ("method", "route", "status", "duration_ms")
_encoder = msgspec.json.Encoder()


class JsonFormatter(logging.Formatter):
    def __init__(self, tier: str, instance: str):
        super().__init__()
        self._tier = tier
        self._instance = instance

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "tier": self._tier,
            "instance": self._instance,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            line["trace_id"] = format(context.trace_id, "032x")
            line["span_id"] = format(context.span_id, "016x")
        for name in _REQUEST_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _encoder.encode(line).decode()


def configure_logging(level: str, fmt: str, tier: str, instance: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "text":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(JsonFormatter(tier, instance))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # the Azure SDK logs every HTTP request at INFO
    for noisy in ("aio_pika", "aiormq", "aiohttp.access", "azure"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def log_request(method: str, route: str, status: int, duration_s: float) -> None:
    """One line per request: failures and slow requests at INFO, the rest at DEBUG (a busy
    ingest serves thousands of requests a second)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    level = logging.INFO if status >= 400 or duration_s >= 1.0 else logging.DEBUG
    if logger.isEnabledFor(level):
        logger.log(level, "%s %s %d", method, route, status, extra={
            "method": method, "route": route, "status": status, "duration_ms": round(duration_s * 1000, 1)})
