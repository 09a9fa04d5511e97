"""`genesis-flow standalone`: ingest, writer and query in one process, on one port.

The same tier code as the distributed stack, composed differently:

* the queue is the in-process transport (committed acks only: a client hears "ok" after the
  event is in MongoDB, so nothing acknowledged lives only in memory);
* MongoDB is a SecantusDB server started as a child process on `--data-dir` (the fast
  `secantusd-rs` when built, else `secantusd-py` from the optional extra
  `genesis-flow[standalone]`; GPL-2.0, so spoken to only over the wire; see `embedded.py`),
  or an external MongoDB when `GENESIS_FLOW_MONGODB_URI` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
from aiohttp import web
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from common.artifacts import open_store
from common.mongo import ensure_default_experiment, ensure_indexes, make_client
from common.settings import Settings
from common.transport.inproc import InprocBroker
from common.web import add_ops_routes, tier_app
from genesis_flow.embedded import INSTALL_HINT, find_embedded_server

log = logging.getLogger(__name__)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _wait_for_mongo(uri: str, proc: subprocess.Popen, log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    client = AsyncMongoClient(uri, serverSelectionTimeoutMS=1000)
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise SystemExit(f"genesis-flow: the embedded MongoDB server exited ({proc.returncode}):\n{tail}")
            try:
                await client.admin.command("ping")
                return
            except Exception:  # not up yet
                await asyncio.sleep(0.2)
        raise SystemExit(f"genesis-flow: the embedded MongoDB server did not answer within {timeout}s (log: {log_path})")
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def embedded_mongodb(data_dir: Path) -> AsyncIterator[str]:
    """Run SecantusDB on `data_dir/mongodb` for the duration; yield its connection URI."""
    server = find_embedded_server()
    if server is None:
        raise SystemExit(INSTALL_HINT)
    storage = data_dir / "mongodb"
    storage.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log_path = data_dir / "mongodb.log"
    print(f"genesis-flow standalone: embedded MongoDB server {server.name} ({' '.join(server.argv)})",
          file=sys.stderr, flush=True)
    with open(log_path, "ab") as log_file:
        # Own session: Ctrl-C reaches us, and we stop the database after the server drained.
        proc = subprocess.Popen([*server.argv, "--host", "127.0.0.1", "--port", str(port), "--storage-path", str(storage),
                                 "--log-level", "WARNING"], stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)
    uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    try:
        await _wait_for_mongo(uri, proc, log_path)
        yield uri
    finally:
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 30)
        except subprocess.TimeoutExpired:
            proc.kill()


def build_app(settings: Settings, db, registry: CollectorRegistry) -> web.Application:
    """One aiohttp app holding all three tiers over the in-process broker."""
    from ingest.app import CLIENT_MAX_SIZE, IngestDeps
    from ingest.app import install as install_ingest
    from query.app import QueryDeps
    from query.app import install as install_query
    from writer.app import WriterDeps
    from writer.app import install as install_writer

    store = open_store(settings.artifact_root, settings.azure_connection_string)
    broker = InprocBroker()
    app = tier_app("standalone", registry, client_max_size=CLIENT_MAX_SIZE)
    probes = {}
    for tier, tier_probes in (
        ("writer", install_writer(app, settings, WriterDeps(db, broker.writer, registry))),
        ("ingest", install_ingest(app, settings, IngestDeps(db, broker.ingest, registry, store))),
        ("query", install_query(app, settings, QueryDeps(db, registry, store))),
    ):
        probes.update({f"{tier}.{name}": probe for name, probe in tier_probes.items()})

    add_ops_routes(app, registry, probes)
    return app


async def run_standalone(settings: Settings, data_dir: Path) -> None:
    from genesis_flow.cli import serve

    # The in-process queue is memory: only committed acks are offered. One writer: no balancing.
    settings = msgspec.structs.replace(settings, ack_mode="committed", writer_rebalance_interval_s=0)
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    if not os.environ.get("GENESIS_FLOW_ARTIFACT_ROOT") and not os.environ.get("MLFLOW_DEFAULT_ARTIFACT_ROOT"):
        settings = msgspec.structs.replace(settings, artifact_root=(data_dir / "artifacts").as_uri())
    async with contextlib.AsyncExitStack() as stack:
        uri = settings.mongodb_uri if os.environ.get("GENESIS_FLOW_MONGODB_URI") else \
            await stack.enter_async_context(embedded_mongodb(data_dir))
        registry = CollectorRegistry()
        client = make_client(uri, app_name="genesis-flow-standalone", registry=registry)
        stack.push_async_callback(client.close)
        db = client[settings.mongodb_db]
        await ensure_indexes(db)
        await ensure_default_experiment(db)
        app = build_app(settings, db, registry)
        print(f"genesis-flow standalone: data in {data_dir}", file=sys.stderr, flush=True)
        await serve(app, settings.host, settings.port, "genesis-flow standalone")
