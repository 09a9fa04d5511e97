"""Secrets never leave the process: not in /ready, /metrics, error bodies or the tier's log, even
when a dependency is down and its connection string carries a key."""

from __future__ import annotations

import time

import pytest
import requests

from tests.security.conftest import AUTH_ENV
from tests.services import Services
from tests.stack import make_stack

pytestmark = pytest.mark.integration

ACCOUNT_KEY = "c2VjcmV0LWtleS1mb3ItZ2VuZXNpcy1mbG93LXRlc3Rz"  # base64, as Azure keys are


def test_dependency_credentials_stay_out_of_ready_metrics_and_logs(services: Services) -> None:
    dead_blob = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
                 f"AccountKey={ACCOUNT_KEY};BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;")
    stack = make_stack(services, "sec", **AUTH_ENV, AZURE_STORAGE_CONNECTION_STRING=dead_blob)
    try:
        stack.start("query", wait_ready=False)
        uri = stack.url("query")
        deadline, ready = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            try:
                ready = requests.get(uri + "/ready", timeout=10)
                break
            except requests.ConnectionError:
                time.sleep(0.5)
        assert ready is not None and ready.status_code == 503, ready and ready.text
        assert ready.json()["checks"]["artifacts"] != "ok"
        bad_login = requests.get(uri + "/api/2.0/mlflow/experiments/search", auth=("admin", ACCOUNT_KEY), timeout=5)
        assert bad_login.status_code == 401
        bodies = {"ready": ready.text, "metrics": requests.get(uri + "/metrics", timeout=5).text,
                  "401": bad_login.text}
        time.sleep(1)
        bodies["log"] = (stack.workdir / "query.log").read_text(errors="replace")
        for where, body in bodies.items():
            assert ACCOUNT_KEY not in body, where
            assert AUTH_ENV["MLFLOW_AUTH_ADMIN_PASSWORD"] not in body, where
    finally:
        stack.stop()
