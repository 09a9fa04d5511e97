"""The artifact proxy through one tracking URI: stock-client round trips, multipart uploads,
and a table of escaping paths that must all be refused before any I/O."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import uuid
from pathlib import Path
from urllib.parse import quote

import mlflow
import pytest
import requests
from mlflow import MlflowClient

from tests.conftest import mongo_db
from tests.stack import Stack

pytestmark = pytest.mark.integration

ART = "/api/2.0/mlflow-artifacts"


@pytest.fixture(scope="module")
def stack(tracking_stack: Stack) -> Stack:
    return tracking_stack


@pytest.fixture(scope="module")
def client(stack: Stack) -> MlflowClient:
    return MlflowClient(tracking_uri=stack.url("uri"))


@pytest.fixture(scope="module")
def run(client: MlflowClient):
    exp = client.create_experiment(f"art-{uuid.uuid4().hex[:8]}")
    return client.create_run(exp)


def _raw(stack: Stack, method: str, target: str, body: bytes | None = None) -> tuple[int, bytes]:
    """Send the request target exactly as written (no client-side normalisation)."""
    port = stack.ports["uri"]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"} if body and body.startswith(b"{") else {}
    conn.request(method, target, body=body, headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read()


def test_log_list_and_download_artifacts_with_the_stock_client(client: MlflowClient, run, tmp_path: Path) -> None:
    run_id = run.info.run_id
    report = tmp_path / "report.txt"
    report.write_text("Model training completed successfully")
    (tmp_path / "dir" / "sub").mkdir(parents=True)
    (tmp_path / "dir" / "a.bin").write_bytes(os.urandom(3000))
    (tmp_path / "dir" / "sub" / "b.json").write_text('{"b": 1}')
    client.log_artifact(run_id, str(report), "reports")
    client.log_artifacts(run_id, str(tmp_path / "dir"), "data")

    top = {f.path: f.is_dir for f in client.list_artifacts(run_id)}
    assert top == {"data": True, "reports": True}
    files = {f.path: f.file_size for f in client.list_artifacts(run_id, "data")}
    assert files == {"data/a.bin": 3000, "data/sub": None}

    out = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="reports/report.txt",
                                                   tracking_uri=client.tracking_uri, dst_path=str(tmp_path / "dl")))
    assert out.read_text() == "Model training completed successfully"
    whole = Path(client.download_artifacts(run_id, "data", str(tmp_path / "dl2")))
    assert (whole / "a.bin").read_bytes() == (tmp_path / "dir" / "a.bin").read_bytes()
    assert json.loads((whole / "sub" / "b.json").read_text()) == {"b": 1}


def test_upload_records_artifact_metadata(stack: Stack, client: MlflowClient, run, tmp_path: Path) -> None:
    f = tmp_path / "weights.bin"
    f.write_bytes(b"\x01" * 4096)
    client.log_artifact(run.info.run_id, str(f), "ckpt")
    path = f"{run.info.experiment_id}/{run.info.run_id}/artifacts/ckpt/weights.bin"
    doc = mongo_db(stack).artifacts.find_one({"_id": path})
    assert doc["size"] == 4096 and doc["run_id"] == run.info.run_id
    assert doc["sha256"] == hashlib.sha256(b"\x01" * 4096).hexdigest()
    status, _ = _raw(stack, "DELETE", f"{ART}/artifacts/{path}")
    assert status == 200
    assert mongo_db(stack).artifacts.find_one({"_id": path}) is None
    assert _raw(stack, "GET", f"{ART}/artifacts/{path}")[0] == 404


def test_legacy_run_helpers(stack: Stack, client: MlflowClient, run, tmp_path: Path) -> None:
    f = tmp_path / "legacy.txt"
    f.write_text("hello")
    client.log_artifact(run.info.run_id, str(f), "legacy")
    status, body = _raw(stack, "GET", f"/get-artifact?path=legacy/legacy.txt&run_uuid={run.info.run_id}")
    assert (status, body) == (200, b"hello")
    status, body = _raw(stack, "GET", f"/api/2.0/mlflow/artifacts/list?run_id={run.info.run_id}&path=legacy")
    listing = json.loads(body)
    assert listing["root_uri"] == run.info.artifact_uri
    assert listing["files"] == [{"path": "legacy/legacy.txt", "is_dir": False, "file_size": 5}]


def test_multipart_upload_through_the_stock_client(stack: Stack, client: MlflowClient, run, tmp_path: Path,
                                                  monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "true")
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", str(1024 * 1024))
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE", str(5 * 1024 * 1024))
    big = tmp_path / "big.bin"
    data = os.urandom(12 * 1024 * 1024 + 17)
    big.write_bytes(data)
    client.log_artifact(run.info.run_id, str(big), "mpu")  # 3 parts
    out = Path(client.download_artifacts(run.info.run_id, "mpu/big.bin", str(tmp_path / "dl")))
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()
    writes = stack.url("ingest") if "ingest" in stack.ports else stack.url("uri")
    metrics = requests.get(writes + "/metrics", timeout=10).text
    def count(route: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                   if line.startswith("genesis_http_requests_total{") and f'route="{route}"' in line
                   and 'status="200"' in line)

    assert count("/api/2.0/mlflow-artifacts/mpu/complete/{path}") >= 1  # it really went multipart
    assert count("/api/2.0/mlflow-artifacts/mpu/upload/{path}") >= 3


# --- path traversal -------------------------------------------------------------------------

ESCAPES = [
    "../secret.txt",
    "../../secret.txt",
    "a/../../secret.txt",
    "0/../../secret.txt",
    "%2e%2e/secret.txt",
    "%2E%2E/secret.txt",
    "..%2fsecret.txt",
    "..%2Fsecret.txt",
    "%2e%2e%2fsecret.txt",
    "%252e%252e/secret.txt",
    "%252e%252e%252fsecret.txt",
    ".%2e/secret.txt",
    "..%5csecret.txt",
    "..\\secret.txt",
    "a\\..\\..\\secret.txt",
    "/etc/passwd",
    "%2fetc%2fpasswd",
    "C:\\Windows\\win.ini",
    "C:/Windows/win.ini",
    "\\\\server\\share\\x",
    "file:///etc/passwd",
    "a/%00b",
    "..",
    "./..",
    "a/./../..",
    "%2e%2e",
    "%c0%ae%c0%ae/secret.txt",
    "\uff0e\uff0e/secret.txt",
]


def _targets(escape: str, run) -> list[tuple[str, str, bytes | None]]:
    enc = quote(escape, safe="/%\\:")
    run_q = f"run_id={run.info.run_id}"
    return [
        ("PUT", f"{ART}/artifacts/{enc}", b"pwned"),
        ("GET", f"{ART}/artifacts/{enc}", None),
        ("DELETE", f"{ART}/artifacts/{enc}", None),
        ("GET", f"{ART}/artifacts?path={quote(escape, safe='')}", None),
        ("POST", f"{ART}/mpu/create/{enc}", json.dumps({"path": "x", "num_parts": 1}).encode()),
        ("POST", f"{ART}/mpu/complete/{enc}", json.dumps({"path": "x", "upload_id": "0" * 32, "parts": []}).encode()),
        ("POST", f"{ART}/mpu/abort/{enc}", json.dumps({"path": "x", "upload_id": "0" * 32}).encode()),
        ("GET", f"/get-artifact?path={quote(escape, safe='')}&{run_q}", None),
        ("GET", f"/api/2.0/mlflow/artifacts/list?path={quote(escape, safe='')}&{run_q}", None),
    ]


@pytest.mark.parametrize("escape", ESCAPES)
def test_escaping_paths_are_refused_everywhere(stack: Stack, run, escape: str) -> None:
    for method, target, body in _targets(escape, run):
        status, payload = _raw(stack, method, target, body)
        assert status == 400, (method, target, status, payload[:200])
        if payload.startswith(b"{"):  # nginx itself refuses a NUL in the target, with its own page
            assert json.loads(payload)["error_code"] == "INVALID_PARAMETER_VALUE"
        assert b"pwned" not in payload and b"root:" not in payload


def test_nothing_was_written_outside_the_artifact_root(stack: Stack, run) -> None:
    # Runs after the traversal table (same module): the standalone data dir holds only the
    # embedded database files and the artifact tree.
    data_dir = stack.workdir / "standalone-data"
    if data_dir.exists():
        stray = [p for p in data_dir.rglob("*") if p.is_file()
                 and not p.is_relative_to(data_dir / "artifacts") and not p.is_relative_to(data_dir / "mongodb")
                 and p.name != "mongodb.log"]
        assert stray == []
        assert not any("pwned" in p.read_text(errors="ignore") for p in (data_dir / "artifacts").rglob("*") if p.is_file())
    # Either store: no listing anywhere shows an entry named like the attack targets.
    status, body = _raw(stack, "GET", f"{ART}/artifacts?path=")
    assert status == 200
    names = {f["path"] for f in json.loads(body).get("files", [])}
    assert not names & {"secret.txt", "etc", "..", "C:", "file:"}


def test_size_limit_and_cut_off_uploads_leave_nothing_visible(services, tmp_path: Path) -> None:
    from tests.stack import make_stack

    stack = make_stack(services, "lim", GENESIS_FLOW_MAX_ARTIFACT_BYTES=str(1024 * 1024))
    try:
        stack.start("writer")
        stack.start("ingest")
        stack.start("query")
        ingest, query = stack.url("ingest"), stack.url("query")
        path = "1/" + "a" * 32 + "/artifacts/too-big.bin"
        resp = requests.put(f"{ingest}{ART}/artifacts/{path}", data=b"x" * (2 * 1024 * 1024), timeout=30)
        assert resp.status_code == 400 and resp.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert requests.get(f"{query}{ART}/artifacts/{path}", timeout=10).status_code == 404

        # A client that dies mid-body: the declared length never arrives.
        conn = http.client.HTTPConnection("127.0.0.1", stack.ports["ingest"], timeout=10)
        conn.putrequest("PUT", f"{ART}/artifacts/1/{'b' * 32}/artifacts/cut.bin")
        conn.putheader("Content-Length", str(512 * 1024))
        conn.endheaders()
        conn.send(b"y" * (100 * 1024))
        conn.sock.close()
        listing = requests.get(f"{query}{ART}/artifacts", params={"path": f"1/{'b' * 32}/artifacts"}, timeout=10)
        assert listing.json() == {}
    finally:
        stack.stop()
