"""The writer's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class WriterMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.batches = Counter("genesis_writer_batches", "Batches committed", registry=registry)
        self.events = Counter("genesis_writer_events", "Events processed", ["outcome"], registry=registry)
        self.points_written = Counter("genesis_writer_metric_points_written", "Metric points stored", registry=registry)
        self.points_dropped = Counter(
            "genesis_writer_metric_points_duplicate", "Exact duplicate metric points dropped", registry=registry)
        self.documents_written = Counter(
            "genesis_writer_documents_written", "MongoDB documents written", ["collection"], registry=registry)
        self.spans_written = Counter("genesis_writer_spans_written", "Trace spans stored", registry=registry)
        self.spans_dropped = Counter(
            "genesis_writer_spans_dropped", "Trace spans dropped as already stored (re-sent exports, redeliveries)",
            registry=registry)
        self.dead_letters = Counter("genesis_writer_dead_letters", "Events sent to the dead-letter queue", registry=registry)
        self.store_retries = Counter("genesis_writer_store_retries", "Batch retries after MongoDB errors", registry=registry)
        self.batch_events = Histogram(
            "genesis_writer_batch_events", "Events per batch", registry=registry,
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000))
        self.commit_seconds = Histogram(
            "genesis_writer_commit_seconds", "Load, plan and write one batch", registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.store_up = Gauge("genesis_writer_store_up", "1 when the last MongoDB write succeeded", registry=registry)
        self.store_up.set(1)  # until a write fails: an idle writer is not a broken one
        self.lag = Gauge("genesis_writer_lag_seconds",
                         "Age of the oldest event of the last committed batch (publish to commit)", registry=registry)
        self.queue_depth = Gauge("genesis_queue_depth", "Events waiting in a partition queue (sampled)",
                                 ["partition"], registry=registry)
        self.dead_letter_depth = Gauge("genesis_dead_letter_depth", "Events waiting in the dead-letter queue (sampled)",
                                       registry=registry)
