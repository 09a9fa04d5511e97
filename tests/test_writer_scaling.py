"""More writers take more partitions: replicas share the work, and nothing is lost or reordered
while partitions move between them."""

from __future__ import annotations

import re
import threading
import time
import uuid

import pytest
import requests
from mlflow import MlflowClient

from tests.conftest import mongo_db
from tests.stack import Stack
from writer.balancer import assignment, to_release

pytestmark = pytest.mark.integration


def test_assignment_is_deterministic_and_covers_every_partition_once() -> None:
    live = ["w-b", "w-a", "w-c"]
    shares = [assignment(w, live, 8) for w in live]
    assert sorted(p for share in shares for p in share) == list(range(8))
    assert assignment("w-a", live, 8) == {0, 3, 6}
    assert assignment("w-new", [], 4) == {0, 1, 2, 3}
    assert to_release({0, 1, 5}, {0, 3}) == 1 and to_release({0}, {0, 3}) is None


def _events_applied(stack: Stack, name: str) -> float:
    text = requests.get(stack.url(name) + "/metrics", timeout=5).text
    return sum(float(v) for v in re.findall(r'^genesis_writer_events_total\{outcome="committed"\} ([0-9.e+]+)$', text, re.M))


def test_two_writers_share_partitions_without_losing_or_reordering(fresh_stack: Stack) -> None:
    fresh_stack.env.update({"GENESIS_FLOW_PARTITIONS": "4", "GENESIS_FLOW_WRITER_REBALANCE_INTERVAL_S": "0.5"})
    fresh_stack.start("writer", name="writer-1")
    fresh_stack.start("ingest")
    client = MlflowClient(tracking_uri=fresh_stack.url("ingest"))
    exp = client.create_experiment(f"scale-{uuid.uuid4().hex[:8]}")
    run_ids = [client.create_run(exp).info.run_id for _ in range(12)]  # spread over the 4 partitions
    url = fresh_stack.url("ingest") + "/api/2.0/mlflow/runs/log-batch"
    stop = threading.Event()
    sent: dict[str, int] = {r: 0 for r in run_ids}

    def stream(run_id: str) -> None:
        step = 0
        while not stop.is_set():
            body = {"run_id": run_id, "metrics": [{"key": "m", "value": s, "timestamp": 1, "step": s}
                                                  for s in range(step, step + 50)],
                    "tags": [{"key": "last_step", "value": str(step + 49)}]}
            resp = requests.post(url, json=body, timeout=60)
            assert resp.status_code == 200, resp.text
            step += 50
            sent[run_id] = step

    threads = [threading.Thread(target=stream, args=(r,)) for r in run_ids]
    for t in threads:
        t.start()
    time.sleep(1.0)
    fresh_stack.start("writer", name="writer-2")  # joins while events flow
    time.sleep(6.0)
    before = {w: _events_applied(fresh_stack, w) for w in ("writer-1", "writer-2")}
    time.sleep(2.0)
    after = {w: _events_applied(fresh_stack, w) for w in ("writer-1", "writer-2")}
    stop.set()
    for t in threads:
        t.join(timeout=60)

    assert after["writer-2"] > before["writer-2"], "the second writer took no partitions"
    assert after["writer-1"] > before["writer-1"], "the first writer gave all partitions away"
    db = mongo_db(fresh_stack)
    for run_id in run_ids:
        steps = sorted(p[0] for b in db.metrics.find({"run_id": run_id, "key": "m"}) for p in b["p"])
        assert steps == list(range(sent[run_id])), "points lost or duplicated during handovers"
        # tags are last-write-wins: a reordered apply would leave an older value behind
        assert db.runs.find_one({"_id": run_id})["tags"]["last_step"] == str(sent[run_id] - 1)
