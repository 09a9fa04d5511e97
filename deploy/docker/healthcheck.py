"""Docker HEALTHCHECK for the Genesis-Flow image: GET /health of the tier this container runs.

One image runs every tier on its own port (`genesis-flow ingest|writer|query|standalone`, port
from `--port`, else GENESIS_FLOW_PORT, else the tier's default), so the check finds the running
tier in /proc instead of assuming a port. A container that runs no server (`init-db`, `dlq`) has
nothing to check and counts as healthy. Standard library only: it runs every few seconds.
Kubernetes does not use it (the manifests in deploy/k8s probe /health and /ready themselves).
"""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

# common/settings.py DEFAULT_PORTS (tests/ops/test_deploy.py keeps the two equal)
DEFAULT_PORTS = {"standalone": 5000, "ingest": 5001, "query": 5002, "writer": 5003}


def server_port(argv: Sequence[str], env: Mapping[str, str]) -> int | None:
    """The port a `genesis-flow <tier>` (or `python -m <tier>`) command line listens on; None
    when the command runs no server."""
    tier = next((arg for arg in argv[1:] if arg in DEFAULT_PORTS), None)
    if tier is None:
        return None
    flag = None
    for i, arg in enumerate(argv):  # both argparse spellings; the last one wins, as in argparse
        if arg == "--port" and i + 1 < len(argv):
            flag = argv[i + 1]
        elif arg.startswith("--port="):
            flag = arg.split("=", 1)[1]
    if flag is not None:
        return int(flag)
    if env.get("GENESIS_FLOW_PORT"):
        return int(env["GENESIS_FLOW_PORT"])
    return DEFAULT_PORTS[tier]


def running_commands(proc: Path = Path("/proc")) -> Iterable[list[str]]:
    for cmdline in sorted(proc.glob("[0-9]*/cmdline"), key=lambda p: int(p.parent.name)):
        try:
            raw = cmdline.read_bytes()
        except OSError:  # the process ended meanwhile
            continue
        argv = [part.decode(errors="replace") for part in raw.split(b"\0") if part]
        # `genesis-flow <tier>` (run by its venv's python) or `python -m <tier>`
        if any("genesis-flow" in part or part in DEFAULT_PORTS for part in argv[:3]):
            yield argv


def main(proc: Path = Path("/proc")) -> int:
    ports = {port for argv in running_commands(proc) if (port := server_port(argv, os.environ)) is not None}
    if not ports:
        return 0  # init-db, dlq ...: a one-shot command, nothing to probe
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via HTTP_PROXY
    for port in sorted(ports):
        try:
            with direct.open(f"http://127.0.0.1:{port}/health", timeout=3) as resp:
                if resp.status != 200:
                    print(f"/health on port {port} answered {resp.status}", file=sys.stderr)
                    return 1
        except OSError as exc:
            print(f"/health on port {port}: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
