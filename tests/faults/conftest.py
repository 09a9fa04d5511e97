"""The fault suite's stack: its own MongoDB wire server (so freezing or restarting it touches no
other test), the shared RabbitMQ, and writer + two ingest replicas + query behind nginx."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pymongo import MongoClient

from genesis_flow.embedded import find_embedded_server
from tests.services import Services, free_port
from tests.stack import Stack, make_stack

# The stock client's own retry settings (tests/conftest.py shortens them for everything else).
CLIENT_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "7", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "2"}


@dataclass
class OwnMongo:
    """A MongoDB wire server this suite may freeze, stop and start."""

    argv: tuple[str, ...]
    port: int
    data: Path
    proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self, timeout: float = 60) -> None:
        log = open(self.data.parent / "mongodb.log", "ab")
        self.proc = subprocess.Popen([*self.argv, "--host", "127.0.0.1", "--port", str(self.port),
                                      "--storage-path", str(self.data), "--log-level", "WARNING"],
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                MongoClient(self.uri, serverSelectionTimeoutMS=1000).admin.command("ping")
                return
            except Exception:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.3)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)  # a frozen server cannot act on SIGTERM
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def freeze(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)


@pytest.fixture(scope="module")
def own_mongo() -> Iterator[OwnMongo]:
    server = find_embedded_server()
    if server is None:
        pytest.skip("no MongoDB wire server to run privately (SecantusDB)")
    root = Path(tempfile.mkdtemp(prefix="faults-mongo-"))
    (root / "data").mkdir()
    mongo = OwnMongo(server.argv, free_port(), root / "data")
    mongo.start()
    yield mongo
    mongo.stop()


@pytest.fixture(scope="module")
def fault_stack(services: Services, own_mongo: OwnMongo) -> Iterator[Stack]:
    stack = make_stack(services, "fault", GENESIS_FLOW_MONGODB_URI=own_mongo.uri,
                       GENESIS_FLOW_LOG_LEVEL="WARNING")
    try:
        stack.start("writer")
        stack.start("ingest")
        stack.start("ingest", name="ingest2")
        stack.start("query")
        stack.start_router(ingest=("ingest", "ingest2"))
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def client_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in CLIENT_DEFAULTS.items():
        monkeypatch.setenv(name, value)
