"""Soak under faults: many stock MLflow clients stream log-batches through nginx for a long time
while a dependency fails every few minutes; at the end, every acknowledged point must be stored
exactly once, no client may have raised, and every tier's memory must be where it started.

    python bench/soak.py                          # 50 clients, 30 minutes, a fault every 3 minutes
    python bench/soak.py --minutes 5 --clients 8  # a short look

The stack is the distributed one (writer, ingest, query, nginx; tests/stack.py) on the local
RabbitMQ and a MongoDB wire server of its own (so it can be frozen and restarted). Faults cycle
through: RabbitMQ stopped, MongoDB frozen (SIGSTOP), writer killed (SIGKILL, restarted after the
fault). Prints progress and a JSON summary (also written to bench/results/soak-<time>.json):
acknowledged vs stored points, duplicates, client exceptions, each tier's RSS at start, peak and
end. Numbers, not pass/fail; the exit status is non-zero only if a point was lost or duplicated.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from genesis_flow.embedded import find_embedded_server  # noqa: E402
from tests.faults.conftest import CLIENT_DEFAULTS, OwnMongo  # noqa: E402
from tests.faults.streaming import Fleet  # noqa: E402
from tests.services import free_port, rabbitmq_start, rabbitmq_stop, start_services  # noqa: E402
from tests.stack import Stack, make_stack  # noqa: E402


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (nginx workers, server threads share it)."""
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def faults(stack: Stack, mongo: OwnMongo) -> list[tuple[str, Callable[[], None], Callable[[], None]]]:
    return [
        ("rabbitmq-stopped", rabbitmq_stop, rabbitmq_start),
        ("mongodb-frozen", mongo.freeze, mongo.thaw),
        ("writer-killed", lambda: stack.kill("writer", signal.SIGKILL), lambda: stack.start("writer")),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--per-call", type=int, default=200, help="metrics per log-batch")
    ap.add_argument("--fault-every", type=float, default=180, help="seconds between fault starts")
    ap.add_argument("--fault-seconds", type=float, default=30)
    args = ap.parse_args()
    os.environ.update(CLIENT_DEFAULTS)  # the stock client's own retry settings

    server = find_embedded_server()
    if server is None:
        raise SystemExit("no MongoDB wire server (SecantusDB) found")
    services, cleanup = start_services()
    mongo = OwnMongo(server.argv, free_port(), Path(tempfile.mkdtemp(prefix="soak-mongo-")) / "data")
    mongo.data.mkdir()
    mongo.start()
    stack = make_stack(services, "soak", GENESIS_FLOW_MONGODB_URI=mongo.uri, GENESIS_FLOW_LOG_LEVEL="WARNING")
    summary: dict = {"clients": args.clients, "minutes": args.minutes, "per_call": args.per_call,
                     "fault_every_s": args.fault_every, "fault_s": args.fault_seconds, "mongodb_server": server.name}
    try:
        for tier in ("writer", "ingest", "query"):
            stack.start(tier)
        url = stack.start_router()
        from mlflow import MlflowClient

        exp = MlflowClient(tracking_uri=url).create_experiment(f"soak-{int(time.time())}")
        fleet = Fleet.start(url, exp, clients=args.clients, per_call=args.per_call)
        time.sleep(20)  # warm up before the first memory sample
        tiers = ("ingest", "query", "writer")
        start_rss = {t: rss_mib(stack.procs[t].pid) for t in tiers}
        peak = dict(start_rss)
        print(f"RSS at start (MiB): {start_rss}", flush=True)
        begin = time.monotonic()
        end_at = begin + args.minutes * 60
        cycle = faults(stack, mongo)
        applied: list[str] = []
        next_fault = begin + args.fault_every / 2
        while time.monotonic() < end_at:
            if time.monotonic() >= next_fault and time.monotonic() + args.fault_seconds < end_at:
                name, down, up = cycle[len(applied) % len(cycle)]
                print(f"[{time.monotonic() - begin:6.0f}s] fault: {name} for {args.fault_seconds:.0f}s; "
                      f"acknowledged so far {fleet.acked}, client exceptions {len(fleet.errors)}", flush=True)
                down()
                time.sleep(args.fault_seconds)
                up()
                applied.append(name)
                next_fault += args.fault_every
            for t in tiers:
                if t in stack.procs:
                    peak[t] = max(peak[t], rss_mib(stack.procs[t].pid))
            time.sleep(2)
        elapsed = time.monotonic() - begin
        time.sleep(10)  # after the last fault the backlog drains before the end sample
        end_rss = {t: rss_mib(stack.procs[t].pid) for t in tiers}
        fleet.stop()
        acked, stored, duplicates = fleet.wait_stored(timeout=600)
        summary.update(
            faults=applied, seconds=round(elapsed), acknowledged=acked, stored=stored, duplicates=duplicates,
            client_exceptions=len(fleet.errors), first_exceptions=fleet.errors[:5],
            metrics_per_s=round(acked / elapsed), rss_mib={"start": start_rss, "peak": peak, "end": end_rss},
            note="the writer is restarted by the writer-killed fault: its start and end RSS are different processes")
    finally:
        stack.stop()
        mongo.stop()
        cleanup()
    out = REPO / "bench" / "results" / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    print(f"written to {out}")
    return 0 if summary.get("stored") == summary.get("acknowledged") and not summary.get("duplicates") else 1


if __name__ == "__main__":
    sys.exit(main())
