"""Metric points as the migration moves them: canonical, deduplicated, in a fixed order, batched.

Pure functions. The order is what makes a rerun cheap: a history is sent sorted by (timestamp,
step, value) in batches applied in publish order (one run, one partition), so what the target
holds after a crash is a prefix of that sequence and the rerun sends the rest. The writer drops
exact duplicates anyway (same step, timestamp and value), so a resent point is never stored twice.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

MAX_FLOAT = sys.float_info.max
BATCH_METRICS = 1000  # log-batch's limit
BATCH_BYTES = 900_000  # under log-batch's 1 MB body limit, with room for the envelope


@dataclass(frozen=True)
class Point:
    step: int
    timestamp: int
    value: float  # as logged: NaN and +-Inf included
    model_id: str | None = None
    dataset_name: str | None = None
    dataset_digest: str | None = None

    @property
    def identity(self) -> tuple[int, int, float | None]:
        """What makes two points the same point to Genesis-Flow's writer (`writer.plan.point_key`):
        step, timestamp and the stored value (NaN as None, +-Inf as +-max float; 0.0 == -0.0)."""
        return (self.step, self.timestamp, None if math.isnan(self.value) else clamp(self.value))

    @property
    def order(self) -> tuple[int, int, int, float]:
        nan = math.isnan(self.value)
        return (self.timestamp, self.step, 1 if nan else 0, 0.0 if nan else clamp(self.value))


def clamp(value: float) -> float:
    """+-Inf as MLflow's API returns them (+-max float)."""
    return max(-MAX_FLOAT, min(MAX_FLOAT, value))


def value_text(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "NaN"
    return repr(clamp(float(value)))


def from_mlflow(metric: Any) -> Point:
    """An `mlflow.entities.Metric` (any store) as a Point."""
    return Point(int(metric.step or 0), int(metric.timestamp or 0), float(metric.value),
                 getattr(metric, "model_id", None) or None, getattr(metric, "dataset_name", None) or None,
                 getattr(metric, "dataset_digest", None) or None)


def canonical(points: Iterable[Point]) -> tuple[list[Point], int]:
    """The distinct points in send order, and how many exact duplicates were dropped."""
    seen: set[tuple[int, int, float | None]] = set()
    unique: list[Point] = []
    total = 0
    for p in points:
        total += 1
        if p.identity in seen:
            continue
        seen.add(p.identity)
        unique.append(p)
    unique.sort(key=lambda p: p.order)
    return unique, total - len(unique)


def history_digest(run_id: str, key: str, points: Iterable[Point]) -> tuple[int, str]:
    """(points, digest) of one history, order-independent, the same way `genesis-flow backup` sums
    history (NaN as NaN, +-Inf as +-max float)."""
    from genesis_flow.backup import HistoryDigest

    digest = HistoryDigest()
    for p in points:
        digest.add(run_id, key, p.step, p.timestamp, p.value)
    summary = digest.summary()
    return summary["points"], summary["sha256"]


def metric_json(key: str, p: Point) -> dict[str, Any]:
    """One log-batch metric. NaN and +-Inf travel as the strings MLflow's protobuf JSON uses."""
    if math.isnan(p.value):
        value: Any = "NaN"
    elif math.isinf(p.value):
        value = "Infinity" if p.value > 0 else "-Infinity"
    else:
        value = p.value
    out: dict[str, Any] = {"key": key, "value": value, "timestamp": p.timestamp, "step": p.step}
    for name in ("model_id", "dataset_name", "dataset_digest"):
        if getattr(p, name):
            out[name] = getattr(p, name)
    return out


def batches(histories: Iterable[tuple[str, list[Point]]], *, max_metrics: int = BATCH_METRICS,
            max_bytes: int = BATCH_BYTES) -> Iterator[list[dict[str, Any]]]:
    """log-batch `metrics` lists: histories in the given order, each in its own order, cut at the
    request limits."""
    batch: list[dict[str, Any]] = []
    size = 0
    for key, points in histories:
        key_size = len(json.dumps(key))
        for p in points:
            item = metric_json(key, p)
            item_size = _size_bound(key_size, p)
            if batch and (len(batch) >= max_metrics or size + item_size > max_bytes):
                yield batch
                batch, size = [], 0
            batch.append(item)
            size += item_size
    if batch:
        yield batch


# `{"key": K, "value": V, "timestamp": T, "step": S}` with V a float repr or "-Infinity" (<= 24
# chars), T and S int64 (<= 20 each), separators included, rounded up.
_ITEM_OVERHEAD = 110


def _size_bound(key_size: int, p: Point) -> int:
    """An upper bound of the item's JSON size, without encoding it (the key is encoded once)."""
    size = _ITEM_OVERHEAD + key_size
    for extra in (p.model_id, p.dataset_name, p.dataset_digest):
        if extra:
            size += 24 + len(json.dumps(extra))
    return size
