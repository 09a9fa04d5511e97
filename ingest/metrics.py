"""Ingest's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.published = Counter("genesis_ingest_events_published", "Events confirmed by the queue", registry=registry)
        self.rejected = Counter(
            "genesis_ingest_writes_unavailable", "Writes answered 503", ["reason"], registry=registry)
        self.lookups = Counter(
            "genesis_ingest_run_lookups", "Run state lookups for validation", ["source"], registry=registry)
