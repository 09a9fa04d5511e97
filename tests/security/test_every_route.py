"""With auth on, every route of every HTTP tier answers 401 without credentials, and 403 to a user
without permission (default_permission NO_PERMISSIONS and no grants), except the routes that are
open by design (/health, /ready, /metrics, /version, server-info, the UI's static files) and
those any signed-in user may call (searches, which are filtered; users/current; the UI helpers).
The route list is the standalone app's own router, so a new route is covered the day it lands;
through nginx the same requests also check that the router sends each one to a tier that has it."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
import requests
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from common.auth.rules import find_rule, is_public
from common.settings import load_settings
from tests.security.conftest import ADMIN, ADMIN_PASSWORD, AUTH_ENV, start_stack
from tests.services import Services
from tests.stack import Stack, make_stack

pytestmark = pytest.mark.integration

PASSWORD = "nobody-password-01"
SIGNED_IN_KINDS = {"authenticated", "search"}
FILL = {"path": "0/{run}/artifacts/f.txt", "model_id": "m-" + "0" * 32, "trace_id": "tr-" + "0" * 32,
        "tag_key": "t", "assessment_id": "a-1"}


def _routes() -> list[tuple[str, str]]:
    from genesis_flow.standalone import build_app

    settings = load_settings("standalone", env={}, artifact_root="file:///nonexistent", auth="basic")
    app = build_app(settings, AsyncMongoClient("mongodb://127.0.0.1:1/", connect=False)["x"], CollectorRegistry())
    return sorted({(r.method, r.resource.canonical) for r in app.router.routes()
                   if r.method != "HEAD" and not is_public(r.resource.canonical)
                   and not r.resource.canonical.startswith("/static")})


ROUTES = _routes()


@pytest.fixture(scope="module", params=["standalone", "distributed"])
def closed_stack(request, services: Services) -> Iterator[tuple[Stack, dict[str, str]]]:
    stack = make_stack(services, "ar" + request.param[:2], **AUTH_ENV,
                       GENESIS_FLOW_AUTH_DEFAULT_PERMISSION="NO_PERMISSIONS")
    try:
        start_stack(stack, request.param)
        uri, admin = stack.url("uri"), (ADMIN, ADMIN_PASSWORD)
        name = f"nobody-{uuid.uuid4().hex[:6]}"
        requests.post(uri + "/api/2.0/mlflow/users/create", json={"username": name, "password": PASSWORD},
                      auth=admin, timeout=10).raise_for_status()
        run = requests.post(uri + "/api/2.0/mlflow/runs/create", json={"experiment_id": "0"}, auth=admin, timeout=10)
        run.raise_for_status()
        yield stack, {"user": name, "run": run.json()["run"]["info"]["run_id"]}
    finally:
        stack.stop()


def _request(uri: str, method: str, canonical: str, run: str, auth) -> requests.Response:
    path = re.sub(r"\{([^}:]+)(:[^}]*)?\}", lambda m: FILL.get(m.group(1), "x").replace("{run}", run), canonical)
    params = {"experiment_id": "0", "run_id": run, "run_uuid": run, "name": "model", "experiment_name": "Default",
              "run_ids": run, "trace_id": FILL["trace_id"], "trace_ids": FILL["trace_id"],
              "request_id": FILL["trace_id"], "username": ADMIN, "resource_type": "experiment", "resource_id": "0",
              "path": f"0/{run}/artifacts", "version": "1", "experiment_ids": "0"}
    body = {**params, "run_ids": [run], "trace_ids": [FILL["trace_id"]], "experiment_ids": ["0"]}
    if canonical.endswith("/create"):  # a create makes its caller the owner: name something new each time
        body["name"] = f"created-{uuid.uuid4().hex[:8]}"
    if "/genesis-flow/tokens/" in canonical:
        body.pop("username")  # one's own tokens
    return requests.request(method, uri + path, params=params if method in ("GET", "DELETE") else None,
                            json=body if method != "GET" else None, auth=auth, timeout=30,
                            headers={"x-mlflow-experiment-id": "0"})


@pytest.mark.parametrize("method,canonical", ROUTES, ids=[f"{m} {c}" for m, c in ROUTES])
def test_route_needs_credentials_and_permission(closed_stack, method: str, canonical: str) -> None:
    stack, ids = closed_stack
    uri = stack.url("uri")
    anonymous = _request(uri, method, canonical, ids["run"], None)
    assert anonymous.status_code == 401, anonymous.text[:200]
    assert anonymous.json()["error_code"] == "UNAUTHENTICATED"
    rule = find_rule(method, canonical)
    user = _request(uri, method, canonical, ids["run"], (ids["user"], PASSWORD))
    if rule is not None and rule.kind in SIGNED_IN_KINDS:
        assert user.status_code not in (401, 403), user.text[:200]
    else:
        assert user.status_code == 403, user.text[:200]
        assert user.json()["error_code"] == "PERMISSION_DENIED"
