"""A 1 GiB artifact through nginx and ingest to Azure Blob (Azurite) and back: bytes stream in
blocks, so ingest's memory does not grow with the file."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
import requests

from tests.services import Services
from tests.stack import make_stack

pytestmark = pytest.mark.integration

GIB = 1024**3
BLOCK = 1024 * 1024


class GeneratedFile:
    """`size` deterministic bytes, produced as read: the test never holds the file either."""

    def __init__(self, size: int):
        self.size = size
        self.sent = 0
        self.sha256 = hashlib.sha256()
        self._pattern = bytes(range(256)) * (BLOCK // 256)

    def __len__(self) -> int:
        return self.size

    def read(self, n: int = -1) -> bytes:
        n = min(self.size - self.sent, BLOCK if n is None or n < 0 else min(n, BLOCK))
        if n <= 0:
            return b""
        offset = self.sent % 251  # shift the pattern so blocks differ
        chunk = (self._pattern[offset:] + self._pattern[:offset])[:n]
        self.sent += n
        self.sha256.update(chunk)
        return chunk


def _peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_one_gib_upload_and_download_through_the_router(services: Services) -> None:
    stack = make_stack(services, "big")
    try:
        stack.start("writer")
        stack.start("ingest")
        stack.start("query")
        uri = stack.start_router()
        path = "1/" + "c" * 32 + "/artifacts/big/blob.bin"
        rss_before = _peak_rss_mib(stack.procs["ingest"].pid)
        body = GeneratedFile(GIB)
        resp = requests.put(f"{uri}/api/2.0/mlflow-artifacts/artifacts/{path}", data=body, timeout=600)
        assert resp.status_code == 200, resp.text
        rss_after = _peak_rss_mib(stack.procs["ingest"].pid)

        digest = hashlib.sha256()
        received = 0
        with requests.get(f"{uri}/api/2.0/mlflow-artifacts/artifacts/{path}", stream=True, timeout=600) as down:
            assert down.status_code == 200
            assert int(down.headers["Content-Length"]) == GIB
            chunks: Iterator[bytes] = down.iter_content(BLOCK)
            for chunk in chunks:
                digest.update(chunk)
                received += len(chunk)
        assert received == GIB
        assert digest.hexdigest() == body.sha256.hexdigest()
        print(f"\ningest peak RSS: {rss_before:.0f} MiB before, {rss_after:.0f} MiB after a 1 GiB upload")
        assert rss_after - rss_before < 100  # blocks in flight, not the file
    finally:
        stack.stop()
