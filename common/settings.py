"""Every tier reads its options here, once: environment variables (12-factor), flags override."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

AckMode = Literal["committed", "enqueued"]

DEFAULT_PORTS = {"standalone": 5000, "router": 5000, "ingest": 5001, "query": 5002, "writer": 5003}


class Settings(msgspec.Struct, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 5000
    mongodb_uri: str = "mongodb://127.0.0.1:27017/?directConnection=true"
    mongodb_db: str = "mlflow_db"
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    artifact_root: str = "file:./genesis-data/artifacts"
    azure_connection_string: str | None = None
    strict_input_validation: bool = False
    # --- queue ---
    queue_prefix: str = "genesis"
    partitions: int = 8
    ack_mode: AckMode = "committed"
    commit_timeout_s: float = 15.0
    commit_degraded_wait_s: float = 1.0
    outage_hold_s: float = 10.0
    mongodb_timeout_ms: int = 5000
    publish_timeout_s: float = 5.0
    max_inflight_publishes: int = 4096
    queue_max_length: int = 2_000_000
    delivery_limit: int = 5
    # --- writer ---
    prefetch: int = 4000
    batch_max_events: int = 4000
    batch_max_points: int = 50_000
    # Group commit without lingering: a batch is whatever arrived while the previous one was being
    # written. Waiting for more only added latency (one log-metric client: p50 12.4 ms with 5 ms,
    # 6.1 ms with 0); under load the batches fill anyway.
    batch_max_wait_ms: int = 0
    metric_bucket_size: int = 1000
    # Batches a writer applies at once (never two of one partition): overlapping MongoDB round trips
    # pays where MongoDB is remote and the writer waits on the network; on a 2-core machine that runs
    # everything it cost throughput (log-metric, 8 clients: 448 req/s with 1, 381-384 with 4).
    writer_inflight_batches: int = 1
    writer_rebalance_interval_s: float = 2.0  # 0 turns partition balancing off
    # --- ingest ---
    run_cache_ttl_s: float = 2.0
    max_artifact_bytes: int = 20 * 1024**3
    max_concurrent_uploads: int = 64
    # --- security (common/auth, common/ratelimit.py, common/browser_policy.py) ---
    auth: Literal["none", "basic"] = "none"
    auth_default_permission: Literal["NO_PERMISSIONS", "READ", "USE", "EDIT", "MANAGE"] = "READ"
    auth_admin_username: str = "admin"  # the first admin (MLflow's variables), created when no such user exists
    auth_admin_password: str = ""  # a secret: Settings are never logged
    auth_cache_ttl_s: float = 10.0  # verified credentials and permission grants are reused this long
    rate_limit_writes: str = ""  # "<requests per second>[/<burst>]" per identity; empty: no limit
    rate_limit_search: str = ""
    rate_limit_artifacts: str = ""
    allowed_hosts: str = ""  # MLFLOW_SERVER_ALLOWED_HOSTS, comma separated; empty: any Host
    cors_allowed_origins: str = ""  # MLFLOW_SERVER_CORS_ALLOWED_ORIGINS, comma separated
    x_frame_options: str = "SAMEORIGIN"  # MLFLOW_SERVER_X_FRAME_OPTIONS; NONE drops the header
    # --- process ---
    instance_id: str = ""
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"

    def __post_init__(self) -> None:
        if not self.instance_id:
            self.instance_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        if self.partitions < 1:
            raise ValueError("partitions must be >= 1")


# env var -> Settings field; the first name present wins (aliases after the primary name).
_ENV: dict[str, tuple[str, ...]] = {
    "host": ("GENESIS_FLOW_HOST",),
    "log_format": ("GENESIS_FLOW_LOG_FORMAT",),
    "port": ("GENESIS_FLOW_PORT",),
    "mongodb_uri": ("GENESIS_FLOW_MONGODB_URI",),
    "mongodb_db": ("GENESIS_FLOW_MONGODB_DB",),
    "amqp_url": ("GENESIS_FLOW_AMQP_URL",),
    "artifact_root": ("GENESIS_FLOW_ARTIFACT_ROOT", "MLFLOW_DEFAULT_ARTIFACT_ROOT"),
    "azure_connection_string": ("AZURE_STORAGE_CONNECTION_STRING",),
    "strict_input_validation": ("MLFLOW_STRICT_INPUT_VALIDATION",),
    "queue_prefix": ("GENESIS_FLOW_QUEUE_PREFIX",),
    "partitions": ("GENESIS_FLOW_PARTITIONS",),
    "ack_mode": ("GENESIS_FLOW_ACK_MODE",),
    "commit_timeout_s": ("GENESIS_FLOW_COMMIT_TIMEOUT_S",),
    "commit_degraded_wait_s": ("GENESIS_FLOW_COMMIT_DEGRADED_WAIT_S",),
    "outage_hold_s": ("GENESIS_FLOW_OUTAGE_HOLD_S",),
    "mongodb_timeout_ms": ("GENESIS_FLOW_MONGODB_TIMEOUT_MS",),
    "publish_timeout_s": ("GENESIS_FLOW_PUBLISH_TIMEOUT_S",),
    "max_inflight_publishes": ("GENESIS_FLOW_MAX_INFLIGHT_PUBLISHES",),
    "queue_max_length": ("GENESIS_FLOW_QUEUE_MAX_LENGTH",),
    "delivery_limit": ("GENESIS_FLOW_DELIVERY_LIMIT",),
    "prefetch": ("GENESIS_FLOW_PREFETCH",),
    "batch_max_events": ("GENESIS_FLOW_BATCH_MAX_EVENTS",),
    "batch_max_points": ("GENESIS_FLOW_BATCH_MAX_POINTS",),
    "batch_max_wait_ms": ("GENESIS_FLOW_BATCH_MAX_WAIT_MS",),
    "metric_bucket_size": ("GENESIS_FLOW_METRIC_BUCKET_SIZE",),
    "writer_inflight_batches": ("GENESIS_FLOW_WRITER_INFLIGHT_BATCHES",),
    "writer_rebalance_interval_s": ("GENESIS_FLOW_WRITER_REBALANCE_INTERVAL_S",),
    "run_cache_ttl_s": ("GENESIS_FLOW_RUN_CACHE_TTL_S",),
    "max_artifact_bytes": ("GENESIS_FLOW_MAX_ARTIFACT_BYTES",),
    "max_concurrent_uploads": ("GENESIS_FLOW_MAX_CONCURRENT_UPLOADS",),
    "instance_id": ("GENESIS_FLOW_INSTANCE_ID",),
    "log_level": ("GENESIS_FLOW_LOG_LEVEL",),
    "auth": ("GENESIS_FLOW_AUTH",),
    "auth_default_permission": ("GENESIS_FLOW_AUTH_DEFAULT_PERMISSION",),
    "auth_admin_username": ("MLFLOW_AUTH_ADMIN_USERNAME",),
    "auth_admin_password": ("MLFLOW_AUTH_ADMIN_PASSWORD",),
    "auth_cache_ttl_s": ("GENESIS_FLOW_AUTH_CACHE_TTL_S",),
    "rate_limit_writes": ("GENESIS_FLOW_RATE_LIMIT_WRITES",),
    "rate_limit_search": ("GENESIS_FLOW_RATE_LIMIT_SEARCH",),
    "rate_limit_artifacts": ("GENESIS_FLOW_RATE_LIMIT_ARTIFACTS",),
    "allowed_hosts": ("MLFLOW_SERVER_ALLOWED_HOSTS",),
    "cors_allowed_origins": ("MLFLOW_SERVER_CORS_ALLOWED_ORIGINS",),
    "x_frame_options": ("MLFLOW_SERVER_X_FRAME_OPTIONS",),
}


def load_settings(tier: str, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build Settings for `tier` from `env` (default: os.environ); non-None overrides win."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {"port": DEFAULT_PORTS.get(tier, 5000)}
    for field, names in _ENV.items():
        for name in names:
            if env.get(name) not in (None, ""):
                raw[field] = env[name]
                break
    raw.update({k: v for k, v in overrides.items() if v is not None})
    if "strict_input_validation" in raw and isinstance(raw["strict_input_validation"], str):
        raw["strict_input_validation"] = raw["strict_input_validation"].strip().lower() in ("1", "true", "yes", "on")
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SystemExit(f"genesis-flow: invalid configuration: {exc}") from None
