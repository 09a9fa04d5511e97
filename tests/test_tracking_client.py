"""The stock MLflow client against both ways of running Genesis-Flow, modelled on MLflow's own
REST tracking tests: `standalone` (one process) and `distributed` (nginx in front of separate
ingest, writer and query processes on the real servers). Same tests, same expectations."""

from __future__ import annotations

import math
import time
import uuid

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag, ViewType
from mlflow.exceptions import MlflowException

from tests.stack import Stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tracking_stack: Stack) -> Stack:
    return tracking_stack


@pytest.fixture(scope="module")
def client(stack: Stack) -> MlflowClient:
    return MlflowClient(tracking_uri=stack.url("uri"))


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- experiments ---------------------------------------------------------------------------


def test_default_experiment_exists(client: MlflowClient) -> None:
    default = client.get_experiment("0")
    assert default.name == "Default" and default.lifecycle_stage == "active"
    assert client.get_experiment_by_name("Default").experiment_id == "0"


def test_create_experiment_with_tags_and_get_it_by_id_and_name(client: MlflowClient) -> None:
    name = _name("exp")
    exp_id = client.create_experiment(name, tags={"team": "vision", "a.b": "dotted"})
    exp = client.get_experiment(exp_id)
    assert (exp.name, exp.lifecycle_stage) == (name, "active")
    assert exp.tags == {"team": "vision", "a.b": "dotted"}
    assert exp.artifact_location == f"mlflow-artifacts:/{exp_id}"
    assert client.get_experiment_by_name(name).experiment_id == exp_id


def test_missing_experiment_name_is_none_and_missing_id_is_404(client: MlflowClient) -> None:
    assert client.get_experiment_by_name(_name("nope")) is None
    with pytest.raises(MlflowException) as err:
        client.get_experiment("987654321")
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_duplicate_experiment_name_is_rejected(client: MlflowClient) -> None:
    name = _name("dup")
    client.create_experiment(name)
    with pytest.raises(MlflowException) as err:
        client.create_experiment(name)
    assert err.value.error_code == "RESOURCE_ALREADY_EXISTS"


def test_rename_tag_delete_and_restore_experiment(client: MlflowClient) -> None:
    exp_id = client.create_experiment(_name("life"))
    new_name = _name("renamed")
    client.rename_experiment(exp_id, new_name)
    client.set_experiment_tag(exp_id, "k", "v")
    assert client.get_experiment(exp_id).name == new_name
    assert client.get_experiment(exp_id).tags["k"] == "v"
    client.delete_experiment_tag(exp_id, "k")
    assert "k" not in client.get_experiment(exp_id).tags

    client.delete_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "deleted"
    active = {e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=50000)}
    deleted = {e.experiment_id for e in client.search_experiments(view_type=ViewType.DELETED_ONLY)}
    assert exp_id not in active and exp_id in deleted
    client.restore_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "active"


def test_search_experiments_with_filter_and_paging(client: MlflowClient) -> None:
    prefix = _name("page")
    ids = [client.create_experiment(f"{prefix}-{i:02d}", tags={"group": prefix}) for i in range(7)]
    found = client.search_experiments(filter_string=f"name LIKE '{prefix}-%'", order_by=["name ASC"])
    assert [e.experiment_id for e in found] == ids
    by_tag = client.search_experiments(filter_string=f"tags.group = '{prefix}'")
    assert {e.experiment_id for e in by_tag} == set(ids)
    seen, token = [], None
    while True:
        page = client.search_experiments(filter_string=f"name LIKE '{prefix}-%'", max_results=3, page_token=token)
        seen.extend(e.experiment_id for e in page)
        token = page.token
        if not token:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))


# --- runs ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exp_id(client: MlflowClient) -> str:
    return client.create_experiment(_name("runs"))


def test_create_run_with_tags_and_start_time_then_get_it(client: MlflowClient, exp_id: str) -> None:
    run = client.create_run(exp_id, start_time=1_700_000_000_000, tags={"owner": "ana"}, run_name="first")
    got = client.get_run(run.info.run_id)
    assert got.info.run_name == "first" and got.info.start_time == 1_700_000_000_000
    assert got.info.status == "RUNNING" and got.info.lifecycle_stage == "active"
    assert got.data.tags["owner"] == "ana" and got.data.tags["mlflow.runName"] == "first"
    assert got.info.artifact_uri == f"mlflow-artifacts:/{exp_id}/{run.info.run_id}/artifacts"


def test_update_run_status_end_time_and_name(client: MlflowClient, exp_id: str) -> None:
    run_id = client.create_run(exp_id).info.run_id
    client.update_run(run_id, status="KILLED", name="renamed")
    client.set_terminated(run_id, status="FINISHED", end_time=1_800_000_000_000)
    info = client.get_run(run_id).info
    assert (info.status, info.end_time, info.run_name) == ("FINISHED", 1_800_000_000_000, "renamed")


def test_delete_and_restore_run_and_writes_to_deleted_run_are_rejected(client: MlflowClient, exp_id: str) -> None:
    run_id = client.create_run(exp_id).info.run_id
    client.delete_run(run_id)
    assert client.get_run(run_id).info.lifecycle_stage == "deleted"
    with pytest.raises(MlflowException) as err:
        client.log_metric(run_id, "m", 1.0)
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    assert run_id not in {r.info.run_id for r in client.search_runs([exp_id])}
    assert run_id in {r.info.run_id for r in client.search_runs([exp_id], run_view_type=ViewType.DELETED_ONLY)}
    client.restore_run(run_id)
    client.log_metric(run_id, "m", 1.0)
    assert client.get_run(run_id).data.metrics["m"] == 1.0


def test_params_tags_and_metrics_semantics(client: MlflowClient, exp_id: str) -> None:
    run_id = client.create_run(exp_id).info.run_id
    client.log_param(run_id, "lr", "0.1")
    client.log_param(run_id, "lr", "0.1")
    with pytest.raises(MlflowException) as err:
        client.log_param(run_id, "lr", "0.2")
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    client.set_tag(run_id, "t", "1")
    client.set_tag(run_id, "t", "2")
    client.log_metric(run_id, "loss", 3.0, timestamp=10, step=2)
    client.log_metric(run_id, "loss", 5.0, timestamp=20, step=1)
    client.log_metric(run_id, "nan", float("nan"))
    client.log_metric(run_id, "inf", float("inf"))
    data = client.get_run(run_id).data
    assert data.params == {"lr": "0.1"} and data.tags["t"] == "2"
    assert data.metrics["loss"] == 3.0  # greatest step wins, not the latest write
    assert math.isnan(data.metrics["nan"])
    assert data.metrics["inf"] == 1.7976931348623157e308
    history = client.get_metric_history(run_id, "loss")
    assert [(m.timestamp, m.step, m.value) for m in history] == [(10, 2, 3.0), (20, 1, 5.0)]
    client.delete_tag(run_id, "t")
    assert "t" not in client.get_run(run_id).data.tags


def test_log_batch_of_30000_metrics_reads_back_through_paged_history(client: MlflowClient, exp_id: str) -> None:
    run_id = client.create_run(exp_id).info.run_id
    base = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric("acc", i / 30000, base + i, i) for i in range(30_000)],
                     params=[Param("p", "v")], tags=[RunTag("t", "v")])
    history = client.get_metric_history(run_id, "acc")  # pages of 25,000
    assert len(history) == 30_000
    assert [m.step for m in history] == list(range(30_000))
    assert history[-1].value == 29_999 / 30000
    assert client.get_run(run_id).data.metrics["acc"] == 29_999 / 30000


def test_read_your_writes_after_every_acknowledged_write(client: MlflowClient, exp_id: str) -> None:
    run_id = client.create_run(exp_id).info.run_id
    assert client.get_run(run_id).info.run_id == run_id
    for i in range(25):
        client.log_metric(run_id, "step_metric", float(i), step=i)
        assert client.get_run(run_id).data.metrics["step_metric"] == float(i)
        client.set_tag(run_id, "last", str(i))
        assert client.get_run(run_id).data.tags["last"] == str(i)
    client.log_param(run_id, "late", "x")
    assert client.get_run(run_id).data.params["late"] == "x"
    assert len(client.get_metric_history(run_id, "step_metric")) == 25


def test_fluent_api_end_to_end(stack: Stack) -> None:
    mlflow.set_tracking_uri(stack.url("uri"))
    try:
        mlflow.set_experiment(_name("fluent"))
        with mlflow.start_run() as run:
            mlflow.log_params({"a": 1, "b": "two"})
            mlflow.log_metrics({"x": 1.5, "y": 2.5}, step=3)
            mlflow.set_tags({"k": "v"})
        finished = MlflowClient(stack.url("uri")).get_run(run.info.run_id)
        assert finished.info.status == RunStatus.to_string(RunStatus.FINISHED)
        assert finished.data.params == {"a": "1", "b": "two"}
        assert finished.data.metrics == {"x": 1.5, "y": 2.5}
    finally:
        mlflow.set_tracking_uri(None)


# --- search ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def search_exp(client: MlflowClient) -> tuple[str, list[str]]:
    exp = client.create_experiment(_name("search"))
    run_ids = []
    for i in range(60):
        run = client.create_run(exp, start_time=1_000 + i, run_name=f"run-{i:02d}")
        metrics = [Metric("rmse", float(i % 10), 1, 0)] if i % 7 else []
        client.log_batch(run.info.run_id, metrics=metrics,
                         params=[Param("model", "tree" if i % 2 else "linear")],
                         tags=[RunTag("parity", "odd" if i % 2 else "even")])
        run_ids.append(run.info.run_id)
    return exp, run_ids


def test_search_filters_on_metrics_params_tags_and_attributes(client: MlflowClient, search_exp) -> None:
    exp, run_ids = search_exp
    runs = client.search_runs([exp], "metrics.rmse >= 8 and params.model = 'tree'", max_results=1000)
    assert runs and all(r.data.metrics["rmse"] >= 8 and r.data.params["model"] == "tree" for r in runs)
    expected = {rid for i, rid in enumerate(run_ids) if i % 7 and i % 10 >= 8 and i % 2}
    assert {r.info.run_id for r in runs} == expected
    tagged = client.search_runs([exp], "tags.parity = 'even' and attributes.run_name LIKE 'run-1%'")
    assert {r.info.run_name for r in tagged} == {f"run-1{d}" for d in range(0, 10, 2)}
    by_time = client.search_runs([exp], "attributes.start_time > 1055")
    assert len(by_time) == 4


def test_order_by_metric_desc_puts_missing_values_last(client: MlflowClient, search_exp) -> None:
    exp, run_ids = search_exp
    runs = client.search_runs([exp], order_by=["metrics.rmse DESC"], max_results=1000)
    values = [r.data.metrics.get("rmse") for r in runs]
    present = [v for v in values if v is not None]
    assert present == sorted(present, reverse=True)
    assert values[len(present):] == [None] * (len(values) - len(present))


def test_search_paging_returns_every_run_exactly_once(client: MlflowClient, search_exp) -> None:
    exp, run_ids = search_exp
    seen, token = [], None
    while True:
        page = client.search_runs([exp], max_results=7, page_token=token)
        seen.extend(r.info.run_id for r in page)
        token = page.token
        if not token:
            break
    assert len(seen) == len(run_ids) and set(seen) == set(run_ids)
    assert seen == list(reversed(run_ids))  # default order: start_time DESC


def test_search_in_on_run_id(client: MlflowClient, search_exp) -> None:
    exp, run_ids = search_exp
    wanted = run_ids[3:6]
    quoted = ", ".join(f"'{r}'" for r in wanted)
    runs = client.search_runs([exp], f"attributes.run_id IN ({quoted})")
    assert {r.info.run_id for r in runs} == set(wanted)
    runs = client.search_runs([exp], f"attributes.run_id NOT IN ({quoted})")
    assert len(runs) == len(run_ids) - 3


@pytest.mark.parametrize("bad", [
    "metrics.rmse >",
    "params.model = tree",
    "metrics.rmse > 1 OR metrics.rmse < 0",
    "attributes.run_id IN 'x'",
    "tags.k LIKE 5",
    "nonsense.key = '1'",
    "params.x = '{\"$gt\": \"\"}' and metrics.m ~ 1",
])
def test_bad_filters_are_400(stack: Stack, client: MlflowClient, search_exp, bad: str) -> None:
    exp, _ = search_exp
    with pytest.raises(MlflowException) as err:
        client.search_runs([exp], bad)
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    resp = requests.post(stack.url("uri") + "/api/2.0/mlflow/runs/search",
                         json={"experiment_ids": [exp], "filter": bad}, timeout=10)
    assert resp.status_code == 400


def test_unknown_route_is_a_bare_404(stack: Stack) -> None:
    for method in ("GET", "POST"):
        resp = requests.request(method, stack.url("uri") + "/api/2.0/mlflow/does-not/exist", timeout=10)
        assert resp.status_code == 404 and resp.content == b""


def test_health_ready_and_metrics(stack: Stack) -> None:
    assert requests.get(stack.url("uri") + "/health", timeout=10).json() == {"status": "ok"}
    assert requests.get(stack.url("uri") + "/ready", timeout=10).status_code == 200
    assert "genesis_http_requests_total" in requests.get(stack.url("uri") + "/metrics", timeout=10).text


def test_router_answers_503_json_when_no_replica_answers(services) -> None:
    from tests.services import free_port, start_nginx
    from tests.stack import router_config

    dead = f"127.0.0.1:{free_port()}"
    port, stop = start_nginx(router_config("127.0.0.1:{{LISTEN_PORT}}", [dead], [dead]))
    try:
        resp = requests.post(f"http://127.0.0.1:{port}/api/2.0/mlflow/runs/log-metric", json={}, timeout=10)
        assert resp.status_code == 503 and resp.headers["Retry-After"] == "1"
        assert resp.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    finally:
        stop()


def test_metrics_show_the_mongodb_connection_pool(stack: Stack) -> None:
    # The production checklist greps /metrics for connection_pool.
    target = stack.url("query") if "query" in stack.ports else stack.url("uri")
    text = requests.get(target + "/metrics", timeout=10).text
    assert "genesis_mongodb_connection_pool_connections{" in text
