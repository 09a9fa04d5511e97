"""Run documents as this writer last committed them, so a hot run costs no read per batch.

Every event that changes one run's document is partitioned by the run's id, and a partition is
applied by one writer at a time: while a writer holds the partition, the document it committed
last *is* the stored one. The exceptions are bounded:

* deleting or restoring an experiment sets `lifecycle_stage` on all its runs (an experiment
  event, possibly applied by another writer): entries live at most `ttl_s`, the same window the
  ingest tier's run cache already allows, and this writer drops an experiment's runs itself;
* a partition handed over, a redelivery or a retried batch: the consumer clears the cache or
  bypasses it (`conservative` loads read MongoDB).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any


class RunCache:
    def __init__(self, ttl_s: float, max_entries: int = 10_000):
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._docs: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    def fresh(self, run_ids: set[str]) -> dict[str, dict[str, Any]]:
        """The cached documents of `run_ids` younger than the TTL (the caller must not change them)."""
        if self.ttl_s <= 0:
            return {}
        cutoff = time.monotonic() - self.ttl_s
        out = {}
        for run_id in run_ids:
            entry = self._docs.get(run_id)
            if entry is not None and entry[0] >= cutoff:
                out[run_id] = entry[1]
        return out

    def put(self, docs: dict[str, dict[str, Any]]) -> None:
        """Documents as just committed (nobody else may hold a reference that changes them)."""
        now = time.monotonic()
        for run_id, doc in docs.items():
            self._docs[run_id] = (now, doc)
            self._docs.move_to_end(run_id)
        while len(self._docs) > self.max_entries:
            self._docs.popitem(last=False)

    def forget(self, run_ids: set[str]) -> None:
        for run_id in run_ids:
            self._docs.pop(run_id, None)

    def forget_experiment(self, experiment_id: str) -> None:
        for run_id in [r for r, (_, doc) in self._docs.items() if doc.get("experiment_id") == experiment_id]:
            del self._docs[run_id]

    def clear(self) -> None:
        self._docs.clear()

    def __len__(self) -> int:
        return len(self._docs)
