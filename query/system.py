"""`GET /api/2.0/mlflow/metrics/system`: the state of the deployment, for an operator to read.

The query tier knows its own process, MongoDB (its pool, and what the writers report) and the
artifact store; the writers report queue depths, lag and throughput into `writer_status` every
few seconds (`writer/app.py`), so no tier has to reach into another.
"""

from __future__ import annotations

import importlib.metadata
import time
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from pymongo.asynchronous.database import AsyncDatabase

from common.artifacts import ArtifactStore
from common.clock import now_ms
from common.mongo import WRITER_STATUS
from common.web import json_response
from query.server_info import MLFLOW_VERSION

STALE_AFTER_MS = 30_000  # a writer that has not reported for this long is probably gone
_POOL_GAUGES = {"genesis_mongodb_connection_pool_connections": "open",
                "genesis_mongodb_connection_pool_checked_out": "checked_out"}


def _version() -> str:
    try:
        return importlib.metadata.version("genesis-flow")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def pool_usage(registry: CollectorRegistry) -> dict[str, dict[str, float]]:
    """This process's MongoDB connection pools, per server address (from its own gauges)."""
    out: dict[str, dict[str, float]] = {}
    for family in registry.collect():
        for sample in family.samples:
            field = _POOL_GAUGES.get(sample.name)
            if field is not None:
                out.setdefault(sample.labels.get("address", ""), {})[field] = sample.value
    return out


def summarise_writers(reports: list[dict[str, Any]], now: int) -> dict[str, Any]:
    """Writers' reports -> per-writer rows and the queue as the freshest report saw it."""
    writers = []
    for r in sorted(reports, key=lambda r: r["_id"]):
        age = now - int(r.get("time", 0))
        writers.append({"instance": r["_id"], "seconds_since_report": round(age / 1000, 1),
                        "stale": age > STALE_AFTER_MS, "uptime_s": round((now - int(r.get("started", now))) / 1000),
                        "store_up": r.get("store_up"), "lag_s": r.get("lag_s"),
                        "events_per_s": r.get("events_per_s"), "points_per_s": r.get("points_per_s"),
                        "events_committed": r.get("events_committed")})
    sampled = [r for r in reports if "queue_depth" in r]
    freshest = max(sampled, key=lambda r: r.get("time", 0), default=None)
    queue: dict[str, Any] = {}
    if freshest is not None:
        depths = freshest["queue_depth"]
        queue = {"depth_per_partition": depths, "depth_total": sum(depths.values()),
                 "dead_letter_depth": freshest.get("dead_letter_depth"),
                 "sampled_seconds_ago": round((now - int(freshest.get("time", now))) / 1000, 1)}
    live = [w for w in writers if not w["stale"]]
    return {"writers": writers, "queue": queue,
            "publish_to_commit_lag_s": max((w["lag_s"] or 0 for w in live), default=None),
            "events_per_s": round(sum(w["events_per_s"] or 0 for w in live), 1),
            "points_per_s": round(sum(w["points_per_s"] or 0 for w in live), 1)}


def system_routes(db: AsyncDatabase, store: ArtifactStore,
                  registry: CollectorRegistry) -> list[tuple[str, str, web.RequestHandler]]:
    started = time.monotonic()

    async def system(_: web.Request) -> web.Response:
        reports = [doc async for doc in db[WRITER_STATUS].find({})]
        try:
            await store.check()
            artifacts: dict[str, Any] = {"reachable": True}
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            artifacts = {"reachable": False, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        return json_response({
            "versions": {"genesis_flow": _version(), "mlflow_api": MLFLOW_VERSION},
            "query_uptime_s": round(time.monotonic() - started),
            **summarise_writers(reports, now_ms()),
            "mongodb_pool": pool_usage(registry),
            "artifact_store": artifacts,
        })

    return [("GET", prefix + "/metrics/system", system) for prefix in ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")]
