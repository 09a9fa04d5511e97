"""The security pieces as plain functions and small in-process apps (no external services)."""

from __future__ import annotations

import base64

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from common.auth.identity import parse_authorization
from common.auth.passwords import hash_password, new_token, token_digest, verify_password
from common.auth.permissions import allows
from common.auth.rules import ADMIN_ONLY_PREFIXES, find_rule, is_public, route_class
from common.browser_policy import browser_policy, host_allowed, origin_allowed
from common.errors import MlflowError
from common.ratelimit import Limit, TokenBuckets, parse_limit
from common.settings import load_settings
from common.web import json_response, tier_app


def test_passwords_are_salted_scrypt_and_verify() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("scrypt$") and "correct" not in stored
    assert stored != hash_password("correct horse battery")  # salted
    assert verify_password("correct horse battery", stored)
    assert not verify_password("correct horse batterx", stored)
    assert not verify_password("anything", "not-a-hash")


def test_tokens_are_random_and_stored_as_digests() -> None:
    a, b = new_token(), new_token()
    assert a != b and len(a) > 40
    assert token_digest(a) != a and len(token_digest(a)) == 64


@pytest.mark.parametrize("header,expected", [
    ("Basic " + base64.b64encode(b"alice:pw:with:colons").decode(), ("basic", "alice", "pw:with:colons")),
    ("bearer gf_abc", ("bearer", "", "gf_abc")),
])
def test_authorization_headers_parse(header: str, expected: tuple[str, str, str]) -> None:
    assert parse_authorization(header) == expected


@pytest.mark.parametrize("header", ["Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(),
                                    "Basic " + base64.b64encode(b"\xff\xfe:x").decode(), "Digest abc", "Bearer",
                                    "Basic " + base64.b64encode(b":password").decode()])
def test_malformed_authorization_is_401(header: str) -> None:
    with pytest.raises(MlflowError) as err:
        parse_authorization(header)
    assert err.value.http_status == 401


def test_permission_levels_are_ordered_like_mlflow() -> None:
    assert allows("READ", "read") and not allows("READ", "update")
    assert allows("USE", "use") and not allows("USE", "update")
    assert allows("EDIT", "update") and not allows("EDIT", "delete")
    assert allows("MANAGE", "manage")
    assert not allows("NO_PERMISSIONS", "read")


@pytest.mark.parametrize("method,path,kind,action", [
    ("POST", "/api/2.0/mlflow/runs/log-batch", "run", "update"),
    ("GET", "/ajax-api/2.0/mlflow/runs/get", "run", "read"),
    ("POST", "/api/2.0/mlflow/experiments/delete", "experiment", "delete"),
    ("DELETE", "/api/2.0/mlflow/logged-models/{model_id}/tags/{tag_key}", "logged_model", "delete"),
    ("PUT", "/api/2.0/mlflow-artifacts/artifacts/{path}", "artifact", "update"),
    ("HEAD", "/api/2.0/mlflow-artifacts/artifacts/{path}", "artifact", "read"),
    ("POST", "/api/2.0/mlflow/users/create", "admin", "read"),
    ("GET", "/api/3.0/mlflow/traces/{trace_id}", "trace", "read"),
])
def test_rules_follow_mlflows_validator_map(method: str, path: str, kind: str, action: str) -> None:
    rule = find_rule(method, path)
    assert rule is not None and (rule.kind, rule.action) == (kind, action)


def test_public_paths_and_route_classes() -> None:
    assert is_public("/health") and is_public("/static-files/app.js") and is_public("/api/3.0/mlflow/server-info")
    assert not is_public("/api/2.0/mlflow/experiments/search")
    assert route_class("POST", "/api/2.0/mlflow/runs/log-metric", None) == "writes"
    assert route_class("POST", "/api/2.0/mlflow/runs/search", find_rule("POST", "/api/2.0/mlflow/runs/search")) \
        == "search"
    assert route_class("PUT", "/api/2.0/mlflow-artifacts/artifacts/{path}", None) == "artifacts"


def test_every_route_has_a_rule_or_is_public(tmp_path) -> None:
    """Like MLflow's coverage test of its validator map: a new route needs a decision in
    common/auth/rules.py (without one it is admin-only, which is safe but rarely meant)."""
    from genesis_flow.standalone import build_app

    settings = load_settings("standalone", env={}, artifact_root=tmp_path.as_uri(), auth="basic")
    client = AsyncMongoClient("mongodb://127.0.0.1:1/?directConnection=true", connect=False)
    app = build_app(settings, client["unused"], CollectorRegistry())
    missing = sorted({(r.method, r.resource.canonical) for r in app.router.routes()
                      if not is_public(r.resource.canonical) and not r.resource.canonical.startswith("/static")
                      and not r.resource.canonical.startswith(ADMIN_ONLY_PREFIXES)
                      and find_rule(r.method, r.resource.canonical) is None})
    assert missing == []


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    now = [0.0]
    buckets = TokenBuckets(Limit(rate=2, burst=3), clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0, 0, 0]
    assert buckets.take("a") == pytest.approx(0.5)
    assert buckets.take("b") == 0  # another identity has its own bucket
    now[0] += 0.5
    assert buckets.wait("a") == 0  # looking does not take
    assert buckets.take("a") == 0
    assert buckets.wait("a") == pytest.approx(0.5)


@pytest.mark.parametrize("text,expected", [("", None), ("0", None), ("5", Limit(5, 5)), ("2/10", Limit(2, 10))])
def test_rate_limit_settings(text: str, expected: Limit | None) -> None:
    assert parse_limit(text) == expected


def test_host_and_origin_matching() -> None:
    assert host_allowed(["mlflow.example.com", "*.internal:5000"], "api.internal:5000")
    assert not host_allowed(["mlflow.example.com"], "evil.example.com")
    assert origin_allowed([], "http://localhost:3000")
    assert origin_allowed(["https://ui.example.com"], "https://ui.example.com")
    assert not origin_allowed(["https://ui.example.com"], "https://evil.example.com")


@pytest.fixture
async def policy_client():
    app = tier_app("test", CollectorRegistry())
    browser_policy(app, "mlflow.example.com,127.0.0.1:*", "https://ui.example.com", "DENY")

    async def write(_: web.Request) -> web.Response:
        return json_response({})

    app.router.add_post("/api/2.0/mlflow/runs/set-tag", write)
    app.router.add_get("/api/2.0/mlflow/experiments/search", write)
    app.router.add_get("/health", write)
    client = TestClient(TestServer(app))
    await client.start_server()
    yield client
    await client.close()


async def test_unknown_host_is_refused_except_for_health(policy_client: TestClient) -> None:
    resp = await policy_client.get("/api/2.0/mlflow/experiments/search", headers={"Host": "rebound.evil.com"})
    assert resp.status == 403
    assert (await resp.json())["error_code"] == "PERMISSION_DENIED"
    assert (await policy_client.get("/health", headers={"Host": "rebound.evil.com"})).status == 200
    ok = await policy_client.get("/api/2.0/mlflow/experiments/search", headers={"Host": "mlflow.example.com"})
    assert ok.status == 200
    assert ok.headers["X-Content-Type-Options"] == "nosniff"
    assert ok.headers["X-Frame-Options"] == "DENY"


async def test_cross_origin_writes_are_refused(policy_client: TestClient) -> None:
    evil = await policy_client.post("/api/2.0/mlflow/runs/set-tag", json={}, headers={"Origin": "https://evil.com"})
    assert evil.status == 403
    assert "CORS" in (await evil.json())["message"]
    good = await policy_client.post("/api/2.0/mlflow/runs/set-tag", json={},
                                    headers={"Origin": "https://ui.example.com"})
    assert good.status == 200
    assert good.headers["Access-Control-Allow-Origin"] == "https://ui.example.com"
    local = await policy_client.post("/api/2.0/mlflow/runs/set-tag", json={},
                                     headers={"Origin": "http://localhost:3000"})
    assert local.status == 200
    read = await policy_client.get("/api/2.0/mlflow/experiments/search", headers={"Origin": "https://evil.com"})
    assert read.status == 200 and "Access-Control-Allow-Origin" not in read.headers
    preflight = await policy_client.options("/api/2.0/mlflow/runs/set-tag", headers={
        "Origin": "https://ui.example.com", "Access-Control-Request-Method": "POST"})
    assert preflight.status == 204
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]


async def test_error_responses_carry_the_headers_too(policy_client: TestClient) -> None:
    missing = await policy_client.get("/no/such/route")
    assert missing.status == 404
    assert missing.headers["X-Content-Type-Options"] == "nosniff"
