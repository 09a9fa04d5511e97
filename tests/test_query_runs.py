"""runs/get and runs/search over HTTP, against the real MongoDB wire server, on data written by
the writer's own code path."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from common import events as ev
from tests.query_support import QueryEnv

pytestmark = pytest.mark.integration

MAX_DOUBLE = 1.7976931348623157e308


@dataclass
class Runs:
    exp: str
    other_exp: str
    paging_exp: str
    ids: dict[str, str]  # run name -> run id
    paging_ids: list[str]


@pytest.fixture(scope="module")
async def runs(env: QueryEnv) -> Runs:
    w = env.writer
    exp = await w.experiment("runs-search")
    other = await w.experiment("runs-other")
    ids: dict[str, str] = {}
    specs = [
        # name, start, user, rmse, params, tags
        ("best", 5000, "alice", 0.1, {"lr": "0.01", "opt": "adam", "a.b": "dotted", "$where": "dollar"}, {"team": "ml"}),
        ("mid", 4000, "bob", 0.5, {"lr": "0.1", "opt": "sgd"}, {"team": "research"}),
        ("nan", 3000, "bob", math.nan, {"lr": "0.1"}, {}),
        ("none", 2000, "carol", None, {"opt": "Adam"}, {"team": "ml"}),
        ("inf", 1000, "carol", math.inf, {"opt": "adamw"}, {}),
        ("deleted", 6000, "alice", 0.0, {"lr": "0.01"}, {}),
    ]
    created = {name: w.run_created(exp, name, start, user_id=user) for name, start, user, *_ in specs}
    await w.apply(*created.values())
    ids = {name: c.run_id for name, c in created.items()}
    data = []
    for name, _, _, rmse, params, tags in specs:
        metrics = [("acc", 0.5, 10, 0)] + ([("rmse", rmse, 20, 1)] if rmse is not None else [])
        data.append(w.data(ids[name], metrics=metrics, params=params, tags=tags))
    await w.apply(*data)
    await w.apply(ev.RunUpdated(ids["best"], status="FINISHED", end_time=9000),
                  ev.RunUpdated(ids["mid"], status="FAILED", end_time=8000),
                  ev.RunDeleted(ids["deleted"], time=7000))
    ids["elsewhere"] = await w.run(other, "elsewhere", 500)

    paging = await w.experiment("runs-paging")
    batch = [w.run_created(paging, f"p{i:03d}", 10_000 + (i % 9)) for i in range(120)]  # many start_time ties
    await w.apply(*batch)
    paging_data = []
    for i, c in enumerate(batch):
        if i % 10 == 0:
            continue  # no score: sorts last
        score = math.nan if i % 10 == 1 else float(i % 7)  # ties, and NaN before missing
        paging_data.append(w.data(c.run_id, metrics=[("score", score, 1, 0)], params={"bucket": f"b{i % 4}"}))
    await w.apply(*paging_data)
    return Runs(exp, other, paging, ids, [c.run_id for c in batch])


async def _search(env: QueryEnv, body: dict) -> dict:
    status, out = await env.post("/runs/search", body)
    assert status == 200, out
    return out


async def _names(env: QueryEnv, runs: Runs, **body) -> list[str]:
    out = await _search(env, {"experiment_ids": [runs.exp], **body})
    return [r["info"]["run_name"] for r in out.get("runs", [])]


# --- runs/get ----------------------------------------------------------------------------------


async def test_get_run_matches_the_reference_server_shape(env: QueryEnv) -> None:
    """The seed workflow's last runs/get, from the reference transcript, with our ids."""
    w = env.writer
    exp = await w.experiment("e2e_bodies")
    created = w.run_created(exp, "luminous-perch-218", 1795693936553,
                            tags={"mlflow.source.name": "workflow.py", "mlflow.source.type": "LOCAL"})
    run_id = created.run_id
    await w.apply(created)
    await w.log(run_id, params={"x1": "1"})
    await w.log(run_id, params={"x2": "two"})
    await w.log(run_id, metrics=[("r2_score", 0.9956613756613757, 1795693936684, 0)])
    await w.apply(ev.RunOutputsLogged(run_id, models=[ev.ModelRef("m-389330be8d8240eaa6a64b69fab25c26", step=0)]))
    await w.log(run_id, metrics=[("r2_score", 0.9956613756613757, 1795693936684, 0,
                                  {"model_id": "m-389330be8d8240eaa6a64b69fab25c26"})])
    await w.apply(ev.RunUpdated(run_id, status="FINISHED", end_time=1795693941705))

    status, body = await env.get("/runs/get", run_uuid=run_id, run_id=run_id)
    assert status == 200
    assert body == {"run": {
        "info": {
            "run_uuid": run_id, "experiment_id": exp, "run_name": "luminous-perch-218", "user_id": "root",
            "status": "FINISHED", "start_time": 1795693936553, "end_time": 1795693941705,
            "artifact_uri": f"mlflow-artifacts:/{exp}/{run_id}/artifacts", "lifecycle_stage": "active",
            "run_id": run_id,
        },
        "data": {
            "metrics": [{"key": "r2_score", "value": 0.9956613756613757, "timestamp": 1795693936684, "step": 0}],
            "params": [{"key": "x1", "value": "1"}, {"key": "x2", "value": "two"}],
            "tags": [{"key": "mlflow.user", "value": "root"}, {"key": "mlflow.source.name", "value": "workflow.py"},
                     {"key": "mlflow.source.type", "value": "LOCAL"},
                     {"key": "mlflow.runName", "value": "luminous-perch-218"}],
        },
        "inputs": {},
        "outputs": {"model_outputs": [{"model_id": "m-389330be8d8240eaa6a64b69fab25c26", "step": 0}]},
    }}
    # runs/search renders the same run the same way
    assert (await _search(env, {"experiment_ids": [exp]}))["runs"] == [body["run"]]


async def test_get_run_by_run_id_alone_and_through_the_ajax_prefix(env: QueryEnv, runs: Runs) -> None:
    resp = await env.http.get("/ajax-api/2.0/mlflow/runs/get", params={"run_id": runs.ids["best"]})
    assert resp.status == 200
    body = await resp.json()
    assert body["run"]["info"]["run_name"] == "best"
    metrics = {m["key"]: m["value"] for m in body["run"]["data"]["metrics"]}
    assert metrics == {"acc": 0.5, "rmse": 0.1}
    assert {p["key"] for p in body["run"]["data"]["params"]} == {"lr", "opt", "a.b", "$where"}


async def test_get_run_renders_nan_and_clamped_infinity(env: QueryEnv, runs: Runs) -> None:
    _, nan_run = await env.get("/runs/get", run_id=runs.ids["nan"])
    _, inf_run = await env.get("/runs/get", run_id=runs.ids["inf"])
    assert {m["key"]: m["value"] for m in nan_run["run"]["data"]["metrics"]}["rmse"] == "NaN"
    assert {m["key"]: m["value"] for m in inf_run["run"]["data"]["metrics"]}["rmse"] == MAX_DOUBLE


async def test_get_deleted_run_still_answers(env: QueryEnv, runs: Runs) -> None:
    status, body = await env.get("/runs/get", run_id=runs.ids["deleted"])
    assert status == 200 and body["run"]["info"]["lifecycle_stage"] == "deleted"


async def test_get_missing_run_is_404(env: QueryEnv) -> None:
    assert await env.get("/runs/get", run_id="0123abc") == (
        404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Run with id=0123abc not found"})


async def test_get_run_without_id_is_400(env: QueryEnv) -> None:
    status, body = await env.get("/runs/get")
    assert status == 400
    assert body["message"] == ("Missing value for required parameter 'run_id'. See the API docs for more"
                               " information about request parameters.")


# --- runs/search: filters ------------------------------------------------------------------------


@pytest.mark.parametrize(("filter_string", "expected"), [
    ("", ["best", "mid", "nan", "none", "inf"]),
    ("metrics.rmse < 1", ["best", "mid"]),
    ("metrics.rmse >= 0.5", ["mid", "inf"]),
    ("metrics.rmse != 0.5", ["best", "nan", "inf"]),  # NaN != 0.5; a run without rmse is no match
    ("metrics.rmse = 0", []),  # the placeholder under a NaN never matches
    (f"metrics.rmse = {MAX_DOUBLE!r}", ["inf"]),
    ("metrics.acc = 0.5 and metrics.rmse > 0.2", ["mid", "inf"]),
    ("params.lr = '0.1'", ["mid", "nan"]),
    ("params.lr != '0.1'", ["best"]),
    ("params.opt LIKE 'adam%'", ["best", "inf"]),
    ("params.opt ILIKE 'adam'", ["best", "none"]),
    ("params.opt LIKE '_dam'", ["best", "none"]),
    ("params.opt LIKE 'A%'", ["none"]),  # LIKE is case-sensitive
    ("params.lr IS NULL", ["none", "inf"]),
    ("params.opt IS NOT NULL", ["best", "mid", "none", "inf"]),
    ("params.`a.b` = 'dotted'", ["best"]),
    ('params."$where" = \'dollar\'', ["best"]),
    ("""params.lr = '{"$gt": ""}'""", []),
    ("params.lr LIKE '.*'", []),  # the pattern is LIKE, not a regex
    ("tags.team = 'ml'", ["best", "none"]),
    ("tags.team != 'ml'", ["mid"]),
    ("tags.`mlflow.runName` LIKE 'n%'", ["nan", "none"]),
    ("attributes.status = 'FINISHED'", ["best"]),
    ("attributes.status != 'RUNNING'", ["best", "mid"]),
    ("attributes.user_id = 'bob'", ["mid", "nan"]),
    ("run_name = 'mid'", ["mid"]),
    ("`Run name` ILIKE 'N%'", ["nan", "none"]),
    ("attributes.start_time > 2000", ["best", "mid", "nan"]),
    ("created <= 2000", ["none", "inf"]),
    ("attributes.end_time < 8500", ["mid"]),
    ("attributes.end_time != 9000", ["mid"]),  # runs without end_time do not compare
    ("attributes.artifact_uri LIKE 'mlflow-artifacts:/%'", ["best", "mid", "nan", "none", "inf"]),
])
async def test_search_filters(env: QueryEnv, runs: Runs, filter_string: str, expected: list[str]) -> None:
    assert await _names(env, runs, filter=filter_string) == expected


async def test_search_by_run_id_in_list(env: QueryEnv, runs: Runs) -> None:
    ids = runs.ids
    assert await _names(env, runs, filter=f"attributes.run_id IN ('{ids['mid']}', '{ids['inf']}', 'nope')") == [
        "mid", "inf"]
    assert await _names(env, runs, filter=f"run_id NOT IN ('{ids['mid']}', '{ids['best']}')") == ["nan", "none", "inf"]
    assert await _names(env, runs, filter=f"attributes.run_id = '{ids['nan']}'") == ["nan"]


async def test_search_view_types(env: QueryEnv, runs: Runs) -> None:
    assert await _names(env, runs, run_view_type="DELETED_ONLY") == ["deleted"]
    assert await _names(env, runs, run_view_type="ALL") == ["deleted", "best", "mid", "nan", "none", "inf"]
    assert await _names(env, runs, run_view_type=3, filter="metrics.rmse = 0") == ["deleted"]


async def test_search_several_experiments(env: QueryEnv, runs: Runs) -> None:
    out = await _search(env, {"experiment_ids": [runs.exp, runs.other_exp], "filter": "created < 1500"})
    assert [r["info"]["run_name"] for r in out["runs"]] == ["inf", "elsewhere"]
    assert await _search(env, {"experiment_ids": []}) == {}
    assert await _search(env, {"experiment_ids": ["424242"]}) == {}


# --- runs/search: order ------------------------------------------------------------------------


@pytest.mark.parametrize(("order_by", "expected"), [
    ([], ["best", "mid", "nan", "none", "inf"]),
    (["metrics.rmse DESC"], ["inf", "mid", "best", "nan", "none"]),  # NaN, then missing, last
    (["metrics.rmse ASC"], ["best", "mid", "inf", "nan", "none"]),
    (["metrics.rmse"], ["best", "mid", "inf", "nan", "none"]),
    (["params.lr DESC"], ["mid", "nan", "best", "none", "inf"]),  # missing params last, ties by start_time
    (["params.lr ASC", "attributes.start_time ASC"], ["best", "nan", "mid", "inf", "none"]),
    (["tags.team"], ["best", "none", "mid", "nan", "inf"]),
    (["attributes.end_time ASC"], ["mid", "best", "nan", "none", "inf"]),  # unset end_time last
    (["attributes.end_time DESC"], ["best", "mid", "nan", "none", "inf"]),
    (["attributes.start_time ASC"], ["inf", "none", "nan", "mid", "best"]),
    (["created DESC"], ["best", "mid", "nan", "none", "inf"]),
    (["attributes.user_id DESC", "metrics.rmse DESC"], ["inf", "none", "mid", "nan", "best"]),
    (["params.`a.b` DESC"], ["best", "mid", "nan", "none", "inf"]),
])
async def test_search_order(env: QueryEnv, runs: Runs, order_by: list[str], expected: list[str]) -> None:
    assert await _names(env, runs, order_by=order_by) == expected


async def test_search_order_by_run_id(env: QueryEnv, runs: Runs) -> None:
    names = await _names(env, runs, order_by=["attributes.run_id DESC"])
    by_id = sorted(((runs.ids[n], n) for n in ("best", "mid", "nan", "none", "inf")), reverse=True)
    assert names == [n for _, n in by_id]


# --- runs/search: paging -----------------------------------------------------------------------


async def _all_pages(env: QueryEnv, body: dict, page_size: int) -> tuple[list[str], int]:
    seen: list[str] = []
    pages = 0
    token = None
    while True:
        out = await _search(env, {**body, "max_results": page_size, **({"page_token": token} if token else {})})
        pages += 1
        seen += [r["info"]["run_id"] for r in out.get("runs", [])]
        token = out.get("next_page_token")
        if not token:
            return seen, pages


@pytest.mark.parametrize("order_by", [
    [], ["metrics.score DESC"], ["metrics.score ASC", "params.bucket DESC"], ["params.bucket"],
    ["attributes.start_time ASC"], ["tags.`mlflow.runName` DESC"],
])
async def test_paging_returns_every_run_exactly_once_in_order(env: QueryEnv, runs: Runs, order_by: list[str]) -> None:
    body = {"experiment_ids": [runs.paging_exp], "order_by": order_by}
    whole, _ = await _all_pages(env, body, 1000)
    paged, pages = await _all_pages(env, body, 50)
    assert pages == 3
    assert len(paged) == 120 and set(paged) == set(runs.paging_ids)
    assert paged == whole


async def test_metric_order_across_pages_puts_nan_then_missing_last(env: QueryEnv, runs: Runs) -> None:
    body = {"experiment_ids": [runs.paging_exp], "order_by": ["metrics.score DESC"]}
    paged, _ = await _all_pages(env, body, 50)
    index = {rid: i for i, rid in enumerate(runs.paging_ids)}
    kinds = ["missing" if index[r] % 10 == 0 else "nan" if index[r] % 10 == 1 else "value" for r in paged]
    assert kinds == ["value"] * 96 + ["nan"] * 12 + ["missing"] * 12
    scores = [index[r] % 7 for r in paged[:96]]
    assert scores == sorted(scores, reverse=True)


async def test_page_token_of_another_search_is_rejected(env: QueryEnv, runs: Runs) -> None:
    first = await _search(env, {"experiment_ids": [runs.paging_exp], "max_results": 10})
    status, body = await env.post("/runs/search", {"experiment_ids": [runs.paging_exp], "max_results": 10,
                                                   "filter": "metrics.score > 1",
                                                   "page_token": first["next_page_token"]})
    assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE"


async def test_last_page_has_no_token(env: QueryEnv, runs: Runs) -> None:
    out = await _search(env, {"experiment_ids": [runs.exp], "max_results": 5})
    assert len(out["runs"]) == 5 and "next_page_token" not in out


# --- runs/search: bad requests -------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    {"filter": "metrics.rmse < 1 OR metrics.acc > 0"},
    {"filter": "params.lr = 0.1"},
    {"filter": "metrics.rmse < 'x'"},
    {"filter": "attributes.nope = 'x'"},
    {"filter": "params.lr = '0.1"},
    {"filter": "params.`a\u0000b` = 'x'"},
    {"order_by": ["metrics.rmse DOWN"]},
    {"order_by": ["metrics.rmse", "metrics.rmse DESC"]},
    {"order_by": "metrics.rmse"},
    {"page_token": "garbage!!"},
    {"page_token": "eyJ2IjogMX0="},
    {"max_results": 50001},
    {"max_results": 0},
    {"max_results": "many"},
    {"experiment_ids": "1"},
    {"experiment_ids": ["abc"]},
])
async def test_bad_search_is_400(env: QueryEnv, runs: Runs, body: dict) -> None:
    status, out = await env.post("/runs/search", {"experiment_ids": [runs.exp], **body})
    assert status == 400, out
    assert out["error_code"] == "INVALID_PARAMETER_VALUE" and out["message"]
