"""MongoDB layout: collections, indexes, shard keys, and the idempotent `init-db`.

Layout (read paths decide it):

* ``experiments``: one document per experiment, ``_id`` = experiment id (numeric string);
  tags embedded as ``tags.<encoded key>``. Unique index on ``name``.
* ``runs``: one document per run, ``_id`` = run id. Run info, ``params``, ``tags`` and the latest
  value of every metric (``metrics.<encoded key>`` = ``{v, t, s, nan}``) are embedded, so
  runs/get and runs/search read this collection alone. ``mb.<encoded key>`` is the writer's
  bookkeeping for the metric's open history bucket.
* ``metrics``: metric history in buckets: ``_id`` = ``<run>:<encoded key>:<seq>``, up to
  ``metric_bucket_size`` points ``[step, timestamp, value]`` per document (value ``None`` means
  NaN), with the bucket's time and step ranges. Writes, index size and history reads scale with
  buckets, not points.
* ``logged_models``: MLflow 3 logged models, ``_id`` = ``m-<32 hex>``; tags and params embedded
  like runs; ``metrics`` is the list of metric points logged with this ``model_id``.
* ``artifacts``: metadata of stored artifacts (size, checksum, owner run or model), ``_id`` =
  the proxied path. The bytes live in the artifact store (Azure Blob or files), never here.
* ``registered_models`` and ``model_versions``: the model registry (documents described in
  ``common/registry.py``). A model's ``_id`` is an internal key that survives renames; ``name``
  is unique. Versions carry the model's key (``rm``) and name, so "versions of a model" and
  ``name = '...'`` searches are indexed reads.
* ``traces`` and ``trace_spans``: MLflow 3 traces: one document per trace (info, tags, metadata,
  assessments, span bookkeeping) and its spans in buckets of about 1 MiB (documents described in
  ``common/traces.py``). Indexes serve search_traces' common filters: experiment + time (the
  default order), state, span names, linked runs, source run, tags.
* ``writers``: writer heartbeats, for spreading partitions over writer replicas
  (``writer/balancer.py``).
* ``counters``: the experiment id sequence (ids are unique across ingest replicas).
* ``control``: coordination, not data: the writer pause a backup holds and each writer's answer
  to it (``common/writer_pause.py``). Backups leave it and ``writers`` out.

Shard keys (applied only when connected to a mongos):

* ``runs``: ``{experiment_id: 1, _id: 1}``. runs/search always names experiments, so it is
  routed to the chunks of those experiments; the ``_id`` suffix lets one huge experiment split
  over many chunks. The writer knows each run's experiment and includes it in its update
  filters, so writes are targeted; runs/get by id alone is a broadcast point read on ``_id``.
* ``metrics``: ``{run_id: 1}``. Run ids are random uuid4 hex, so a range key spreads writes as
  evenly as a hashed one, while every history read (one run, one key) stays on one shard and
  the unique ``(run_id, key, seq)`` index stays legal (it is prefixed by the shard key).
* ``artifacts`` is sharded by ``{_id: "hashed"}`` when it grows: writes are upserts by path.
* ``trace_spans``: ``{trace_id: 1}``. Trace ids are random (OTel trace ids), so writes spread,
  and reading a trace's spans (get_trace) stays on one shard.
* ``traces``: ``{_id: "hashed"}``: writes (one trace per partition, spans arriving all the time)
  spread evenly; search_traces names experiments and reads newest first, a scatter-gather over
  the ``exp_time`` index on each shard, which keeps any one experiment's hot write range from
  landing on a single shard.
* ``experiments``, ``logged_models``, ``registered_models``, ``model_versions`` and ``counters``
  stay unsharded: they are small (one document per experiment, model or version, not per run or
  point), and the registry's unique ``name`` index could not be enforced across shards unless the
  name were the shard key, which a rename would then have to move.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel, monitoring
from pymongo.asynchronous.database import AsyncDatabase

log = logging.getLogger(__name__)

EXPERIMENTS = "experiments"
RUNS = "runs"
METRICS = "metrics"
COUNTERS = "counters"
LOGGED_MODELS = "logged_models"
ARTIFACTS = "artifacts"
WRITER_STATUS = "writer_status"  # each writer's latest report (queue depths, lag, throughput)
REGISTERED_MODELS = "registered_models"
MODEL_VERSIONS = "model_versions"
CONTROL = "control"
TRACES = "traces"  # MLflow 3 trace info (documents described in `common/traces.py`)
TRACE_SPANS = "trace_spans"  # spans in buckets per trace

DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"

INDEXES: dict[str, list[IndexModel]] = {
    EXPERIMENTS: [
        IndexModel([("name", ASCENDING)], name="name_unique", unique=True),
        IndexModel([("lifecycle_stage", ASCENDING), ("creation_time", DESCENDING)], name="stage_created"),
        IndexModel([("last_update_time", DESCENDING)], name="last_update"),
    ],
    RUNS: [
        # default runs/search order: start_time DESC, run_id
        IndexModel(
            [("experiment_id", ASCENDING), ("lifecycle_stage", ASCENDING), ("start_time", DESCENDING), ("_id", ASCENDING)],
            name="exp_stage_start",
        ),
        IndexModel([("experiment_id", ASCENDING), ("run_name", ASCENDING)], name="exp_run_name"),
        IndexModel([("experiment_id", ASCENDING), ("status", ASCENDING)], name="exp_status"),
        # `params.x = ...` / `tags.x = ...` filters on any key (wildcard indexes, MongoDB 4.2+).
        IndexModel([("params.$**", ASCENDING)], name="params_wildcard"),
        IndexModel([("tags.$**", ASCENDING)], name="tags_wildcard"),
    ],
    METRICS: [
        IndexModel([("run_id", ASCENDING), ("key", ASCENDING), ("seq", ASCENDING)], name="run_key_seq", unique=True),
        # get-history reads a key's buckets in time order
        IndexModel([("run_id", ASCENDING), ("key", ASCENDING), ("t0", ASCENDING)], name="run_key_time"),
    ],
    LOGGED_MODELS: [
        IndexModel([("experiment_id", ASCENDING), ("lifecycle_stage", ASCENDING), ("creation_timestamp_ms", DESCENDING)],
                   name="exp_stage_created"),
        IndexModel([("experiment_id", ASCENDING), ("name", ASCENDING)], name="exp_name"),
        IndexModel([("source_run_id", ASCENDING)], name="source_run"),
    ],
    REGISTERED_MODELS: [
        IndexModel([("name", ASCENDING)], name="name_unique", unique=True),
        IndexModel([("last_updated_timestamp", DESCENDING)], name="last_updated"),
    ],
    MODEL_VERSIONS: [
        IndexModel([("rm", ASCENDING), ("version", DESCENDING)], name="model_version"),
        IndexModel([("name", ASCENDING), ("version", DESCENDING)], name="name_version"),
        IndexModel([("run_id", ASCENDING)], name="run", sparse=True),
        IndexModel([("last_updated_timestamp", DESCENDING)], name="last_updated"),
    ],
    ARTIFACTS: [
        IndexModel([("run_id", ASCENDING)], name="run", sparse=True),
        IndexModel([("model_id", ASCENDING)], name="model", sparse=True),
    ],
    TRACES: [
        # search_traces: experiments named, newest first (the default order), then by id
        IndexModel([("experiment_id", ASCENDING), ("request_time", DESCENDING), ("_id", ASCENDING)],
                   name="exp_time"),
        IndexModel([("experiment_id", ASCENDING), ("state", ASCENDING), ("request_time", DESCENDING)],
                   name="exp_state_time"),
        IndexModel([("sp.names", ASCENDING)], name="span_names"),
        IndexModel([("runs", ASCENDING)], name="linked_runs", sparse=True),
        IndexModel([("metadata.mlflow%2EsourceRun", ASCENDING)], name="source_run", sparse=True),
        IndexModel([("tags.$**", ASCENDING)], name="tags_wildcard"),
    ],
    TRACE_SPANS: [
        IndexModel([("trace_id", ASCENDING), ("seq", ASCENDING)], name="trace_seq"),
    ],
}

SHARD_KEYS: dict[str, dict[str, Any]] = {
    RUNS: {"experiment_id": 1, "_id": 1},
    METRICS: {"run_id": 1},
    ARTIFACTS: {"_id": "hashed"},
    TRACE_SPANS: {"trace_id": 1},
    TRACES: {"_id": "hashed"},
}


class PoolMetrics(monitoring.ConnectionPoolListener):
    """MongoDB connection pool gauges for /metrics (`genesis_mongodb_connection_pool_*`)."""

    def __init__(self, registry: CollectorRegistry):
        self.open = Gauge("genesis_mongodb_connection_pool_connections", "Open pooled connections",
                          ["address"], registry=registry)
        self.checked_out = Gauge("genesis_mongodb_connection_pool_checked_out", "Connections in use",
                                 ["address"], registry=registry)
        self.wait_failures = Counter("genesis_mongodb_connection_pool_checkout_failures",
                                     "Failed connection check-outs (pool exhausted, timeouts)", ["address"],
                                     registry=registry)

    @staticmethod
    def _addr(event: Any) -> str:
        host, port = event.address
        return f"{host}:{port}"

    def connection_created(self, event: Any) -> None:
        self.open.labels(self._addr(event)).inc()

    def connection_closed(self, event: Any) -> None:
        self.open.labels(self._addr(event)).dec()

    def connection_checked_out(self, event: Any) -> None:
        self.checked_out.labels(self._addr(event)).inc()

    def connection_checked_in(self, event: Any) -> None:
        self.checked_out.labels(self._addr(event)).dec()

    def connection_check_out_failed(self, event: Any) -> None:
        self.wait_failures.labels(self._addr(event)).inc()

    def pool_created(self, event: Any) -> None: ...
    def pool_ready(self, event: Any) -> None: ...
    def pool_cleared(self, event: Any) -> None: ...
    def pool_closed(self, event: Any) -> None: ...
    def connection_ready(self, event: Any) -> None: ...
    def connection_check_out_started(self, event: Any) -> None: ...


def make_client(uri: str, *, app_name: str, registry: CollectorRegistry | None = None, **kwargs: Any) -> AsyncMongoClient:
    # Small server-selection timeout so /ready and writer retries react quickly.
    listeners = [PoolMetrics(registry)] if registry is not None else []
    return AsyncMongoClient(uri, appname=app_name, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000,
                            event_listeners=listeners, **kwargs)


async def ensure_default_experiment(db: AsyncDatabase, artifact_root_uri: str = "mlflow-artifacts:/0") -> None:
    from common.clock import now_ms

    now = now_ms()
    await db[EXPERIMENTS].update_one(
        {"_id": DEFAULT_EXPERIMENT_ID},
        {"$setOnInsert": {
            "name": DEFAULT_EXPERIMENT_NAME,
            "artifact_location": artifact_root_uri,
            "lifecycle_stage": "active",
            "creation_time": now,
            "last_update_time": now,
            "tags": {},
        }},
        upsert=True,
    )
    # The counter starts after the default experiment; $max keeps it monotonic if it exists.
    await db[COUNTERS].update_one({"_id": "experiment_id"}, {"$max": {"seq": 0}}, upsert=True)


async def ensure_indexes(db: AsyncDatabase) -> None:
    for collection, models in INDEXES.items():
        await db[collection].create_indexes(models)


async def is_mongos(client: AsyncMongoClient) -> bool:
    hello = await client.admin.command("hello")
    return hello.get("msg") == "isdbgrid"


async def shard_collections(client: AsyncMongoClient, db_name: str) -> list[str]:
    """Enable sharding and shard the big collections. Idempotent: already-sharded is fine."""
    done: list[str] = []
    try:
        await client.admin.command("enableSharding", db_name)
    except Exception as exc:  # already enabled on some versions raises; on 6+ it is a no-op
        log.info("enableSharding: %s", exc)
    for collection, key in SHARD_KEYS.items():
        try:
            await client.admin.command("shardCollection", f"{db_name}.{collection}", key=key)
            done.append(collection)
        except Exception as exc:
            if "already" in str(exc).lower():
                done.append(collection)
            else:
                raise
    return done


async def init_db(client: AsyncMongoClient, db_name: str) -> dict[str, Any]:
    """`genesis-flow init-db`: indexes, default experiment, shard keys on a mongos. Idempotent."""
    db = client[db_name]
    sharded: list[str] = []
    if await is_mongos(client):
        sharded = await shard_collections(client, db_name)
    await ensure_indexes(db)
    await ensure_default_experiment(db)
    return {"database": db_name, "indexes": {c: [m.document["name"] for m in ms] for c, ms in INDEXES.items()},
            "sharded": sharded}
