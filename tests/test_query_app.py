"""The query tier as a service: ops routes, version and server-info, unknown routes, outages."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from common.artifacts import open_store
from common.settings import load_settings
from query.app import QueryDeps, create_app
from tests.query_support import QueryEnv
from tests.services import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
async def outage() -> AsyncIterator[TestClient]:
    """A query app whose MongoDB does not answer (nothing listens on its port)."""
    client = AsyncMongoClient(f"mongodb://127.0.0.1:{free_port()}/?directConnection=true",
                              serverSelectionTimeoutMS=300, connectTimeoutMS=300)
    app = create_app(load_settings("query", env={}), QueryDeps(client["down"], CollectorRegistry(), open_store(tempfile.mkdtemp(prefix="q-art-"))))
    http = TestClient(TestServer(app, host="127.0.0.1"))
    await http.start_server()
    yield http
    await http.close()
    await client.close()


async def test_health_ready_and_metrics(env: QueryEnv) -> None:
    resp = await env.http.get("/health")
    assert resp.status == 200 and (await resp.json())["status"] == "ok"
    resp = await env.http.get("/ready")
    assert resp.status == 200 and await resp.json() == {"status": "ok", "checks": {"mongodb": "ok", "artifacts": "ok"}}
    await env.get("/experiments/get", experiment_id="0")
    resp = await env.http.get("/metrics")
    text = await resp.text()
    assert resp.status == 200 and resp.content_type == "text/plain"
    assert 'genesis_http_requests_total{method="GET",route="/api/2.0/mlflow/experiments/get",status="200",tier="query"}' in text


async def test_version_is_the_mlflow_version_we_speak(env: QueryEnv) -> None:
    resp = await env.http.get("/version")
    assert resp.status == 200 and await resp.text() == "3.17.2"


@pytest.mark.parametrize("prefix", ["/api/3.0/mlflow", "/ajax-api/3.0/mlflow"])
async def test_server_info(env: QueryEnv, prefix: str) -> None:
    resp = await env.http.get(prefix + "/server-info")
    info = await resp.json()
    assert resp.status == 200
    assert info["store_type"] == "MongoStore"
    assert set(info) == {"store_type", "workspaces_enabled", "trace_archival_enabled", "multipart_uploads_enabled",
                         "multipart_downloads_enabled", "presigned_upload_run_id_supported",
                         "presigned_upload_model_id_supported", "features_enabled"}


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/2.0/mlflow/logged-models/search"),
    ("POST", "/api/2.0/mlflow/runs/get"),
    ("GET", "/api/2.0/mlflow/runs/search"),
    ("POST", "/api/2.0/mlflow/runs/create"),
    ("GET", "/api/2.0/mlflow/nope"),
])
async def test_unknown_routes_are_a_bare_404(env: QueryEnv, method: str, path: str) -> None:
    resp = await env.http.request(method, path)
    assert resp.status in (404, 405)
    if resp.status == 404:
        assert await resp.read() == b""


async def test_mongodb_outage_is_503_with_retry_after(outage: TestClient) -> None:
    resp = await outage.get("/api/2.0/mlflow/runs/get", params={"run_id": "abc"})
    body = await resp.json()
    assert resp.status == 503 and body["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert resp.headers["Retry-After"]
    resp = await outage.get("/ready")
    assert resp.status == 503 and (await resp.json())["checks"]["mongodb"] != "ok"
    resp = await outage.get("/health")
    assert resp.status == 200


async def test_validation_runs_before_the_database(outage: TestClient) -> None:
    resp = await outage.post("/api/2.0/mlflow/runs/search", json={"experiment_ids": ["1"], "filter": "bogus"})
    assert resp.status == 400
