"""The load test and the benchmark run on tiny workloads, so neither can rot. No timing is
asserted: only that they run against the real servers, write what they promise, and that what
they report was really written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.performance.perf_requirements import PERFORMANCE_REQUIREMENTS, validate_performance_requirements
from tests.stack import Stack

REPO = Path(__file__).resolve().parents[2]

MEASURED_OK = {"experiment_creation_p95_s": 0.1, "run_creation_p95_s": 0.1, "search_p95_s": 0.2,
               "metric_logging_rate": 500.0, "concurrent_users": 50, "failures": 0}


def test_requirements_pass_when_every_number_is_within_its_bound() -> None:
    assert validate_performance_requirements(PERFORMANCE_REQUIREMENTS, MEASURED_OK) == {
        name: True for name in PERFORMANCE_REQUIREMENTS}


@pytest.mark.parametrize(("field", "value", "failing"), [
    ("experiment_creation_p95_s", 2.5, "experiment_creation_time"),
    ("experiment_creation_p95_s", None, "experiment_creation_time"),  # never measured: not a pass
    ("run_creation_p95_s", 1.0, "run_creation_time"),                 # the bound itself is too slow
    ("metric_logging_rate", 99.9, "metric_logging_rate"),
    ("search_p95_s", 7.0, "search_response_time"),
    ("concurrent_users", 49, "concurrent_users"),
    ("failures", 3, "concurrent_users"),                              # users that fail do not count
])
def test_each_requirement_fails_on_its_own_number(field: str, value: object, failing: str) -> None:
    results = validate_performance_requirements(PERFORMANCE_REQUIREMENTS, {**MEASURED_OK, field: value})
    assert [name for name, ok in results.items() if not ok] == [failing]


def test_an_unknown_requirement_is_an_error() -> None:
    with pytest.raises(ValueError, match="throughput"):
        validate_performance_requirements({"throughput": 1}, MEASURED_OK)


@pytest.mark.slow
def test_the_checklist_load_test_runs_and_its_writes_are_stored(tracking_stack: Stack, tmp_path: Path) -> None:
    out = tmp_path / "performance-results.json"
    uri = tracking_stack.url("uri")
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "performance" / "load_test.py"), "--tracking-uri", uri,
         "--workers", "5", "--duration", "4", "--ramp-up", "1", "--requirement", "concurrent_users=5",
         "--output", str(out)],
        capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert report["passed"] and set(report["results"]) == set(PERFORMANCE_REQUIREMENTS)
    measured = report["measured"]
    assert measured["failures"] == 0 and measured["concurrent_users"] == 5 and measured["metrics_logged"] > 0
    assert {"experiments/create", "runs/create", "runs/log-metric", "runs/log-batch", "runs/search"} <= set(
        report["endpoints"])
    # What the load test counted as logged is in the store: five experiments, their runs, points.
    client = MlflowClient(uri)
    experiments = [e for e in client.search_experiments(max_results=1000) if e.name.startswith("load-test-")]
    assert len(experiments) == 5
    runs = client.search_runs([e.experiment_id for e in experiments], max_results=1000)
    points = sum(len(client.get_metric_history(r.info.run_id, "loss")) for r in runs)
    batch_points = sum(len(client.get_metric_history(r.info.run_id, "m0")) for r in runs)
    # Every acknowledged metric is stored; a user stopped mid-request (at most one request each,
    # <= 10 metrics) may have written one more than it saw acknowledged.
    stored = points + batch_points * 10
    assert measured["metrics_logged_total"] <= stored <= measured["metrics_logged_total"] + 5 * 10


@pytest.mark.slow
def test_the_benchmark_runs_both_servers_and_writes_its_results(tmp_path: Path) -> None:
    tiny = ["--batch-requests", "2", "--batch-clients", "2", "--metric-requests", "4", "--metric-clients", "2",
            "--many-clients", "4", "--many-requests", "2", "--create-requests", "4", "--create-clients", "2",
            "--search-runs", "30,60", "--search-reference-max", "30", "--search-queries", "3", "--seed-clients", "2",
            "--history-points", "2000", "--big-history-points", "3000", "--history-reads", "1", "--warmup", "1",
            "--wait-quiet", "0", "--results-dir", str(tmp_path), "--profile"]
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "compare.py"), *tiny],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [result] = tmp_path.glob("compare-*.json")
    assert result.with_suffix(".md").exists() and result.with_suffix(".png").exists()
    data = json.loads(result.read_text())
    rows = {r["id"]: r for r in data["rows"]}
    # Both servers answered every comparative scenario; Genesis-Flow alone the big ones.
    for rid in ("log-batch/throughput", "log-metric/throughput", "log-metric-50/p99", "create/throughput",
                "search@30/p50", "history/median", "history-raw/median"):
        assert rows[rid]["reference"] and rows[rid]["genesis"] and rows[rid]["ratio"], rid
    # enqueued acks: compared with the reference's (committed) log-batch, its only mode
    assert rows["log-batch-enqueued/throughput"]["genesis"] and rows["log-batch-enqueued/throughput"]["ratio"]
    for rid in ("search@60/p50", "history-1m/median"):
        assert rows[rid]["genesis"] and rows[rid]["reference"] is None, rid
    assert data["details"]["history-1m"]["genesis"]["complete"] is True
    assert data["details"]["search@30"]["same_first_page"] is True
    # every target is judged except the two search sizes this tiny run does not reach
    assert len(data["targets"]) == 10
    assert {t["row"] for t in data["targets"] if t["met"] is None} == {"search@5000/p50", "search@50000/p50"}
    assert any(r["process"] == "gf writer" and r["cpu_s_per_million"] for r in data["resources"])
    assert data["meta"]["machine"]["cpus"] >= 1
    profiles = data["meta"].get("profiles", [])
    assert any(p.endswith("log-batch-writer.svg") for p in profiles), proc.stdout[-2000:]
