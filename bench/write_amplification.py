"""Write amplification of the write path, measured on a running stack.

Counts, per scenario, the queue messages ingest published and the MongoDB documents the writer
wrote (both read from the tiers' /metrics), and prints them per 1,000 logged metrics.

    python bench/write_amplification.py --ingest http://127.0.0.1:5001 --writer http://127.0.0.1:5003

With no URLs it starts its own ingest + writer on the local test servers (scripts/services.sh).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import uuid
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

API = "/api/2.0/mlflow"


def scrape(url: str, name: str) -> dict[str, float]:
    text = requests.get(url + "/metrics", timeout=10).text
    out: dict[str, float] = {}
    for labels, value in re.findall(rf"^{name}(\{{[^}}]*\}})? ([0-9.e+]+)$", text, re.M):
        out[labels or ""] = float(value)
    return out


def counters(ingest: str, writer: str) -> dict[str, float]:
    docs = scrape(writer, "genesis_writer_documents_written_total")
    return {
        "messages": sum(scrape(ingest, "genesis_ingest_events_published_total").values()),
        "documents": sum(docs.values()),
        "bucket_docs": sum(v for k, v in docs.items() if 'collection="metrics"' in k),
        "run_docs": sum(v for k, v in docs.items() if 'collection="runs"' in k),
    }


def post(ingest: str, path: str, body: dict) -> None:
    resp = requests.post(ingest + API + path, json=body, timeout=60)
    resp.raise_for_status()


def new_run(ingest: str) -> str:
    resp = requests.post(ingest + API + "/experiments/create", json={"name": f"wa-{uuid.uuid4().hex[:8]}"}, timeout=30)
    exp = resp.json()["experiment_id"]
    return requests.post(ingest + API + "/runs/create", json={"experiment_id": exp}, timeout=30).json()["run"]["info"]["run_id"]


def scenarios(ingest: str):
    """name -> function that creates its run, then returns (work, metrics, requests)."""
    now = int(time.time() * 1000)

    def one_key_batches():
        run = new_run(ingest)

        def work():
            for b in range(10):
                post(ingest, "/runs/log-batch", {"run_id": run, "metrics": [
                    {"key": "loss", "value": i * 0.1, "timestamp": now + i, "step": b * 1000 + i} for i in range(1000)]})
        return work, 10_000, 10

    def hundred_key_batches():
        run = new_run(ingest)

        def work():
            for b in range(10):
                post(ingest, "/runs/log-batch", {"run_id": run, "metrics": [
                    {"key": f"k{i % 100}", "value": 1.0, "timestamp": now + b, "step": b * 10 + i // 100}
                    for i in range(1000)]})
        return work, 10_000, 10

    def single_log_metric(threads: int):
        def setup():
            run = new_run(ingest)

            def one_client(offset: int) -> None:
                for i in range(offset, 1000, threads):
                    post(ingest, "/runs/log-metric",
                         {"run_id": run, "key": "acc", "value": 0.5, "timestamp": now + i, "step": i})

            def work():
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(threads) as pool:
                    list(pool.map(one_client, range(threads)))
            return work, 1_000, 1000
        return setup

    return {"log-batch, 1000 metrics of 1 key": one_key_batches,
            "log-batch, 1000 metrics over 100 keys": hundred_key_batches,
            "log-metric, 1 client (each request commits alone)": single_log_metric(1),
            "log-metric, 16 concurrent clients (group commit)": single_log_metric(16)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ingest")
    parser.add_argument("--writer")
    args = parser.parse_args()
    stack = None
    if not (args.ingest and args.writer):
        from tests.services import start_services
        from tests.stack import make_stack

        services, _ = start_services()
        stack = make_stack(services, "bench")
        stack.start("writer")
        stack.start("ingest")
        args.ingest, args.writer = stack.url("ingest"), stack.url("writer")
    try:
        print(f"{'scenario':50} {'metrics':>8} {'requests':>8} {'msgs/req':>8} {'docs/1k metrics':>16} {'buckets/1k':>10} {'runs/1k':>8}")
        for name, scenario in scenarios(args.ingest).items():
            work, n_metrics, n_requests = scenario()
            time.sleep(0.5)
            before = counters(args.ingest, args.writer)
            work()
            time.sleep(0.5)
            after = counters(args.ingest, args.writer)
            d = {k: after[k] - before[k] for k in after}
            per_k = 1000 / n_metrics
            print(f"{name:50} {n_metrics:8d} {n_requests:8d} {d['messages'] / n_requests:8.2f} "
                  f"{d['documents'] * per_k:16.1f} {d['bucket_docs'] * per_k:10.1f} {d['run_docs'] * per_k:8.1f}")
    finally:
        if stack is not None:
            stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
