"""logged-models/{id} and logged-models/search over HTTP and through the stock client, against the
real MongoDB wire server, on models written by the writer's own code path."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus
from mlflow.exceptions import MlflowException

from common import documents
from common import events as ev
from tests.query_support import QueryEnv
from writer.plan import plan_batch
from writer.store import apply_plan, load_state

pytestmark = pytest.mark.integration

T = TypeVar("T")
READY, FAILED = "LOGGED_MODEL_READY", "LOGGED_MODEL_UPLOAD_FAILED"


async def write(env: QueryEnv, *events: ev.Event) -> None:
    """One writer batch, as the writer tier would plan and apply it; every event must commit."""
    now = int(time.time() * 1000)
    envelopes = [ev.Envelope(id=uuid.uuid4().hex, partition_key=ev.partition_key(e), published_at=now, event=e)
                 for e in events]
    plan = plan_batch(envelopes, await load_state(env.db, envelopes), bucket_size=1000)
    rejected = {k: err.message for k, err in plan.outcomes.items() if err is not None}
    assert not rejected, rejected
    await apply_plan(env.db, plan)


def new_model_id() -> str:
    return f"m-{uuid.uuid4().hex}"


def created(exp: str, name: str, at: int, *, model_id: str | None = None, model_type: str = "",
            source_run_id: str | None = None, tags: dict[str, str] | None = None,
            params: dict[str, str] | None = None) -> ev.LoggedModelCreated:
    model_id = model_id or new_model_id()
    return ev.LoggedModelCreated(
        model_id=model_id, experiment_id=exp, name=name, creation_timestamp_ms=at, model_type=model_type,
        artifact_location=documents.model_artifact_location(documents.experiment_artifact_location(exp), model_id),
        source_run_id=source_run_id, tags=[ev.Tag(k, v) for k, v in (tags or {}).items()],
        params=[ev.Tag(k, v) for k, v in (params or {}).items()])


def metric(key: str, value: float, timestamp: int, model_id: str, *, step: int = 0, dataset: str | None = None,
           digest: str | None = None) -> ev.Metric:
    return ev.Metric(key, value, timestamp, step, model_id=model_id, dataset_name=dataset, dataset_digest=digest)


@dataclass
class Models:
    exp: str
    other_exp: str
    paging_exp: str
    run_id: str
    ids: dict[str, str]  # model name -> id
    paging_ids: list[str]


@pytest.fixture(scope="module")
async def models(env: QueryEnv) -> Models:
    w = env.writer
    exp = await w.experiment("models-search")
    other = await w.experiment("models-other")
    run_id = await w.run(exp, "trainer", 100)
    specs = {
        "alpha": created(exp, "alpha", 1000, model_type="sklearn", source_run_id=run_id,
                         tags={"stage": "prod", "mlflow.user": "alice"}, params={"lr": "0.01", "a.b": "dotted"}),
        "beta": created(exp, "beta", 2000, model_type="pytorch", source_run_id=run_id, tags={"stage": "dev"},
                        params={"lr": "0.1"}),
        "gamma": created(exp, "gamma", 3000),
        "delta": created(exp, "delta", 4000, tags={"stage": "prod"}),
        "deleted": created(exp, "deleted", 5000),
        "elsewhere": created(other, "elsewhere", 500),
    }
    ids = {name: e.model_id for name, e in specs.items()}
    await write(env, *specs.values())
    await write(env, ev.RunDataLogged(run_id=run_id, metrics=[
        metric("accuracy", 0.9, 10, ids["alpha"], dataset="eval", digest="d1"),
        metric("accuracy", 0.95, 20, ids["alpha"], dataset="train", digest="d2"),  # alpha's latest
        metric("loss", 0.2, 20, ids["alpha"]),
        metric("accuracy", 0.8, 10, ids["beta"], dataset="eval", digest="d1"),
        metric("accuracy", 0.7, 30, ids["beta"], dataset="eval", digest="d1"),  # beta's latest
        metric("accuracy", math.nan, 10, ids["gamma"]),
        metric("accuracy", 0.99, 10, ids["deleted"]),
        metric("accuracy", 0.99, 10, ids["elsewhere"]),
    ]))
    await write(env, ev.LoggedModelFinalized(ids["alpha"], status=READY, time=1500),
                ev.LoggedModelFinalized(ids["beta"], status=READY, time=2500),
                ev.LoggedModelFinalized(ids["gamma"], status=FAILED, time=3500),
                ev.LoggedModelFinalized(ids["deleted"], status=READY, time=5500),
                ev.LoggedModelDeleted(ids["deleted"], time=6000))

    paging = await w.experiment("models-paging")
    batch = [created(paging, f"p{i:03d}", 10_000 + (i % 7)) for i in range(75)]  # many creation ties
    await write(env, *batch)
    scores = []
    for i, c in enumerate(batch):
        if i % 10 == 0:
            continue  # no score: sorts last
        scores.append(metric("score", math.nan if i % 10 == 1 else float(i % 5), 1, c.model_id))
    await write(env, ev.RunDataLogged(run_id=run_id, metrics=scores))
    await write(env, *[ev.LoggedModelFinalized(c.model_id, status=READY if i % 3 else FAILED, time=20_000)
                       for i, c in enumerate(batch)])
    return Models(exp, other, paging, run_id, ids, [c.model_id for c in batch])


async def _search(env: QueryEnv, body: dict) -> dict:
    status, out = await env.post("/logged-models/search", body)
    assert status == 200, out
    return out


async def _names(env: QueryEnv, models: Models, **body: Any) -> list[str]:
    out = await _search(env, {"experiment_ids": [models.exp], **body})
    return [m["info"]["name"] for m in out.get("models", [])]


# --- logged-models/{model_id} ----------------------------------------------------------------------


async def test_get_logged_model_matches_the_reference_server_shape(env: QueryEnv) -> None:
    """The seed workflow's model, from the reference transcript, with our ids: its GET before and after
    finalize answers what the reference server answered."""
    w = env.writer
    exp = await w.experiment("e2e_models")
    run_id = await w.run(exp, "luminous-perch-218", 1795693936553)
    model = created(exp, "model", 1795693936815, source_run_id=run_id, params={"x1": "1", "x2": "two"},
                    tags={"mlflow.user": "root", "mlflow.source.name": "workflow.py", "mlflow.source.type": "LOCAL"})
    await write(env, model)
    await write(env, ev.RunDataLogged(run_id=run_id, metrics=[
        metric("r2_score", 0.9956613756613757, 1795693936684, model.model_id)]))

    expected_info = {
        "model_id": model.model_id, "experiment_id": exp, "name": "model",
        "creation_timestamp_ms": 1795693936815, "last_updated_timestamp_ms": 1795693936815,
        "artifact_uri": f"mlflow-artifacts:/{exp}/models/{model.model_id}/artifacts",
        "status": "LOGGED_MODEL_PENDING", "model_type": "", "source_run_id": run_id,
        "tags": [{"key": "mlflow.source.name", "value": "workflow.py"},
                 {"key": "mlflow.source.type", "value": "LOCAL"}, {"key": "mlflow.user", "value": "root"}],
    }
    expected_data = {
        "params": [{"key": "x1", "value": "1"}, {"key": "x2", "value": "two"}],
        "metrics": [{"key": "r2_score", "value": 0.9956613756613757, "timestamp": 1795693936684, "step": 0,
                     "model_id": model.model_id, "run_id": run_id}],
    }
    assert await env.get(f"/logged-models/{model.model_id}") == (
        200, {"model": {"info": expected_info, "data": expected_data}})

    await write(env, ev.LoggedModelFinalized(model.model_id, status=READY, time=1795693941593))
    status, body = await env.get(f"/logged-models/{model.model_id}")
    assert status == 200
    assert body["model"]["info"] == {**expected_info, "status": READY, "last_updated_timestamp_ms": 1795693941593}
    assert body["model"]["data"] == expected_data
    # logged-models/search renders the same model the same way
    assert (await _search(env, {"experiment_ids": [exp]}))["models"] == [body["model"]]


async def test_get_deleted_model_is_404_unless_allowed(env: QueryEnv, models: Models) -> None:
    model_id = models.ids["deleted"]
    not_found = {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"Logged model with ID '{model_id}' not found."}
    assert await env.get(f"/logged-models/{model_id}") == (404, not_found)
    assert await env.get(f"/logged-models/{model_id}", allow_deleted="false") == (404, not_found)
    for allowed in ("true", "TRUE"):
        status, body = await env.get(f"/logged-models/{model_id}", allow_deleted=allowed)
        assert status == 200
        assert body["model"]["info"]["name"] == "deleted"
        assert body["model"]["info"]["last_updated_timestamp_ms"] == 6000


async def test_get_missing_model_is_404(env: QueryEnv) -> None:
    missing = "m-" + "0" * 32
    assert await env.get(f"/logged-models/{missing}", allow_deleted="true") == (
        404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"Logged model with ID '{missing}' not found."})


async def test_get_through_the_ajax_prefix(env: QueryEnv, models: Models) -> None:
    resp = await env.http.get(f"/ajax-api/2.0/mlflow/logged-models/{models.ids['alpha']}")
    body = await resp.json()
    assert resp.status == 200
    info, data = body["model"]["info"], body["model"]["data"]
    assert (info["name"], info["status"], info["model_type"], info["source_run_id"]) == (
        "alpha", READY, "sklearn", models.run_id)
    assert info["tags"] == [{"key": "mlflow.user", "value": "alice"}, {"key": "stage", "value": "prod"}]
    assert data["params"] == [{"key": "lr", "value": "0.01"}, {"key": "a.b", "value": "dotted"}]
    assert [(m["key"], m["value"], m.get("dataset_name")) for m in data["metrics"]] == [
        ("accuracy", 0.9, "eval"), ("accuracy", 0.95, "train"), ("loss", 0.2, None)]


async def test_get_on_the_search_path_is_not_a_model_lookup(env: QueryEnv) -> None:
    resp = await env.http.get("/api/2.0/mlflow/logged-models/search")
    assert resp.status == 405


# --- logged-models/search: filters ---------------------------------------------------------------


@pytest.mark.parametrize(("filter_string", "expected"), [
    ("", ["delta", "gamma", "beta", "alpha"]),  # active only, creation_timestamp DESC
    ("name = 'alpha'", ["alpha"]),
    ("attributes.name != 'alpha'", ["delta", "gamma", "beta"]),
    ("name LIKE '%ta'", ["delta", "beta"]),
    ("name ILIKE 'A%'", ["alpha"]),
    ("name LIKE 'A%'", []),  # LIKE is case-sensitive
    ("name IN ('alpha', 'gamma', 'nope')", ["gamma", "alpha"]),
    ("name NOT IN ('alpha', 'gamma')", ["delta", "beta"]),
    ("name = 'deleted'", []),
    ("status = 'LOGGED_MODEL_READY'", ["beta", "alpha"]),
    ("status = 'READY'", ["beta", "alpha"]),  # the client's LoggedModelStatus value
    ("status = '2'", ["beta", "alpha"]),  # the SQL store's integer
    ("status != 'READY'", ["delta", "gamma"]),
    ("status IN ('FAILED', 'LOGGED_MODEL_PENDING')", ["delta", "gamma"]),
    ("model_type = 'sklearn'", ["alpha"]),
    ("model_type != 'sklearn'", ["delta", "gamma", "beta"]),
    ("creation_timestamp > 1500", ["delta", "gamma", "beta"]),
    ("creation_time <= 2000", ["beta", "alpha"]),
    ("attributes.creation_timestamp >= 3000", ["delta", "gamma"]),
    ("last_updated_timestamp < 3000", ["beta", "alpha"]),  # finalized at 2500 and 1500; delta never (4000)
    ("tags.stage = 'prod'", ["delta", "alpha"]),
    ("tags.stage != 'prod'", ["beta"]),  # a model without the tag is no match
    ("tags.stage LIKE 'p%'", ["delta", "alpha"]),
    ("tags.stage IN ('dev', 'prod')", ["delta", "beta", "alpha"]),
    ("tags.`mlflow.user` = 'alice'", ["alpha"]),
    ("params.lr = '0.01'", ["alpha"]),
    ("params.lr NOT IN ('0.1')", ["alpha"]),
    ("params.`a.b` = 'dotted'", ["alpha"]),
    ('params."a.b" = "dotted"', ["alpha"]),
    ("""params.lr = '{"$gt": ""}'""", []),
    ("name LIKE '.*'", []),  # the pattern is LIKE, not a regex
    ("metrics.accuracy > 0.75", ["beta", "alpha"]),  # any entry: beta's earlier 0.8 counts
    ("metrics.accuracy < 0.75", ["beta"]),
    ("metrics.accuracy = 0", []),  # the placeholder under a NaN never matches
    ("metrics.accuracy != 0.9", ["gamma", "beta", "alpha"]),  # NaN != 0.9
    ("metrics.loss <= 0.2 AND tags.stage = 'prod'", ["alpha"]),
    ("metrics.accuracy > 0.5 and status = 'READY' and creation_timestamp > 1000", ["beta"]),
])
async def test_search_filters(env: QueryEnv, models: Models, filter_string: str, expected: list[str]) -> None:
    assert await _names(env, models, filter=filter_string) == expected


async def test_search_by_model_id_and_source_run(env: QueryEnv, models: Models) -> None:
    ids = models.ids
    assert await _names(env, models, filter=f"model_id = '{ids['beta']}'") == ["beta"]
    assert await _names(env, models, filter=f"model_id IN ('{ids['gamma']}', '{ids['deleted']}')") == ["gamma"]
    assert await _names(env, models, filter=f"source_run_id = '{models.run_id}'") == ["beta", "alpha"]


@pytest.mark.parametrize(("datasets", "filter_string", "expected"), [
    ([{"dataset_name": "train"}], "metrics.accuracy > 0.75", ["alpha"]),
    ([{"dataset_name": "eval", "dataset_digest": "d1"}], "metrics.accuracy > 0.85", ["alpha"]),
    ([{"dataset_name": "eval"}, {"dataset_name": "train"}], "metrics.accuracy >= 0.8", ["beta", "alpha"]),
    ([{"dataset_name": "eval"}], "", ["beta", "alpha"]),  # no metric clause: some metric on the dataset
    ([{"dataset_name": "eval", "dataset_digest": "other"}], "", []),
    ([{"dataset_name": "train"}], "metrics.loss < 1", []),  # loss was logged without a dataset
])
async def test_search_datasets_scope_metric_clauses(env: QueryEnv, models: Models, datasets: list[dict],
                                                    filter_string: str, expected: list[str]) -> None:
    assert await _names(env, models, filter=filter_string, datasets=datasets) == expected


async def test_search_several_experiments_and_none(env: QueryEnv, models: Models) -> None:
    out = await _search(env, {"experiment_ids": [models.exp, models.other_exp], "filter": "creation_time < 1500"})
    assert [m["info"]["name"] for m in out["models"]] == ["alpha", "elsewhere"]
    assert await _search(env, {"experiment_ids": []}) == {}
    assert await _search(env, {"experiment_ids": ["424242"]}) == {}


async def test_empty_result_is_an_empty_object(env: QueryEnv, models: Models) -> None:
    """As in the reference transcript: no models, no token -> `{}`."""
    assert await _search(env, {"experiment_ids": [models.exp], "filter": "name = 'reports'"}) == {}


# --- logged-models/search: order -----------------------------------------------------------------


def _order(field_name: str, ascending: bool | None = None, **more: str) -> dict[str, Any]:
    return {"field_name": field_name, **({} if ascending is None else {"ascending": ascending}), **more}


@pytest.mark.parametrize(("order_by", "expected"), [
    ([], ["delta", "gamma", "beta", "alpha"]),
    # the latest entry per model (alpha 0.95 @20, beta 0.7 @30); NaN, then no metric, last
    ([_order("metrics.accuracy", False)], ["alpha", "beta", "gamma", "delta"]),
    ([_order("metrics.accuracy", True)], ["beta", "alpha", "gamma", "delta"]),
    ([_order("metrics.accuracy")], ["beta", "alpha", "gamma", "delta"]),  # ascending by default
    # on the eval dataset: alpha 0.9, beta 0.7; gamma and delta have none and tie (creation DESC)
    ([_order("metrics.accuracy", False, dataset_name="eval")], ["alpha", "beta", "delta", "gamma"]),
    ([_order("metrics.accuracy", False, dataset_name="eval", dataset_digest="nope")],
     ["delta", "gamma", "beta", "alpha"]),
    ([_order("creation_timestamp", True)], ["alpha", "beta", "gamma", "delta"]),
    ([_order("creation_time", True)], ["alpha", "beta", "gamma", "delta"]),
    ([_order("name", False)], ["gamma", "delta", "beta", "alpha"]),
    ([_order("model_type", False)], ["alpha", "beta", "delta", "gamma"]),
    ([_order("status", True)], ["delta", "beta", "alpha", "gamma"]),  # PENDING < READY < UPLOAD_FAILED
    ([_order("last_updated_timestamp", False)], ["delta", "gamma", "beta", "alpha"]),
    ([_order("source_run_id", True), _order("name", True)], ["alpha", "beta", "delta", "gamma"]),  # nulls last
    ([_order("name", True), _order("name", False)], ["alpha", "beta", "delta", "gamma"]),  # a repeat changes nothing
])
async def test_search_order(env: QueryEnv, models: Models, order_by: list[dict], expected: list[str]) -> None:
    assert await _names(env, models, order_by=order_by) == expected


async def test_search_order_by_model_id(env: QueryEnv, models: Models) -> None:
    names = await _names(env, models, order_by=[_order("model_id", False)])
    active = ("alpha", "beta", "gamma", "delta")
    assert names == [n for _, n in sorted(((models.ids[n], n) for n in active), reverse=True)]


# --- logged-models/search: paging ----------------------------------------------------------------


async def _all_pages(env: QueryEnv, body: dict, page_size: int | None) -> tuple[list[str], int]:
    seen: list[str] = []
    pages = 0
    token = None
    while True:
        size = {"max_results": page_size} if page_size else {}
        out = await _search(env, {**body, **size, **({"page_token": token} if token else {})})
        pages += 1
        seen += [m["info"]["model_id"] for m in out.get("models", [])]
        token = out.get("next_page_token")
        if not token:
            return seen, pages


@pytest.mark.parametrize("order_by", [
    [], [_order("metrics.score", False)], [_order("metrics.score", True), _order("name", False)],
    [_order("status")], [_order("creation_timestamp", True)], [_order("model_id")],
])
async def test_paging_returns_every_model_exactly_once_in_order(env: QueryEnv, models: Models,
                                                                order_by: list[dict]) -> None:
    body = {"experiment_ids": [models.paging_exp], "order_by": order_by}
    whole, _ = await _all_pages(env, body, 1000)
    paged, pages = await _all_pages(env, body, 20)
    assert pages == 4
    assert len(paged) == 75 and set(paged) == set(models.paging_ids)
    assert paged == whole


async def test_metric_order_across_pages_puts_nan_then_missing_last(env: QueryEnv, models: Models) -> None:
    paged, _ = await _all_pages(env, {"experiment_ids": [models.paging_exp],
                                      "order_by": [_order("metrics.score", False)]}, 20)
    index = {mid: i for i, mid in enumerate(models.paging_ids)}
    kinds = ["missing" if index[m] % 10 == 0 else "nan" if index[m] % 10 == 1 else "value" for m in paged]
    assert kinds == ["value"] * 59 + ["nan"] * 8 + ["missing"] * 8
    scores = [index[m] % 5 for m in paged[:59]]
    assert scores == sorted(scores, reverse=True)


async def test_default_page_size_is_the_proto_default(env: QueryEnv, models: Models) -> None:
    first = await _search(env, {"experiment_ids": [models.paging_exp]})
    assert len(first["models"]) == 50 and first["next_page_token"]
    rest = await _search(env, {"experiment_ids": [models.paging_exp], "page_token": first["next_page_token"]})
    assert len(rest["models"]) == 25 and "next_page_token" not in rest


async def test_page_token_of_another_search_is_rejected(env: QueryEnv, models: Models) -> None:
    first = await _search(env, {"experiment_ids": [models.paging_exp], "max_results": 10})
    status, body = await env.post("/logged-models/search", {
        "experiment_ids": [models.paging_exp], "max_results": 10, "filter": "name LIKE 'p%'",
        "page_token": first["next_page_token"]})
    assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE"


# --- logged-models/search: bad requests ----------------------------------------------------------


@pytest.mark.parametrize("body", [
    {"filter": "name = 'alpha' OR name = 'beta'"},
    {"filter": "metrics.accuracy > 'x'"},
    {"filter": "metrics.accuracy LIKE '0.5'"},
    {"filter": "creation_timestamp LIKE '1%'"},
    {"filter": "creation_timestamp > '1000'"},
    {"filter": "params.lr = 0.1"},
    {"filter": "params.lr > '0.1'"},
    {"filter": "tags.stage IS NULL"},
    {"filter": "name IN 'alpha'"},
    {"filter": "name = ('alpha')"},
    {"filter": "nope = 'x'"},
    {"filter": "metric.accuracy > 1"},
    {"filter": "datasets.name = 'eval'"},
    {"filter": "name = 'unterminated"},
    {"filter": "name ="},
    {"filter": "params.`a\u0000b` = 'x'"},
    {"filter": 5},
    {"order_by": [{"field_name": "params.lr"}]},
    {"order_by": [{"field_name": "nope"}]},
    {"order_by": [{"field_name": ""}]},
    {"order_by": [{"ascending": False}]},
    {"order_by": "name"},
    {"order_by": ["name"]},
    {"datasets": [{"dataset_digest": "d1"}]},
    {"datasets": {"dataset_name": "eval"}},
    {"page_token": "garbage!!"},
    {"page_token": "eyJ2IjogMX0="},
    {"max_results": -1},
    {"max_results": "many"},
    {"experiment_ids": None},  # as good as missing: the field is required
    {"experiment_ids": "1"},
    {"experiment_ids": [1]},
    {"experiment_ids": ["abc"]},
])
async def test_bad_search_is_400(env: QueryEnv, models: Models, body: dict) -> None:
    status, out = await env.post("/logged-models/search", {"experiment_ids": [models.exp], **body})
    assert status == 400, out
    assert out["error_code"] == "INVALID_PARAMETER_VALUE" and out["message"]


# --- the stock client ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(env: QueryEnv) -> MlflowClient:
    return MlflowClient(tracking_uri=env.url)


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """The client is synchronous: run it in a worker thread while the loop keeps serving."""
    return await asyncio.to_thread(fn, *args, **kwargs)


async def test_client_get_logged_model(client: MlflowClient, models: Models) -> None:
    model = await call(client.get_logged_model, models.ids["alpha"])
    assert (model.model_id, model.name, model.experiment_id) == (models.ids["alpha"], "alpha", models.exp)
    assert model.status == LoggedModelStatus.READY and model.model_type == "sklearn"
    assert model.source_run_id == models.run_id and model.creation_timestamp == 1000
    assert model.tags == {"stage": "prod", "mlflow.user": "alice"}
    assert model.params == {"lr": "0.01", "a.b": "dotted"}
    assert [(m.key, m.value, m.dataset_name, m.run_id) for m in model.metrics] == [
        ("accuracy", 0.9, "eval", models.run_id), ("accuracy", 0.95, "train", models.run_id),
        ("loss", 0.2, None, models.run_id)]
    gamma = await call(client.get_logged_model, models.ids["gamma"])
    assert gamma.status == LoggedModelStatus.FAILED and math.isnan(gamma.metrics[0].value)


async def test_client_get_deleted_model_raises(client: MlflowClient, models: Models) -> None:
    with pytest.raises(MlflowException) as info:
        await call(client.get_logged_model, models.ids["deleted"])
    assert info.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    store = client._tracking_client.store
    deleted = await call(store.get_logged_model, models.ids["deleted"], allow_deleted=True)
    assert deleted.name == "deleted"


async def test_client_search_filters_and_orders(client: MlflowClient, models: Models) -> None:
    found = await call(client.search_logged_models, experiment_ids=[models.exp],
                       filter_string="metrics.accuracy > 0.5 AND status = 'READY'",
                       order_by=[{"field_name": "metrics.accuracy", "ascending": False}])
    assert [m.name for m in found] == ["alpha", "beta"] and found.token is None
    on_eval = await call(client.search_logged_models, experiment_ids=[models.exp],
                         datasets=[{"dataset_name": "eval", "dataset_digest": "d1"}],
                         order_by=[{"field_name": "metrics.accuracy", "ascending": True, "dataset_name": "eval"}])
    assert [m.name for m in on_eval] == ["beta", "alpha"]
    assert list(await call(client.search_logged_models, experiment_ids=[models.exp],
                           filter_string="name = 'reports'")) == []


async def test_client_search_pages(client: MlflowClient, models: Models) -> None:
    seen: list[str] = []
    token = None
    while True:
        page = await call(client.search_logged_models, experiment_ids=[models.paging_exp], max_results=30,
                          order_by=[{"field_name": "creation_timestamp", "ascending": True}], page_token=token)
        seen += [m.model_id for m in page]
        token = page.token
        if token is None:
            break
    assert len(seen) == 75 and set(seen) == set(models.paging_ids)


async def test_client_search_errors_surface_as_mlflow_exceptions(client: MlflowClient, models: Models) -> None:
    with pytest.raises(MlflowException) as info:
        await call(client.search_logged_models, experiment_ids=[models.exp],
                   filter_string="name = 'alpha' OR name = 'beta'")
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as info:
        await call(client.search_logged_models, experiment_ids=[models.exp],
                   order_by=[{"field_name": "params.lr"}])
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
