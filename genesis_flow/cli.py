"""`genesis-flow`: one command, one subcommand per process kind, plus operator tools.

This package is the only place that knows every tier: it composes them (standalone) and starts
them (one tier per process). The tiers never import each other.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from common.settings import Settings, load_settings

log = logging.getLogger("genesis_flow")


def _add_server_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=None, help="bind address (GENESIS_FLOW_HOST)")
    p.add_argument("--port", type=int, default=None, help="port (GENESIS_FLOW_PORT)")
    p.add_argument("--mongodb-uri", default=None, help="GENESIS_FLOW_MONGODB_URI")
    p.add_argument("--mongodb-db", default=None, help="GENESIS_FLOW_MONGODB_DB")
    _add_auth_flag(p)


def _add_auth_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--auth", action="store_const", const="basic", default=None,
                   help="require credentials and enforce permissions (GENESIS_FLOW_AUTH=basic)")


def _add_queue_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--amqp-url", default=None, help="GENESIS_FLOW_AMQP_URL")
    p.add_argument("--queue-prefix", default=None, help="GENESIS_FLOW_QUEUE_PREFIX")
    p.add_argument("--partitions", type=int, default=None, help="GENESIS_FLOW_PARTITIONS")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genesis-flow", description="MLflow tracking backend with a write-ahead queue")
    sub = parser.add_subparsers(dest="command", required=True)

    for name, helptext in (("ingest", "validate writes and publish them to the queue"),
                           ("writer", "apply queued events to MongoDB in batches")):
        p = sub.add_parser(name, help=helptext)
        _add_server_flags(p)
        _add_queue_flags(p)
        if name == "ingest":
            p.add_argument("--ack-mode", choices=("committed", "enqueued"), default=None, help="GENESIS_FLOW_ACK_MODE")
            p.add_argument("--artifact-root", default=None, help="GENESIS_FLOW_ARTIFACT_ROOT")

    p = sub.add_parser("query", help="serve the read endpoints from MongoDB")
    _add_server_flags(p)
    p.add_argument("--artifact-root", default=None, help="GENESIS_FLOW_ARTIFACT_ROOT")

    p = sub.add_parser(
        "standalone", help="every tier in one process with embedded storage",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Every tier in one process on one port, with an embedded MongoDB wire-protocol server.",
        epilog="Embedded server, fastest first: secantusd-rs (on PATH or in ~/.cargo/bin), else secantusd-py\n"
               "from the 'standalone' extra (found beside this Python, no PATH needed). For the fast one:\n"
               "  cargo install secantus-mdb --version 0.5.3-beta.196 --ignore-rust-version\n"
               "Set GENESIS_FLOW_MONGODB_URI to use a MongoDB you run instead.")
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 5000)")
    p.add_argument("--data-dir", default="./genesis-data", help="embedded database and artifacts")
    _add_auth_flag(p)

    p = sub.add_parser("init-db", help="create indexes and the Default experiment; shard on a mongos")
    p.add_argument("--mongodb-uri", default=None)
    p.add_argument("--mongodb-db", default=None)

    p = sub.add_parser("dlq", help="inspect and replay the dead-letter queue")
    _add_queue_flags(p)
    dsub = p.add_subparsers(dest="dlq_command", required=True)
    lp = dsub.add_parser("list", help="print dead-lettered events (they stay in the queue)")
    lp.add_argument("--limit", type=int, default=100)
    rp = dsub.add_parser("replay", help="move dead-lettered events back to their partitions")
    rp.add_argument("--limit", type=int, default=None)

    p = sub.add_parser("backup", help="dump MongoDB (mongodump format) and copy artifacts, with checksums")
    p.add_argument("--out", metavar="DIR", default=None, help="take a backup into this new directory")
    p.add_argument("--verify", nargs="?", const="", default=None, metavar="DIR",
                   help="check a backup against its manifest (after --out: the one just taken)")
    p.add_argument("--incremental-from", metavar="DIR", default=None,
                   help="copy only artifacts changed since this backup")
    p.add_argument("--artifacts-to", metavar="URI", default=None,
                   help="copy artifacts to this store, not DIR/artifacts")
    p.add_argument("--no-pause", action="store_true", help="leave the writers running (per-collection consistency)")
    p.add_argument("--pause-timeout", type=float, default=60.0, help="seconds to wait for the writers to pause")
    p.add_argument("--mongodb-uri", default=None)
    p.add_argument("--mongodb-db", default=None)
    p.add_argument("--artifact-root", default=None, help="GENESIS_FLOW_ARTIFACT_ROOT")

    p = sub.add_parser("restore", help="load a backup into the configured database and artifact store")
    p.add_argument("backup_dir", metavar="DIR")
    p.add_argument("--drop", action="store_true", help="empty the target database and artifact store first")
    p.add_argument("--mongodb-uri", default=None)
    p.add_argument("--mongodb-db", default=None)
    p.add_argument("--artifact-root", default=None, help="GENESIS_FLOW_ARTIFACT_ROOT")

    from genesis_flow.migrate.main import add_flags as add_migrate_flags

    add_migrate_flags(sub.add_parser("migrate", help="copy an MLflow tracking store (file, SQL, server) into "
                                                     "Genesis-Flow; --analyze-only reports first"))
    return parser


def _settings(tier: str, args: argparse.Namespace) -> Settings:
    overrides = {k: v for k, v in vars(args).items() if k not in ("command", "dlq_command", "limit", "data_dir")}
    if tier == "standalone" and "GENESIS_FLOW_LOG_FORMAT" not in os.environ:
        overrides["log_format"] = "text"  # a person's terminal, not a log pipeline
    return load_settings(tier, **overrides)


def _configure_logging(settings: Settings, tier: str) -> None:
    from common.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format, tier, settings.instance_id)


def _run(coro_factory: Callable[[], Any]) -> int:
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - uvloop is optional on exotic platforms
        runner = asyncio.Runner()
    with runner:
        return runner.run(coro_factory()) or 0


async def serve(app: web.Application, host: str, port: int, banner: str) -> None:
    """Serve until SIGINT/SIGTERM, then shut down cleanly (cleanup contexts run)."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True, backlog=1024)
    await site.start()
    print(f"{banner} listening on http://{host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def mongo(settings: Settings, app_name: str, registry: Any = None, *,
                bounded: bool = True) -> AsyncIterator[Any]:
    """`bounded`: every operation gives up after GENESIS_FLOW_MONGODB_TIMEOUT_MS (a frozen server
    must turn into a 503 the client retries, not a request that hangs). The writer is unbounded:
    it holds its batch and the broker holds the rest until MongoDB answers again."""
    from common.mongo import make_client

    timeout = {"timeoutMS": settings.mongodb_timeout_ms} if bounded and settings.mongodb_timeout_ms else {}
    client = make_client(settings.mongodb_uri, app_name=app_name, registry=registry, w="majority", **timeout)
    try:
        yield client
    finally:
        await client.close()


async def run_ingest(settings: Settings) -> None:
    from prometheus_client import CollectorRegistry

    from common.artifacts import open_store
    from common.telemetry import setup_tracing
    from common.transport.amqp import AmqpIngestTransport
    from ingest.app import IngestDeps, create_app

    setup_tracing("genesis-flow-ingest")
    registry = CollectorRegistry()
    async with mongo(settings, "genesis-flow-ingest", registry) as client:
        deps = IngestDeps(client[settings.mongodb_db], AmqpIngestTransport(settings), registry,
                          open_store(settings.artifact_root, settings.azure_connection_string))
        await serve(create_app(settings, deps), settings.host, settings.port, "genesis-flow ingest")


async def run_writer(settings: Settings) -> None:
    from prometheus_client import CollectorRegistry

    from common.mongo import ensure_indexes
    from common.telemetry import setup_tracing
    from common.transport.amqp import AmqpWriterTransport
    from writer.app import WriterDeps, create_app

    setup_tracing("genesis-flow-writer")
    registry = CollectorRegistry()
    async with mongo(settings, "genesis-flow-writer", registry, bounded=False) as client:
        db = client[settings.mongodb_db]
        await ensure_indexes(db)  # the unique bucket index is part of the idempotency contract
        deps = WriterDeps(db, AmqpWriterTransport(settings), registry)
        await serve(create_app(settings, deps), settings.host, settings.port, "genesis-flow writer")


async def run_query(settings: Settings) -> None:
    from prometheus_client import CollectorRegistry

    from common.artifacts import open_store
    from common.telemetry import setup_tracing
    from query.app import QueryDeps, create_app

    setup_tracing("genesis-flow-query")
    registry = CollectorRegistry()
    async with mongo(settings, "genesis-flow-query", registry) as client:
        deps = QueryDeps(client[settings.mongodb_db], registry,
                         open_store(settings.artifact_root, settings.azure_connection_string))
        await serve(create_app(settings, deps), settings.host, settings.port, "genesis-flow query")


async def run_init_db(settings: Settings) -> None:
    from common.mongo import init_db

    async with mongo(settings, "genesis-flow-init-db") as client:
        print(json.dumps(await init_db(client, settings.mongodb_db), indent=2))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command
    if command == "migrate":  # a client of the tiers: no server settings
        from genesis_flow.migrate.main import run_args

        return run_args(args)
    settings = _settings(command, args)
    _configure_logging(settings, command)
    if command == "ingest":
        return _run(lambda: run_ingest(settings))
    if command == "writer":
        return _run(lambda: run_writer(settings))
    if command == "query":
        return _run(lambda: run_query(settings))
    if command == "standalone":
        from pathlib import Path

        from genesis_flow.standalone import run_standalone

        return _run(lambda: run_standalone(settings, Path(args.data_dir)))
    if command == "init-db":
        return _run(lambda: run_init_db(settings))
    if command == "dlq":
        from genesis_flow.dlq import run_dlq

        return _run(lambda: run_dlq(settings, args.dlq_command, args.limit))
    if command == "backup":
        from genesis_flow.backup import run_backup

        return _run(lambda: run_backup(settings, out=args.out, verify_dir=args.verify,
                                       incremental_from=args.incremental_from, artifacts_to=args.artifacts_to,
                                       pause=not args.no_pause, pause_timeout_s=args.pause_timeout))
    if command == "restore":
        from genesis_flow.backup import run_restore

        return _run(lambda: run_restore(settings, args.backup_dir, drop=args.drop))
    raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    sys.exit(main())
