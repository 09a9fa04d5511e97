"""Per-identity token buckets: a user hammering log-metric past the write limit gets 429
REQUEST_LIMIT_EXCEEDED with Retry-After, while another user's requests all succeed. Counted,
not timed: the bucket refills 1 request/s, far slower than the test sends."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
import requests

from tests.security.conftest import ADMIN, ADMIN_PASSWORD, AUTH_ENV, start_stack
from tests.services import Services
from tests.stack import Stack, make_stack

pytestmark = pytest.mark.integration

API = "/api/2.0/mlflow"
PASSWORD = "limited-password-01"


@pytest.fixture(scope="module")
def limited_stack(services: Services) -> Iterator[Stack]:
    stack = make_stack(services, "rl", **AUTH_ENV, GENESIS_FLOW_RATE_LIMIT_WRITES="1/20",
                       GENESIS_FLOW_RATE_LIMIT_SEARCH="1/5")
    try:
        yield start_stack(stack, "standalone")
    finally:
        stack.stop()


def _user_with_run(uri: str) -> tuple[tuple[str, str], str]:
    name = f"rl-{uuid.uuid4().hex[:6]}"
    resp = requests.post(uri + API + "/users/create", json={"username": name, "password": PASSWORD},
                         auth=(ADMIN, ADMIN_PASSWORD), timeout=10)
    resp.raise_for_status()
    auth = (name, PASSWORD)
    exp = requests.post(uri + API + "/experiments/create", json={"name": name}, auth=auth, timeout=10).json()
    run = requests.post(uri + API + "/runs/create", json={"experiment_id": exp["experiment_id"]}, auth=auth,
                        timeout=10).json()
    return auth, run["run"]["info"]["run_id"]


def _log(uri: str, auth: tuple[str, str], run_id: str, step: int) -> requests.Response:
    return requests.post(uri + API + "/runs/log-metric", auth=auth, timeout=10,
                         json={"run_id": run_id, "key": "m", "value": 1.0, "timestamp": step, "step": step})


def test_a_hammering_user_is_limited_and_another_is_not(limited_stack: Stack) -> None:
    uri = limited_stack.url("uri")
    (hammer, hammer_run), (quiet, quiet_run) = _user_with_run(uri), _user_with_run(uri)

    statuses = Counter()
    limited = None
    for step in range(60):
        resp = _log(uri, hammer, hammer_run, step)
        statuses[resp.status_code] += 1
        if resp.status_code == 429:
            limited = resp
    assert statuses[429] >= 20, statuses  # burst 20 (minus the 2 setup writes) + ~1/s of refill
    assert set(statuses) <= {200, 429}, statuses
    assert limited.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert int(limited.headers["Retry-After"]) >= 1

    quiet_statuses = Counter(_log(uri, quiet, quiet_run, step).status_code for step in range(15))
    assert quiet_statuses == Counter({200: 15})


def test_reads_have_their_own_bucket(limited_stack: Stack) -> None:
    uri = limited_stack.url("uri")
    auth, _ = _user_with_run(uri)
    statuses = Counter(requests.get(uri + API + "/experiments/search?max_results=1", auth=auth, timeout=10).status_code
                       for _ in range(20))
    assert statuses[429] >= 5 and statuses[200] >= 5, statuses
    assert requests.get(uri + "/health", timeout=10).status_code == 200  # operational routes are never limited
