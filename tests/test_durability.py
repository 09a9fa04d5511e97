"""Nothing a client was told succeeded is lost: writer crashes, broker outages, poison events."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter

import aio_pika
import pytest
import requests
from mlflow import MlflowClient

from tests.conftest import mongo_db
from tests.services import rabbitmq_outage
from tests.stack import REPO, Stack

pytestmark = pytest.mark.integration

API = "/api/2.0/mlflow"


def _post_until_ok(url: str, body: dict, deadline: float) -> bool:
    """A persistent client: retry 503 (and connection errors) until the deadline."""
    while time.monotonic() < deadline:
        try:
            resp = requests.post(url, json=body, timeout=30)
        except requests.RequestException:
            time.sleep(0.2)
            continue
        if resp.status_code == 200:
            return True
        assert resp.status_code in (503, 429), resp.text  # overload is 503, never 500
        time.sleep(0.2)
    return False


def test_sigkilled_writer_loses_and_duplicates_nothing(fresh_stack: Stack) -> None:
    fresh_stack.env["GENESIS_FLOW_COMMIT_TIMEOUT_S"] = "3"
    fresh_stack.start("writer")
    fresh_stack.start("ingest")
    client = MlflowClient(tracking_uri=fresh_stack.url("ingest"))
    exp = client.create_experiment(f"crash-{uuid.uuid4().hex[:8]}")
    run_ids = [client.create_run(exp).info.run_id for _ in range(4)]
    url = fresh_stack.url("ingest") + API + "/runs/log-batch"
    acked: dict[str, list[int]] = {r: [] for r in run_ids}
    stop = threading.Event()
    per_request = 200

    def stream(run_id: str) -> None:
        batch = 0
        while not stop.is_set():
            steps = list(range(batch * per_request, (batch + 1) * per_request))
            body = {"run_id": run_id, "metrics": [
                {"key": "loss", "value": s * 0.5, "timestamp": 1_000_000 + s, "step": s} for s in steps]}
            if _post_until_ok(url, body, time.monotonic() + 60):
                acked[run_id].extend(steps)
            batch += 1

    threads = [threading.Thread(target=stream, args=(r,)) for r in run_ids]
    for t in threads:
        t.start()
    time.sleep(2.0)
    fresh_stack.kill("writer", signal.SIGKILL)
    time.sleep(1.5)
    fresh_stack.start("writer")
    time.sleep(2.0)
    fresh_stack.kill("writer", signal.SIGKILL)  # a second crash, mid-stream again
    fresh_stack.start("writer")
    time.sleep(2.0)
    stop.set()
    for t in threads:
        t.join(timeout=120)

    db = mongo_db(fresh_stack)
    total = 0
    for run_id in run_ids:
        stored = [p[0] for b in db.metrics.find({"run_id": run_id, "key": "loss"}) for p in b["p"]]
        counts = Counter(stored)
        assert all(n == 1 for n in counts.values()), "a metric point was stored twice"
        missing = set(acked[run_id]) - set(counts)
        assert not missing, f"{len(missing)} acknowledged points lost"
        assert acked[run_id], "the stream made no progress"
        total += len(acked[run_id])
    print(f"acknowledged points: {total}")
    assert total >= 4 * per_request * 3


def test_broker_outage_holds_then_503s_with_growing_retry_after_and_recovers(fresh_stack: Stack) -> None:
    fresh_stack.env["GENESIS_FLOW_OUTAGE_HOLD_S"] = "1"
    fresh_stack.start("writer")
    fresh_stack.start("ingest")
    client = MlflowClient(tracking_uri=fresh_stack.url("ingest"))
    run_id = client.create_run(client.create_experiment(f"outage-{uuid.uuid4().hex[:8]}")).info.run_id
    url = fresh_stack.url("ingest") + API + "/runs/log-metric"
    body = {"run_id": run_id, "key": "m", "value": 1.0, "timestamp": 1, "step": 0}

    with rabbitmq_outage():
        time.sleep(0.5)  # let the connection notice
        retry_afters = []
        for _ in range(3):
            start = time.monotonic()
            resp = requests.post(url, json=body, timeout=10)
            elapsed = time.monotonic() - start
            assert resp.status_code == 503, resp.text
            assert resp.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
            retry_afters.append(int(resp.headers["Retry-After"]))
            assert 0.9 < elapsed < 5.0  # held for the broker (GENESIS_FLOW_OUTAGE_HOLD_S), then refused
        # the client's waits grow with the outage instead of spending its retries in seconds
        assert retry_afters[0] >= 2 and retry_afters == sorted(retry_afters) and retry_afters[-1] > retry_afters[0]
        ready = requests.get(fresh_stack.url("ingest") + "/ready", timeout=10)
        assert ready.status_code == 503

    deadline = time.monotonic() + 60
    ok = False
    while time.monotonic() < deadline and not ok:
        ok = requests.post(url, json={**body, "step": 1}, timeout=30).status_code == 200
        if not ok:
            time.sleep(0.5)
    assert ok, "ingest did not recover after the broker came back"
    # ... and stays recovered: commit notices reach this ingest replica again
    for step in range(2, 22):
        resp = requests.post(url, json={**body, "step": step}, timeout=30)
        assert resp.status_code == 200, resp.text
    latest = mongo_db(fresh_stack).runs.find_one({"_id": run_id})["metrics"]["m"]
    assert latest["s"] == 21


async def _publish_raw(stack: Stack, partition: int, body: bytes) -> None:
    conn = await aio_pika.connect(stack.services.amqp_url)
    async with conn:
        channel = await conn.channel(publisher_confirms=True)
        await channel.default_exchange.publish(
            aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id="poison-1"),
            routing_key=f"{stack.queue_prefix}.events.{partition}")


def _dlq(stack: Stack, *args: str) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "genesis_flow.cli", "dlq", *args], cwd=REPO, env=stack.env,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_poison_event_goes_to_the_dead_letter_queue_and_the_partition_keeps_flowing(fresh_stack: Stack) -> None:
    fresh_stack.env["GENESIS_FLOW_PARTITIONS"] = "1"  # everything shares the poisoned partition
    fresh_stack.start("writer")
    fresh_stack.start("ingest")
    asyncio.run(_publish_raw(fresh_stack, 0, b"\x93not-an-envelope"))
    client = MlflowClient(tracking_uri=fresh_stack.url("ingest"))
    run_id = client.create_run(client.create_experiment(f"poison-{uuid.uuid4().hex[:8]}")).info.run_id
    client.log_metric(run_id, "after", 1.0)
    assert mongo_db(fresh_stack).runs.find_one({"_id": run_id})["metrics"]["after"]["v"] == 1.0

    listed = _dlq(fresh_stack, "list")
    entries = [e for e in listed if "message_id" in e]
    assert [e["message_id"] for e in entries] == ["poison-1"]
    assert "undecodable" in entries[0]["reason"]
    assert entries[0]["origin"] == f"{fresh_stack.queue_prefix}.events.0"
    assert _dlq(fresh_stack, "list")[-1] == {"listed": 1}  # listing does not consume

    replayed = _dlq(fresh_stack, "replay")
    assert replayed[-1] == {"replayed_count": 1}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # still poison: the writer sets it aside again
        if _dlq(fresh_stack, "list")[-1] == {"listed": 1}:
            break
        time.sleep(0.5)
    assert _dlq(fresh_stack, "list")[-1] == {"listed": 1}
