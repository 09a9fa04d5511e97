"""What authentication costs on the hottest path: log-batch throughput with auth off and on.

Two Genesis-Flow stacks of the same kind run side by side on the local test servers, one with
`GENESIS_FLOW_AUTH=basic`; the same log-batch load (bench/compare.py's request streams) goes to
each in alternating rounds, as the admin user with HTTP Basic on both (the stack without auth
ignores the header). Verified credentials are cached (`GENESIS_FLOW_AUTH_CACHE_TTL_S`), so the
cost per request is the cache lookup and the permission check, not a password hash.

    python bench/auth_overhead.py [--target standalone|distributed] [--rounds 3]

Prints throughput per round and the ratio of the medians (the goal: auth costs at most 10%).
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.compare import (Server, create_experiment, create_runs, log, log_batch_bodies,  # noqa: E402
                           run_phase)
from tests.services import start_services  # noqa: E402
from tests.stack import Stack, make_stack, start_stack  # noqa: E402

ADMIN, PASSWORD = "bench-admin", "bench-admin-password"


def start(target: str, services, auth: bool) -> tuple[Stack, str]:
    env = {"GENESIS_FLOW_AUTH": "basic", "MLFLOW_AUTH_ADMIN_USERNAME": ADMIN,
           "MLFLOW_AUTH_ADMIN_PASSWORD": PASSWORD} if auth else {"GENESIS_FLOW_AUTH": "none"}
    stack = start_stack(make_stack(services, "authon" if auth else "authoff", **env), target)
    return stack, stack.url("uri")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", choices=("standalone", "distributed"), default="distributed")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--requests", type=int, default=30, help="log-batch requests of 1,000 metrics per client")
    p.add_argument("--out", help="JSON results path")
    args = p.parse_args()
    header = {"Authorization": "Basic " + base64.b64encode(f"{ADMIN}:{PASSWORD}".encode()).decode()}
    services, cleanup = start_services()
    stacks: list[Stack] = []
    results: dict[str, list[float]] = {"off": [], "on": []}
    try:
        servers = {}
        for mode in ("off", "on"):
            stack, url = start(args.target, services, mode == "on")
            stacks.append(stack)
            servers[mode] = Server(mode, url, lambda table: {})
        for r in range(args.rounds):
            for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):
                s = servers[mode]
                exp = create_experiment(s, f"auth-{mode}-{r}-{time.time_ns()}", header)
                runs = create_runs(s, exp, [f"c{c}" for c in range(args.clients)], header)
                streams = [log_batch_bodies(runs[c], c, args.requests + 2, 1000, 10) for c in range(args.clients)]
                o = run_phase(s, args.clients, streams, 300, warmup=2, headers=header)
                if o.errors:
                    raise SystemExit(f"auth {mode}: {o.errors} failed requests: {o.error_samples}")
                rate = o.ok * 1000 / o.wall
                results[mode].append(rate)
                log(f"round {r + 1} auth {mode}: {rate:,.0f} metrics/s")
    finally:
        for stack in stacks:
            stack.stop()
        cleanup()
    off, on = statistics.median(results["off"]), statistics.median(results["on"])
    print(f"log-batch, {args.clients} clients x {args.requests} x 1,000 metrics, {args.target}, medians of "
          f"{args.rounds} rounds: auth off {off:,.0f} metrics/s, auth on {on:,.0f} metrics/s "
          f"({100 * (on / off - 1):+.1f}%)")
    if args.out:
        Path(args.out).write_text(json.dumps({"target": args.target, "rounds": results, "median_off": off,
                                              "median_on": on, "change_pct": round(100 * (on / off - 1), 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
