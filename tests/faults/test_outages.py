"""A training job does not notice a one-minute outage: 8 stock `MlflowClient`s (default retry
settings) stream log-batches through nginx while a dependency goes away for
GENESIS_FLOW_FAULT_SECONDS (60 by default) and comes back. No client raises, every acknowledged
point is stored exactly once, no tier is restarted, and the stack is ready again soon after."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
import uuid
from collections.abc import Callable

import pytest
from mlflow import MlflowClient

from tests.faults.conftest import OwnMongo
from tests.faults.streaming import Fleet
from tests.services import rabbitmq_start, rabbitmq_stop
from tests.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAULT_S = float(os.environ.get("GENESIS_FLOW_FAULT_SECONDS", "60"))
WARMUP_S = 3.0
AFTER_S = 8.0
TIERS = ("writer", "ingest", "ingest2", "query")


def _ready(stack: Stack, tiers: tuple[str, ...]) -> bool:
    for tier in tiers:
        try:
            with urllib.request.urlopen(stack.url(tier) + "/ready", timeout=2) as resp:
                if resp.status != 200:
                    return False
        except OSError:
            return False
    return True


def _seconds_until_ready(stack: Stack, tiers: tuple[str, ...], timeout: float = 90) -> float:
    start = time.monotonic()
    while not _ready(stack, tiers):
        if time.monotonic() - start > timeout:
            return float("inf")
        time.sleep(0.25)
    return time.monotonic() - start


def _rabbitmq(stack: Stack, mongo: OwnMongo) -> tuple[Callable[[], None], Callable[[], None]]:
    return rabbitmq_stop, rabbitmq_start


def _mongo_frozen(stack: Stack, mongo: OwnMongo) -> tuple[Callable[[], None], Callable[[], None]]:
    return mongo.freeze, mongo.thaw


def _mongo_restarted(stack: Stack, mongo: OwnMongo) -> tuple[Callable[[], None], Callable[[], None]]:
    return mongo.stop, mongo.start


def _writer_killed(stack: Stack, mongo: OwnMongo) -> tuple[Callable[[], None], Callable[[], None]]:
    return (lambda: stack.kill("writer", signal.SIGKILL)), (lambda: stack.start("writer"))


def _ingest_replica_killed(stack: Stack, mongo: OwnMongo) -> tuple[Callable[[], None], Callable[[], None]]:
    return (lambda: stack.kill("ingest2", signal.SIGKILL)), (lambda: None)  # stays dead: nginx uses the other


FAULTS = {
    "rabbitmq-stopped": (_rabbitmq, ()),
    "mongodb-frozen": (_mongo_frozen, ()),
    "mongodb-restarted": (_mongo_restarted, ()),
    "writer-killed": (_writer_killed, ("writer",)),
    "ingest-replica-killed": (_ingest_replica_killed, ("ingest2",)),  # last: the replica stays down
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_training_jobs_do_not_notice_the_outage(fault: str, fault_stack: Stack, own_mongo: OwnMongo,
                                                client_defaults: None, capsys: pytest.CaptureFixture[str]) -> None:
    make, restarted = FAULTS[fault]
    live = tuple(t for t in TIERS if t in fault_stack.procs)
    assert _seconds_until_ready(fault_stack, live, timeout=60) < 60, "the stack is not ready before the fault"
    pids = {t: fault_stack.procs[t].pid for t in live}
    begin, end = make(fault_stack, own_mongo)
    experiment_id = MlflowClient(tracking_uri=fault_stack.url("router")).create_experiment(
        f"fault-{fault}-{uuid.uuid4().hex[:6]}")
    fleet = Fleet.start(fault_stack.url("router"), experiment_id)
    try:
        time.sleep(WARMUP_S)
        begin()
        time.sleep(FAULT_S)
        end()
        recovered = _seconds_until_ready(fault_stack, tuple(t for t in live if t in fault_stack.procs))
        time.sleep(AFTER_S)
    finally:
        fleet.stop()
    acked, stored, duplicates = fleet.wait_stored()
    with capsys.disabled():  # the numbers belong in the CI log, -q or not
        print(f"\n{fault} {FAULT_S:.0f}s: acknowledged {acked}, stored {stored}, duplicates {duplicates}, "
              f"client exceptions {len(fleet.errors)}, ready {recovered:.1f}s after recovery")
    assert fleet.errors == []
    assert acked > 0 and stored == acked and duplicates == 0
    assert recovered < 60
    untouched = [t for t in live if t not in restarted]
    assert {t: fault_stack.procs[t].pid for t in untouched if t in fault_stack.procs} == \
        {t: pids[t] for t in untouched}, "a tier was restarted"
    assert all(fault_stack.procs[t].poll() is None for t in untouched), "a tier died"
