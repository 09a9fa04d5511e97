"""Ingest's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.published = Counter("genesis_ingest_events_published", "Events confirmed by the queue", registry=registry)
        self.rejected = Counter(
            "genesis_ingest_writes_unavailable", "Writes answered 503", ["reason"], registry=registry)
        self.lookups = Counter(
            "genesis_ingest_run_lookups", "Run state lookups for validation", ["source"], registry=registry)
        self.degraded_acks = Counter(
            "genesis_ingest_degraded_acks", "Committed-mode writes acknowledged as enqueued (durable in the queue, "
            "commit notice missing)", registry=registry)
        self.down = Gauge("genesis_ingest_dependency_down_seconds",
                          "How long a dependency has been failing for this replica (0: up)", ["dependency"],
                          registry=registry)
