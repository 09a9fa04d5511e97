"""experiments/get, get-by-name and search over HTTP against the real MongoDB wire server."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from common import events as ev
from tests.query_support import QueryEnv

pytestmark = pytest.mark.integration


@dataclass
class Experiments:
    ids: dict[str, str]  # name -> id


@pytest.fixture(scope="module")
async def exps(env: QueryEnv) -> Experiments:
    w = env.writer
    ids = {}
    # creation times out of id order; two share a creation time
    for name, created, tags in [
        ("alpha", 3000, {"team": "ml", "stage": "dev"}),
        ("beta", 1000, {"team": "research"}),
        ("Gamma", 2000, {"a.b": "dotted"}),
        ("delta", 2000, {}),
        ("gone", 4000, {"team": "ml"}),
    ]:
        ids[name] = await w.experiment(name, tags=tags, creation_time=created)
    await w.apply(ev.ExperimentDeleted(ids["gone"], time=5000))
    # ids 1..9 then 10, 11: numeric order differs from string order
    for i in range(6):
        ids[f"bulk{i}"] = await w.experiment(f"bulk{i}", creation_time=100 + i)
    return Experiments(ids)


async def _search(env: QueryEnv, method: str = "POST", **params) -> dict:
    if method == "POST":
        status, out = await env.post("/experiments/search", params)
    else:
        status, out = await env.get("/experiments/search", **params)
    assert status == 200, out
    return out


def _names(out: dict) -> list[str]:
    return [e["name"] for e in out.get("experiments", [])]


async def test_get_experiment(env: QueryEnv, exps: Experiments) -> None:
    eid = exps.ids["alpha"]
    status, body = await env.get("/experiments/get", experiment_id=eid)
    assert status == 200
    exp = body["experiment"]
    assert exp["experiment_id"] == eid and exp["name"] == "alpha"
    assert exp["artifact_location"] == f"mlflow-artifacts:/{eid}"
    assert exp["lifecycle_stage"] == "active" and exp["creation_time"] == 3000
    assert exp["tags"] == [{"key": "team", "value": "ml"}, {"key": "stage", "value": "dev"}]


async def test_get_default_and_deleted_experiments(env: QueryEnv, exps: Experiments) -> None:
    status, body = await env.get("/experiments/get", experiment_id="0")
    assert status == 200 and body["experiment"]["name"] == "Default" and "tags" not in body["experiment"]
    status, body = await env.get("/experiments/get", experiment_id=exps.ids["gone"])
    assert status == 200 and body["experiment"]["lifecycle_stage"] == "deleted"


async def test_get_experiment_errors(env: QueryEnv) -> None:
    assert await env.get("/experiments/get", experiment_id="999") == (
        404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "No Experiment with id=999 exists"})
    assert (await env.get("/experiments/get", experiment_id="0999"))[1]["message"] == "No Experiment with id=999 exists"
    assert await env.get("/experiments/get", experiment_id="abc") == (400, {
        "error_code": "INVALID_PARAMETER_VALUE",
        "message": "Invalid experiment ID 'abc'. Experiment ID must be a valid integer."})
    status, body = await env.get("/experiments/get")
    assert status == 400 and body["message"].startswith("Missing value for required parameter 'experiment_id'.")


async def test_get_by_name(env: QueryEnv, exps: Experiments) -> None:
    status, body = await env.get("/experiments/get-by-name", experiment_name="Gamma")
    assert status == 200 and body["experiment"]["experiment_id"] == exps.ids["Gamma"]
    assert body["experiment"]["tags"] == [{"key": "a.b", "value": "dotted"}]
    assert await env.get("/experiments/get-by-name", experiment_name="gamma") == (
        404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Could not find experiment with name 'gamma'"})


@pytest.mark.parametrize(("filter_string", "expected"), [
    ("name = 'alpha'", ["alpha"]),
    ("name != 'alpha' AND creation_time >= 1000 AND creation_time < 5000", ["Gamma", "delta", "beta"]),
    ("name LIKE '%a'", ["alpha", "Gamma", "delta", "beta"]),
    ("name LIKE 'g%'", []),
    ("name ILIKE 'g%'", ["Gamma"]),
    ("tags.team = 'ml'", ["alpha"]),
    ("tags.team != 'ml'", ["beta"]),
    ("tags.team LIKE '%'", ["alpha", "beta"]),
    ("tags.`a.b` = 'dotted'", ["Gamma"]),
    ("tags.team IS NULL AND creation_time > 1000 AND name != 'Default'", ["Gamma", "delta"]),
    ("tags.stage IS NOT NULL", ["alpha"]),
    ("creation_time > 1500 AND creation_time < 2500", ["Gamma", "delta"]),
    ("last_update_time = 1000", ["beta"]),
    ("experiment_id IN ('1', '2')", ["alpha", "beta"]),
])
async def test_search_filters(env: QueryEnv, exps: Experiments, filter_string: str, expected: list[str]) -> None:
    out = await _search(env, filter=filter_string, max_results=100)
    # default order: creation_time DESC, experiment_id ASC
    assert _names(out) == expected


async def test_search_default_order_and_view_types(env: QueryEnv, exps: Experiments) -> None:
    names = _names(await _search(env, max_results=100))
    # Default was created when the database was set up, i.e. last; Gamma and delta tie: id ASC
    assert names == ["Default", "alpha", "Gamma", "delta", "beta", "bulk5", "bulk4", "bulk3", "bulk2", "bulk1", "bulk0"]
    assert _names(await _search(env, view_type="DELETED_ONLY")) == ["gone"]
    assert "gone" in _names(await _search(env, "GET", view_type="ALL", max_results="100"))


async def test_search_order_by(env: QueryEnv, exps: Experiments) -> None:
    by_id = _names(await _search(env, order_by=["experiment_id DESC"], max_results=100))
    ids = [int(exps.ids[n]) for n in by_id if n != "Default"]
    assert ids == sorted(ids, reverse=True) and by_id[-1] == "Default"  # numeric, not string, order
    # binary string order, as in the SQL store
    assert _names(await _search(env, order_by=["name"], filter="name LIKE '%a%'"))[:4] == [
        "Default", "Gamma", "alpha", "beta"]
    # the SQL store breaks ties by experiment_id DESC when the order does not name it
    tied = _names(await _search(env, order_by=["creation_time ASC"], filter="creation_time = 2000"))
    assert tied == ["delta", "Gamma"]


async def test_search_paging_by_get(env: QueryEnv, exps: Experiments) -> None:
    seen: list[str] = []
    token = None
    while True:
        params = {"max_results": "3", "order_by": "name DESC", **({"page_token": token} if token else {})}
        out = await _search(env, "GET", **params)
        seen += _names(out)
        token = out.get("next_page_token")
        if not token:
            break
    assert seen == sorted([n for n in exps.ids if n != "gone"] + ["Default"], reverse=True)


@pytest.mark.parametrize("body", [
    {"filter": "attr.name = 'x'"},
    {"filter": "creation_time > 1.5"},
    {"filter": "name IN ('a')"},
    {"filter": "name = 'a' OR name = 'b'"},
    {"order_by": ["tags.team"]},
    {"order_by": ["nope"]},
    {"max_results": 0},
    {"max_results": 50001},
    {"page_token": "%%%"},
])
async def test_bad_search_is_400(env: QueryEnv, exps: Experiments, body: dict) -> None:
    status, out = await env.post("/experiments/search", body)
    assert status == 400 and out["error_code"] == "INVALID_PARAMETER_VALUE", out
