"""With GENESIS_FLOW_AUTH=basic the stock client authenticates with MLFLOW_TRACKING_USERNAME /
PASSWORD or MLFLOW_TRACKING_TOKEN, permissions work like MLflow's basic-auth app, and the
basic-auth admin client (`mlflow.server.get_app_client("basic-auth", ...)`) manages users and
grants."""

from __future__ import annotations

import time
import uuid

import mlflow
import mlflow.server
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException, RestException

from tests.security.conftest import ADMIN, ADMIN_PASSWORD
from tests.stack import Stack

pytestmark = pytest.mark.integration

API = "/api/2.0/mlflow"
PASSWORD = "user-password-0123"


@pytest.fixture
def as_user(monkeypatch):
    """Point the stock client's credentials (environment, read per request) at a user or token."""

    def switch(username: str | None = None, password: str | None = None, token: str | None = None) -> None:
        for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        if username is not None:
            monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", username)
            monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password or "")
        if token is not None:
            monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)

    return switch


def _user(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _eventually(check, timeout: float = 5.0):
    """Grants are cached per process for GENESIS_FLOW_AUTH_CACHE_TTL_S (1 s in these stacks)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, MlflowException):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_requests_without_credentials_get_401_and_open_routes_stay_open(auth_stack: Stack) -> None:
    uri = auth_stack.url("uri")
    for method, path in [("GET", API + "/experiments/search?max_results=1"), ("POST", API + "/runs/log-metric"),
                         ("GET", API + "/runs/get?run_id=x"), ("GET", "/api/2.0/mlflow-artifacts/artifacts?path=0"),
                         ("PUT", "/api/2.0/mlflow-artifacts/artifacts/0/x/artifacts/a.txt"),
                         ("GET", API + "/users/current"), ("POST", "/graphql")]:
        resp = requests.request(method, uri + path, json={}, timeout=10)
        assert resp.status_code == 401, (method, path, resp.text)
        assert resp.json()["error_code"] == "UNAUTHENTICATED"
        assert resp.headers["WWW-Authenticate"].startswith("Basic")
    bad = requests.get(uri + API + "/experiments/search", auth=(ADMIN, "wrong-password-123"), timeout=10)
    assert bad.status_code == 401
    assert "wrong-password" not in bad.text
    for path in ("/health", "/version", "/api/3.0/mlflow/server-info"):
        assert requests.get(uri + path, timeout=10).status_code == 200, path


def test_read_user_can_search_but_not_log(auth_stack: Stack, as_user) -> None:
    uri = auth_stack.url("uri")
    owner, reader = _user("owner"), _user("reader")
    as_user(ADMIN, ADMIN_PASSWORD)
    admin = mlflow.server.get_app_client("basic-auth", tracking_uri=uri)
    admin.create_user(owner, PASSWORD)
    admin.create_user(reader, PASSWORD)

    as_user(owner, PASSWORD)  # the creator of an experiment gets MANAGE on it
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment(f"owned-{uuid.uuid4().hex[:6]}")
    run = client.create_run(exp)
    client.log_metric(run.info.run_id, "loss", 0.5)
    client.log_param(run.info.run_id, "lr", "0.1")

    as_user(reader, PASSWORD)  # default_permission READ
    client = MlflowClient(tracking_uri=uri)
    assert exp in [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs([exp])
    assert [r.info.run_id for r in found] == [run.info.run_id]
    assert client.get_metric_history(run.info.run_id, "loss")[0].value == 0.5
    with pytest.raises(RestException) as err:
        client.log_metric(run.info.run_id, "loss", 0.4)
    assert err.value.error_code == "PERMISSION_DENIED"
    with pytest.raises(RestException) as err:
        client.create_run(exp)
    assert err.value.error_code == "PERMISSION_DENIED"
    with pytest.raises(RestException):
        client.delete_experiment(exp)

    as_user(ADMIN, ADMIN_PASSWORD)  # an admin grants EDIT: now the reader can log
    admin.grant_user_permission(reader, "experiment", exp, "EDIT")
    assert admin.get_user_permission(reader, "experiment", exp).permission == "EDIT"
    as_user(reader, PASSWORD)
    _eventually(lambda: MlflowClient(tracking_uri=uri).log_metric(run.info.run_id, "loss", 0.4))

    as_user(ADMIN, ADMIN_PASSWORD)  # NO_PERMISSIONS hides the experiment from the reader's searches
    admin.grant_user_permission(reader, "experiment", exp, "NO_PERMISSIONS")
    as_user(reader, PASSWORD)

    def hidden() -> None:
        client = MlflowClient(tracking_uri=uri)
        assert exp not in [e.experiment_id for e in client.search_experiments()]
        assert client.search_runs([exp]) == []
        with pytest.raises(RestException) as err:
            client.get_run(run.info.run_id)
        assert err.value.error_code == "PERMISSION_DENIED"

    _eventually(hidden)


def test_admin_client_manages_users(auth_stack: Stack, as_user) -> None:
    uri = auth_stack.url("uri")
    name = _user("managed")
    as_user(ADMIN, ADMIN_PASSWORD)
    admin = mlflow.server.get_app_client("basic-auth", tracking_uri=uri)
    created = admin.create_user(name, PASSWORD)
    assert created.username == name and not created.is_admin
    assert admin.get_user(name).id == created.id
    with pytest.raises(RestException):
        admin.create_user(name, PASSWORD)  # already exists
    with pytest.raises(RestException):
        admin.create_user(_user("short"), "too-short")  # passwords have at least 12 characters

    admin.update_user_password(name, "another-password-456")
    admin.update_user_admin(name, True)
    as_user(name, "another-password-456")
    me = requests.get(uri + API + "/users/current", auth=(name, "another-password-456"), timeout=10).json()
    assert me["user"]["is_admin"] is True
    as_user(name, PASSWORD)  # the old password no longer works
    with pytest.raises(MlflowException):
        _eventually(lambda: MlflowClient(tracking_uri=uri).search_experiments(), timeout=0)

    as_user(ADMIN, ADMIN_PASSWORD)
    admin.delete_user(name)
    with pytest.raises(RestException) as err:
        admin.get_user(name)
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_non_admin_cannot_manage_users(auth_stack: Stack, as_user) -> None:
    uri = auth_stack.url("uri")
    name = _user("plain")
    as_user(ADMIN, ADMIN_PASSWORD)
    mlflow.server.get_app_client("basic-auth", tracking_uri=uri).create_user(name, PASSWORD)
    as_user(name, PASSWORD)
    client = mlflow.server.get_app_client("basic-auth", tracking_uri=uri)
    with pytest.raises(RestException) as err:
        client.create_user(_user("sneaky"), PASSWORD)
    assert err.value.error_code == "PERMISSION_DENIED"
    with pytest.raises(RestException):
        client.update_user_admin(name, True)
    with pytest.raises(RestException):
        client.get_user(ADMIN)
    assert client.get_user(name).username == name  # oneself is fine
    # routes without a rule (operator routes) are for admins only: fail closed
    resp = requests.get(uri + API + "/metrics/system", auth=(name, PASSWORD), timeout=10)
    assert resp.status_code == 200
    resp = requests.post(uri + "/graphql", json={"query": "{ __typename }"}, auth=(name, PASSWORD), timeout=10)
    assert resp.status_code != 401


def test_stock_client_with_a_token(auth_stack: Stack, as_user) -> None:
    uri = auth_stack.url("uri")
    name = _user("tokened")
    as_user(ADMIN, ADMIN_PASSWORD)
    mlflow.server.get_app_client("basic-auth", tracking_uri=uri).create_user(name, PASSWORD)
    resp = requests.post(uri + "/api/2.0/genesis-flow/tokens/create", json={"name": "ci"}, auth=(name, PASSWORD),
                         timeout=10)
    assert resp.status_code == 200, resp.text
    token = resp.json()["token"]
    as_user(token=token)
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment(f"token-{uuid.uuid4().hex[:6]}")
    run = client.create_run(exp)
    client.log_batch(run.info.run_id, metrics=[mlflow.entities.Metric("m", 1.0, 1, 0)])
    assert client.get_run(run.info.run_id).data.metrics == {"m": 1.0}
    client.log_text(run.info.run_id, "through the proxy", "notes/a.txt")  # artifact proxy, same token
    assert [f.path for f in client.list_artifacts(run.info.run_id, "notes")] == ["notes/a.txt"]
    ui_upload = requests.post(uri + "/ajax-api/2.0/mlflow/upload-artifact", data=b"raw bytes",
                              params={"run_uuid": run.info.run_id, "path": "ui.bin"},
                              headers={"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"},
                              timeout=10)
    assert ui_upload.status_code == 200, ui_upload.text
    got = requests.get(uri + "/get-artifact", params={"run_uuid": run.info.run_id, "path": "ui.bin"},
                       headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert got.content == b"raw bytes"
    as_user(token=token + "x")
    with pytest.raises(MlflowException):
        MlflowClient(tracking_uri=uri).search_experiments()


def test_roles_grant_through_assignment(auth_stack: Stack, as_user) -> None:
    uri = auth_stack.url("uri")
    owner, member = _user("rowner"), _user("rmember")
    as_user(ADMIN, ADMIN_PASSWORD)
    admin = mlflow.server.get_app_client("basic-auth", tracking_uri=uri)
    admin.create_user(owner, PASSWORD)
    member_id = admin.create_user(member, PASSWORD).id
    as_user(owner, PASSWORD)
    exp = MlflowClient(tracking_uri=uri).create_experiment(f"roles-{uuid.uuid4().hex[:6]}")
    run = MlflowClient(tracking_uri=uri).create_run(exp)

    as_user(ADMIN, ADMIN_PASSWORD)
    role = admin.create_role("default", f"editors-{uuid.uuid4().hex[:6]}", description="may log")
    perm = admin.add_role_permission(role.id, "experiment", exp, "EDIT")
    assert [p.id for p in admin.list_role_permissions(role.id)] == [perm.id]
    assert role.id in [r.id for r in admin.list_roles("default")]
    assignment = admin.assign_role(member, role.id)
    assert assignment.user_id == member_id
    assert [r.id for r in admin.list_user_roles(member)] == [role.id]
    assert [a.user_id for a in admin.list_role_users(role.id)] == [member_id]

    as_user(member, PASSWORD)
    _eventually(lambda: MlflowClient(tracking_uri=uri).log_metric(run.info.run_id, "m", 1.0))

    as_user(ADMIN, ADMIN_PASSWORD)
    admin.update_role_permission(perm.id, "READ")
    assert admin.get_role(role.id).permissions[0].permission == "READ"
    as_user(member, PASSWORD)

    def denied() -> None:
        with pytest.raises(RestException) as err:
            MlflowClient(tracking_uri=uri).log_metric(run.info.run_id, "m", 2.0)
        assert err.value.error_code == "PERMISSION_DENIED"

    _eventually(denied)
    as_user(ADMIN, ADMIN_PASSWORD)
    admin.unassign_role(member, role.id)
    admin.delete_role(role.id)
    with pytest.raises(RestException):
        admin.get_role(role.id)


def test_a_model_version_cannot_launder_a_run_the_caller_cannot_read(auth_stack: Stack, as_user) -> None:
    uri = auth_stack.url("uri")
    owner, other = _user("vowner"), _user("vother")
    as_user(ADMIN, ADMIN_PASSWORD)
    admin = mlflow.server.get_app_client("basic-auth", tracking_uri=uri)
    admin.create_user(owner, PASSWORD)
    admin.create_user(other, PASSWORD)
    as_user(owner, PASSWORD)
    exp = MlflowClient(tracking_uri=uri).create_experiment(f"private-{uuid.uuid4().hex[:6]}")
    run = MlflowClient(tracking_uri=uri).create_run(exp)
    as_user(ADMIN, ADMIN_PASSWORD)
    admin.grant_user_permission(other, "experiment", exp, "NO_PERMISSIONS")

    as_user(other, PASSWORD)
    client = MlflowClient(tracking_uri=uri)
    name = f"laundry-{uuid.uuid4().hex[:6]}"
    client.create_registered_model(name)  # its creator: MANAGE on the model
    for source, run_id in ((f"{run.info.artifact_uri}/model", None), (f"runs:/{run.info.run_id}/model", None),
                           ("s3://bucket/model", run.info.run_id)):
        with pytest.raises(RestException) as err:
            client.create_model_version(name, source, run_id=run_id)
        assert err.value.error_code == "PERMISSION_DENIED"


def test_password_guessing_is_slowed_down(auth_stack: Stack) -> None:
    uri = auth_stack.url("uri")
    victim, bystander = _user("victim"), _user("bystander")
    for name in (victim, bystander):
        requests.post(uri + API + "/users/create", json={"username": name, "password": PASSWORD},
                      auth=(ADMIN, ADMIN_PASSWORD), timeout=10).raise_for_status()
    statuses = [requests.get(uri + API + "/experiments/search", auth=(victim, f"guess-{i:04d}-password"),
                             timeout=10) for i in range(40)]
    codes = [r.status_code for r in statuses]
    assert set(codes) <= {401, 429} and codes.count(429) >= 10, codes
    limited = next(r for r in statuses if r.status_code == 429)
    assert limited.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED" and int(limited.headers["Retry-After"]) >= 1
    # other accounts from the same address are not locked out
    assert requests.get(uri + API + "/experiments/search", auth=(bystander, PASSWORD), timeout=10).status_code == 200
