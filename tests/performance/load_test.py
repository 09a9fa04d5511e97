"""The production checklist's load test: simulated training jobs against a tracking URI, on Locust.

    python tests/performance/load_test.py --tracking-uri https://your-domain.com --workers 10 \\
        --output performance-results.json

Each Locust user is one training job, speaking the MLflow REST API the way the stock client does:
it creates an experiment and a run, then logs metrics one by one (`log_metric`) and in batches
(`log_metrics`), logs a param now and then, searches runs, and every so often finishes its run
and starts a new one. `--workers` is the number of concurrent users (jobs), all started within
`--ramp-up` seconds; the timed load lasts `--duration` seconds after that.

The results are checked against the checklist's `performance_requirements`
(`validate_performance_requirements`) and written as JSON: the requirements, what was measured,
one pass/fail per requirement, and Locust's per-endpoint statistics. The exit status is 0 only
when every requirement holds (and no request failed).

Latency requirements are judged on the 95th percentile (Locust's own estimate), not the maximum:
one slow request among thousands is what p99/max report, and they are in the JSON too.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

# Locust monkey-patches the standard library with gevent on import; nothing else in this file
# may have opened sockets before it.
import gevent
from locust import HttpUser, between, events, task
from locust.env import Environment
from locust.stats import StatsEntry

from perf_requirements import PERFORMANCE_REQUIREMENTS, validate_performance_requirements

API = "/api/2.0/mlflow"

BATCH_METRICS = 10


class TrainingJob(HttpUser):
    """One training job: its experiment, its current run, a step counter."""

    wait_time = between(0.0, 0.05)

    def on_start(self) -> None:
        self.step = 0
        name = f"load-test-{uuid.uuid4().hex[:12]}"
        with self.client.post(f"{API}/experiments/create", json={"name": name},
                              name="experiments/create", catch_response=True) as resp:
            self.experiment_id = _json(resp).get("experiment_id")
        self.run_id = None
        self.start_run()

    def start_run(self) -> None:
        if self.experiment_id is None:
            return
        body = {"experiment_id": self.experiment_id, "start_time": _now_ms(), "run_name": f"job-{self.step}",
                "tags": [{"key": "mlflow.user", "value": "load-test"},
                         {"key": "mlflow.source.type", "value": "LOCAL"}]}
        with self.client.post(f"{API}/runs/create", json=body, name="runs/create", catch_response=True) as resp:
            self.run_id = _json(resp).get("run", {}).get("info", {}).get("run_id")
        self.step = 0

    @task(20)
    def log_metric(self) -> None:
        if self.run_id is None:
            return self.start_run()
        self.step += 1
        body = {"run_id": self.run_id, "run_uuid": self.run_id, "key": "loss", "value": random.random(),
                "timestamp": _now_ms(), "step": self.step}
        with self.client.post(f"{API}/runs/log-metric", json=body, name="runs/log-metric",
                              catch_response=True) as resp:
            if _json(resp) is not None:
                METRICS_LOGGED.add(1)

    @task(5)
    def log_batch(self) -> None:
        if self.run_id is None:
            return self.start_run()
        self.step += 1
        now = _now_ms()
        metrics = [{"key": f"m{i}", "value": random.random(), "timestamp": now, "step": self.step}
                   for i in range(BATCH_METRICS)]
        with self.client.post(f"{API}/runs/log-batch", json={"run_id": self.run_id, "metrics": metrics},
                              name="runs/log-batch", catch_response=True) as resp:
            if _json(resp) is not None:
                METRICS_LOGGED.add(BATCH_METRICS)

    @task(1)
    def log_param(self) -> None:
        if self.run_id is None:
            return self.start_run()
        body = {"run_id": self.run_id, "run_uuid": self.run_id, "key": f"p{self.step}", "value": str(self.step)}
        with self.client.post(f"{API}/runs/log-parameter", json=body, name="runs/log-parameter",
                              catch_response=True) as resp:
            _json(resp)

    @task(2)
    def search(self) -> None:
        if self.experiment_id is None:
            return
        body = {"experiment_ids": [self.experiment_id], "filter": "metrics.loss < 0.5",
                "order_by": ["metrics.loss DESC"], "max_results": 100}
        with self.client.post(f"{API}/runs/search", json=body, name="runs/search", catch_response=True) as resp:
            _json(resp)

    @task(1)
    def next_run(self) -> None:
        if self.run_id is not None:
            body = {"run_id": self.run_id, "run_uuid": self.run_id, "status": "FINISHED", "end_time": _now_ms()}
            with self.client.post(f"{API}/runs/update", json=body, name="runs/update", catch_response=True) as resp:
                _json(resp)
        self.start_run()


class _Counter:
    """Metric values the server accepted (a log-batch counts its metrics)."""

    def __init__(self) -> None:
        self.value = 0

    def add(self, n: int) -> None:
        self.value += n  # greenlets do not preempt between these bytecodes


METRICS_LOGGED = _Counter()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _json(resp: Any) -> dict[str, Any] | None:
    """The response's JSON on 200; otherwise mark the request failed (with MLflow's error) and None."""
    if resp.status_code != 200:
        resp.failure(f"HTTP {resp.status_code}: {resp.text[:200]}")
        return None
    try:
        return resp.json()
    except ValueError:
        resp.failure(f"not JSON: {resp.text[:200]}")
        return None


def _entry_stats(entry: StatsEntry) -> dict[str, Any]:
    def p(q: float) -> float | None:
        return round(entry.get_response_time_percentile(q) / 1000, 4) if entry.num_requests else None

    return {
        "requests": entry.num_requests,
        "failures": entry.num_failures,
        "rps": round(entry.total_rps, 2),
        "p50_s": p(0.5), "p95_s": p(0.95), "p99_s": p(0.99),
        "max_s": round(entry.max_response_time / 1000, 4) if entry.num_requests else None,
    }


def measure(env: Environment, peak_users: int, wall_s: float, metrics_logged: int) -> dict[str, Any]:
    stats = env.stats

    def p95(name: str) -> float | None:
        entry = stats.get(name, "POST")
        ok = entry.num_requests - entry.num_failures
        return round(entry.get_response_time_percentile(0.95) / 1000, 4) if ok > 0 else None

    return {
        "experiment_creation_p95_s": p95("experiments/create"),
        "run_creation_p95_s": p95("runs/create"),
        "search_p95_s": p95("runs/search"),
        "metric_logging_rate": round(metrics_logged / wall_s, 1) if wall_s > 0 else 0.0,
        "metrics_logged": metrics_logged,
        "metrics_logged_total": METRICS_LOGGED.value,  # ramp-up included: what the store must hold
        "concurrent_users": peak_users,
        "requests": stats.total.num_requests,
        "failures": stats.total.num_failures,
        "requests_per_s": round(stats.total.num_requests / wall_s, 1) if wall_s > 0 else 0.0,
        "wall_s": round(wall_s, 2),
    }


def run_load(tracking_uri: str, users: int, ramp_up_s: float, duration_s: float) -> dict[str, Any]:
    TrainingJob.host = tracking_uri.rstrip("/")
    env = Environment(user_classes=[TrainingJob], events=events)
    runner = env.create_local_runner()
    peak = 0
    runner.start(users, spawn_rate=max(users / max(ramp_up_s, 0.001), 1.0))
    deadline = time.monotonic() + ramp_up_s + 30  # spawning slower than asked must not hang the test
    while runner.user_count < users and time.monotonic() < deadline:
        gevent.sleep(0.1)
    peak = runner.user_count
    # Time the steady state only: ramp-up requests (the experiment creations) stay in the stats.
    logged0, t0 = METRICS_LOGGED.value, time.monotonic()
    end = t0 + duration_s
    while time.monotonic() < end:
        gevent.sleep(0.2)
        peak = max(peak, runner.user_count)
    wall = time.monotonic() - t0
    logged = METRICS_LOGGED.value - logged0
    runner.quit()
    runner.greenlet.join()
    measured = measure(env, peak, wall, logged)
    return {"measured": measured,
            "endpoints": {name: _entry_stats(entry) for (name, _method), entry in sorted(env.stats.entries.items())},
            "errors": [{"endpoint": e.name, "error": str(e.error), "count": e.occurrences}
                       for e in env.stats.errors.values()][:20]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tracking-uri", required=True, help="the MLflow tracking URI (Genesis-Flow or any MLflow server)")
    p.add_argument("--workers", type=int, default=int(PERFORMANCE_REQUIREMENTS["concurrent_users"]),
                   help="concurrent users (training jobs); the requirement is checked against this run's peak")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of steady load after ramp-up")
    p.add_argument("--ramp-up", type=float, default=5.0, help="seconds to start all users")
    p.add_argument("--output", default="performance-results.json", help="JSON results path")
    p.add_argument("--requirement", action="append", default=[], metavar="NAME=VALUE",
                   help="override one requirement, e.g. concurrent_users=10 (repeatable)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    requirements = dict(PERFORMANCE_REQUIREMENTS)
    for item in args.requirement:
        name, _, value = item.partition("=")
        if name not in requirements or not value:
            raise SystemExit(f"--requirement: expected one of {', '.join(requirements)}=VALUE, got {item!r}")
        requirements[name] = float(value)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    outcome = run_load(args.tracking_uri, args.workers, args.ramp_up, args.duration)
    results = validate_performance_requirements(requirements, outcome["measured"])
    report = {"started": started, "tracking_uri": args.tracking_uri, "workers": args.workers,
              "duration_s": args.duration, "requirements": requirements, "results": results,
              "passed": all(results.values()), **outcome}
    Path(args.output).write_text(json.dumps(report, indent=2))
    m = outcome["measured"]
    print(f"{m['concurrent_users']} users, {m['wall_s']} s: {m['requests']} requests ({m['requests_per_s']}/s), "
          f"{m['failures']} failed, {m['metric_logging_rate']} metrics/s")
    for name, ok in results.items():
        print(f"  {'PASS' if ok else 'FAIL'} {name} (requirement {requirements[name]:g})")
    print(f"results: {args.output}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
