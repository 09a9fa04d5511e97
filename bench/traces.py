"""OTLP span ingest: spans/s from concurrent exporters, Genesis-Flow vs the reference `mlflow server`.

Each of N exporter threads posts OTLP/HTTP protobuf exports to `/v1/traces` (the bytes the
official `opentelemetry-exporter-otlp-proto-http` exporter sends: encoded by its own encoder, once,
before the clock starts, so the client's CPU goes to sending) for a fixed window. A trace is a root
and `--spans-per-trace - 1` children; an export holds `--traces-per-export` whole traces, as a
BatchSpanProcessor would send them. A span counts once its export was answered 200: for both
servers that means committed (the reference writes SQLite synchronously; Genesis-Flow answers in
its default `committed` ack mode). After the window the stored trace count is checked.

    python bench/traces.py [--clients 8] [--seconds 15] [--target distributed|standalone]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.compare import create_experiment, settle, start_genesis, start_reference

RESULTS = Path(__file__).resolve().parent / "results"


class _Collect(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans):
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def make_exports(n: int, traces_per_export: int, spans_per_trace: int) -> list[bytes]:
    """`n` export bodies of fresh traces (random trace ids: every export is new data)."""
    collected = _Collect()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(collected))
    tracer = provider.get_tracer("bench")
    payload = json.dumps({"messages": [{"role": "user", "content": "x" * 200}]})
    for _ in range(n * traces_per_export):
        with tracer.start_as_current_span("agent") as root:
            root.set_attribute("mlflow.spanInputs", payload)
            for i in range(spans_per_trace - 1):
                with tracer.start_as_current_span(f"tool-{i}") as span:
                    span.set_attribute("mlflow.spanType", "TOOL")
                    span.set_attribute("mlflow.spanOutputs", payload)
    provider.shutdown()
    spans = collected.spans
    per_export = traces_per_export * spans_per_trace
    bodies = [encode_spans(spans[i:i + per_export]).SerializeToString() for i in range(0, len(spans), per_export)]
    random.shuffle(bodies)
    return bodies


def run_window(url: str, experiment_id: str, bodies: list[list[bytes]], seconds: float,
               spans_per_export: int) -> dict[str, Any]:
    done = [0] * len(bodies)
    errors: list[str] = []
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def worker(i: int) -> None:
        http = requests.Session()
        headers = {"Content-Type": "application/x-protobuf", "x-mlflow-experiment-id": experiment_id}
        for body in bodies[i]:
            if time.monotonic() >= stop_at:
                break
            t0 = time.perf_counter()
            response = http.post(url + "/v1/traces", data=body, headers=headers, timeout=120)
            elapsed = time.perf_counter() - t0
            with lock:
                if response.status_code == 200:
                    done[i] += 1
                    latencies.append(elapsed)
                else:
                    errors.append(f"{response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(bodies))]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    exports = sum(done)
    latencies.sort()
    return {"exports": exports, "spans": exports * spans_per_export, "seconds": round(elapsed, 2),
            "spans_per_s": round(exports * spans_per_export / elapsed, 1),
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 1) if latencies else None,
            "p95_ms": round(1000 * latencies[int(len(latencies) * 0.95)], 1) if latencies else None,
            "errors": len(errors), "first_errors": errors[:3]}


def stored_traces(url: str, experiment_id: str) -> int:
    """Traces the server lists for the experiment (paging through search)."""
    count, token = 0, None
    while True:
        body: dict[str, Any] = {"locations": [{"type": "MLFLOW_EXPERIMENT",
                                               "mlflow_experiment": {"experiment_id": experiment_id}}],
                                "max_results": 500}
        if token:
            body["page_token"] = token
        page = requests.post(url + "/api/3.0/mlflow/traces/search", json=body, timeout=300).json()
        count += len(page.get("traces", []))
        token = page.get("next_page_token")
        if not token or not page.get("traces"):
            return count


def measure(server, args: argparse.Namespace) -> dict[str, Any]:
    per_client = max(1, int(args.seconds * args.max_exports_per_s))
    exports = make_exports(per_client * args.clients, args.traces_per_export, args.spans_per_trace)
    bodies = [exports[i::args.clients] for i in range(args.clients)]
    experiment_id = create_experiment(server, f"bench-traces-{os.getpid()}-{server.label}")
    result = run_window(server.url, experiment_id, bodies, args.seconds, args.traces_per_export * args.spans_per_trace)
    result["traces_sent"] = result["exports"] * args.traces_per_export
    result["traces_stored"] = stored_traces(server.url, experiment_id)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--traces-per-export", type=int, default=5)
    parser.add_argument("--spans-per-trace", type=int, default=10)
    parser.add_argument("--max-exports-per-s", type=float, default=60, help="per client: bodies prepared")
    parser.add_argument("--target", choices=("distributed", "standalone"), default="distributed")
    parser.add_argument("--reference-workers", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args(argv)

    rows: dict[str, Any] = {}
    for label in ("reference", "genesis"):
        if label == "reference":
            server = start_reference(args.reference_workers, args.timeout)
        else:
            server, _ = start_genesis(args.target, 4, args.timeout)
        try:
            settle(server, 60)
            rows[label] = measure(server, args)
            print(f"{label:>10}: {json.dumps(rows[label])}", flush=True)
        finally:
            server.stop()
    ref, ours = rows["reference"]["spans_per_s"], rows["genesis"]["spans_per_s"]
    ratio = round(ours / ref, 2) if ref else None
    report = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "args": vars(args), "results": rows,
              "ratio_spans_per_s": ratio}
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"traces-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"spans/s genesis/reference = {ratio}  ({out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
