"""Run Genesis-Flow tiers as real processes against the real test servers.

Each Stack gets its own MongoDB database and queue prefix, so stacks run side by side and
tests do not see each other's data. Processes log to files in the stack's directory; on a
failed start the log tail is part of the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.services import Services, free_port, start_nginx, unique_name

REPO = Path(__file__).resolve().parent.parent
ROUTER_TEMPLATE = REPO / "compose" / "nginx" / "genesis-flow.conf.template"


def _command(tier: str, port: int, workdir: Path) -> list[str]:
    if tier == "standalone":
        return [sys.executable, "-m", "genesis_flow.cli", "standalone", "--port", str(port),
                "--data-dir", str(workdir / "standalone-data")]
    return [sys.executable, "-m", tier, "--port", str(port)]


def router_config(listen_port: str, ingest: list[str], query: list[str]) -> str:
    """The shipped router template, filled in the way the nginx image's envsubst does."""
    snippet = ROUTER_TEMPLATE.read_text()
    for name, value in (("GENESIS_LISTEN", listen_port),
                        ("GENESIS_INGEST_SERVERS", " ".join(f"server {a};" for a in ingest)),
                        ("GENESIS_QUERY_SERVERS", " ".join(f"server {a};" for a in query))):
        snippet = snippet.replace("${" + name + "}", value)
    return "worker_processes 1;\nevents { worker_connections 1024; }\nhttp {\n" + snippet + "\n}\n"


@dataclass
class Stack:
    services: Services
    name: str
    env: dict[str, str]
    workdir: Path
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    _stop_router: object = None

    @property
    def db_name(self) -> str:
        return self.env["GENESIS_FLOW_MONGODB_DB"]

    @property
    def queue_prefix(self) -> str:
        return self.env["GENESIS_FLOW_QUEUE_PREFIX"]

    def url(self, tier: str) -> str:
        return f"http://127.0.0.1:{self.ports[tier]}"

    def start(self, tier: str, wait_ready: bool = True, timeout: float = 60, name: str | None = None) -> None:
        """Start `tier` as process `name` (default: the tier; give replicas their own names)."""
        name = name or tier
        if tier == "standalone":
            self.env.pop("GENESIS_FLOW_ARTIFACT_ROOT", None)
        port = self.ports.setdefault(name, free_port())
        log = open(self.workdir / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen(
            _command(tier, port, self.workdir), cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        if wait_ready:
            self.wait_ready(name, timeout)

    def wait_ready(self, tier: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs[tier]
            if proc.poll() is not None:
                raise RuntimeError(f"{tier} exited with {proc.returncode}:\n{self.log_tail(tier)}")
            try:
                with urllib.request.urlopen(self.url(tier) + "/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{tier} not ready after {timeout}s:\n{self.log_tail(tier)}")

    def kill(self, tier: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(tier, None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=20)
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def log_tail(self, tier: str, lines: int = 40) -> str:
        path = self.workdir / f"{tier}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def start_router(self, ingest: tuple[str, ...] = ("ingest",)) -> str:
        """nginx with the shipped config in front of this stack's ingest replicas and query."""
        conf = router_config("127.0.0.1:{{LISTEN_PORT}}", [f"127.0.0.1:{self.ports[name]}" for name in ingest],
                             [f"127.0.0.1:{self.ports['query']}"])
        port, stop = start_nginx(conf)
        self.ports["router"] = port
        self._stop_router = stop
        return self.url("router")

    def stop(self) -> None:
        if self._stop_router is not None:
            self._stop_router()
        for tier in list(self.procs):
            self.kill(tier, signal.SIGTERM)
        asyncio.run(_cleanup(self))


def start_stack(stack: Stack, mode: str) -> Stack:
    """Start `stack` as one tracking URI, `stack.url("uri")`: `standalone` (one process) or
    `distributed` (writer, ingest and query behind nginx with the shipped router config)."""
    if mode == "standalone":
        stack.start("standalone")
        stack.ports["uri"] = stack.ports["standalone"]
    else:
        stack.start("writer")
        stack.start("ingest")
        stack.start("query")
        stack.start_router()
        stack.ports["uri"] = stack.ports["router"]
    return stack


def make_stack(services: Services, name: str = "gf", partitions: int = 4, **env: str) -> Stack:
    stack_name = unique_name(name)
    workdir = Path(tempfile.mkdtemp(prefix=f"{stack_name}-"))
    full_env = {
        **os.environ,
        "GENESIS_FLOW_MONGODB_URI": services.mongodb_uri,
        "GENESIS_FLOW_MONGODB_DB": stack_name,
        "GENESIS_FLOW_AMQP_URL": services.amqp_url,
        "GENESIS_FLOW_QUEUE_PREFIX": stack_name,
        "GENESIS_FLOW_PARTITIONS": str(partitions),
        "AZURE_STORAGE_CONNECTION_STRING": services.azure_connection_string,
        # Azure Blob (Azurite) for the distributed tiers; standalone stacks drop this and keep
        # artifacts in files under their data dir.
        "GENESIS_FLOW_ARTIFACT_ROOT": f"azure://{stack_name.replace('_', '-')}/artifacts",
        "GENESIS_FLOW_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    return Stack(services=services, name=stack_name, env=full_env, workdir=workdir)


async def _cleanup(stack: Stack) -> None:
    """Drop the stack's database and delete its queues (quorum queues hold broker resources)."""
    import aio_pika
    from pymongo import AsyncMongoClient

    client = AsyncMongoClient(stack.services.mongodb_uri, serverSelectionTimeoutMS=3000)
    with contextlib.suppress(Exception):
        await client.drop_database(stack.db_name)
    await client.close()
    root = stack.env.get("GENESIS_FLOW_ARTIFACT_ROOT", "")
    if root.startswith("azure://"):
        from azure.storage.blob.aio import BlobServiceClient

        container = root[len("azure://"):].split("/", 1)[0]
        async with BlobServiceClient.from_connection_string(stack.services.azure_connection_string) as blobs:
            with contextlib.suppress(Exception):
                await blobs.delete_container(container)
    partitions = int(stack.env["GENESIS_FLOW_PARTITIONS"])
    names = [f"{stack.queue_prefix}.events.{i}" for i in range(partitions)] + [f"{stack.queue_prefix}.dlq"]
    with contextlib.suppress(Exception):
        conn = await aio_pika.connect(stack.services.amqp_url, timeout=5)
        async with conn:
            for queue in names:
                channel = await conn.channel()
                with contextlib.suppress(Exception):
                    await channel.queue_delete(queue)
