"""metrics/get-history and get-history-bulk-interval from history buckets.

The same points are also logged into MLflow's own SQL store (the reference server's backend), and
its answers are the expected ones: order, NaN placement and sampling must agree exactly.
"""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from mlflow.entities import Metric
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

from query.history import PageCollector, sample_points, time_order
from tests.query_support import QueryEnv, query_env
from tests.services import Services

pytestmark = pytest.mark.integration

MAX_DOUBLE = 1.7976931348623157e308
BUCKET_SIZE = 10  # small buckets: every history spans many of them


@dataclass
class History:
    run_id: str
    sampled_run_id: str
    ref_run_id: str
    ref_sampled_run_id: str
    ref: SqlAlchemyStore
    points: list[tuple]  # (key, value, timestamp, step) as logged


def _loss_points() -> list[tuple]:
    rng = random.Random(7)
    points = []
    for i in range(95):
        ts = rng.randrange(1_000, 1_060)  # timestamps collide, arrive out of order
        points.append(("loss", round(rng.uniform(-1, 1), 3), ts, rng.randrange(0, 30)))
    points += [("loss", math.nan, 1_010, 3), ("loss", 0.0, 1_010, 3), ("loss", math.inf, 1_020, 1),
               ("loss", -math.inf, 999, 0), ("loss", math.nan, 1_059, 29)]
    return points


def _to_json_value(value: float) -> Any:
    return "NaN" if math.isnan(value) else value


def _reference_history(ref: SqlAlchemyStore, run_id: str, key: str) -> list[tuple]:
    return [(m.key, _to_json_value(m.value), m.timestamp, m.step) for m in ref.get_metric_history(run_id, key)]


@pytest.fixture(scope="module")
async def env(services: Services) -> AsyncIterator[QueryEnv]:
    async with query_env(services.mongodb_uri, bucket_size=BUCKET_SIZE) as env:
        yield env


@pytest.fixture(scope="module")
async def history(env: QueryEnv, tmp_path_factory: pytest.TempPathFactory) -> History:
    tmp = tmp_path_factory.mktemp("mlflow-ref")
    ref = SqlAlchemyStore(f"sqlite:///{tmp}/ref.db", str(tmp / "artifacts"))
    ref_exp = ref.create_experiment("history")
    ref_run = ref.create_run(ref_exp, "u", 0, [], "loss-run").info.run_id
    ref_sampled = ref.create_run(ref_exp, "u", 0, [], "sampled").info.run_id

    w = env.writer
    exp = await w.experiment("history")
    run_id = await w.run(exp, "loss-run", 1)
    sampled = await w.run(exp, "sampled", 2)

    points = _loss_points()
    for i in range(0, len(points), 17):  # several batches: buckets roll over between writes
        chunk = points[i:i + 17]
        await w.log(run_id, metrics=chunk)
        ref.log_batch(ref_run, [Metric(*p) for p in chunk], [], [])
    steps = [("acc", s / 100, 5_000 + s, s) for s in range(0, 200, 2)] + [("acc", math.nan, 6_000, 201)]
    steps += [("acc", 0.5, 4_000, 7)]  # a second point on step 7, earlier timestamp
    await w.log(sampled, metrics=steps)
    ref.log_batch(ref_sampled, [Metric(*p) for p in steps], [], [])
    return History(run_id, sampled, ref_run, ref_sampled, ref, points)


def _tuples(body: dict) -> list[tuple]:
    return [(m["key"], m["value"], m["timestamp"], m["step"]) for m in body.get("metrics", [])]


async def test_full_history_matches_the_sql_store(env: QueryEnv, history: History) -> None:
    status, body = await env.get("/metrics/get-history", run_id=history.run_id, metric_key="loss")
    assert status == 200 and "next_page_token" not in body
    assert _tuples(body) == _reference_history(history.ref, history.ref_run_id, "loss")
    assert len(body["metrics"]) == 100


async def test_nan_and_infinity_render_like_the_reference(env: QueryEnv, history: History) -> None:
    _, body = await env.get("/metrics/get-history", run_id=history.run_id, metric_key="loss")
    values = [m["value"] for m in body["metrics"]]
    assert values.count("NaN") == 2
    assert MAX_DOUBLE in values and -MAX_DOUBLE in values
    assert body["metrics"][0] == {"key": "loss", "value": -MAX_DOUBLE, "timestamp": 999, "step": 0}


@pytest.mark.parametrize(("page_size", "pages"), [(50, 2), (60, 2), (25, 4), (7, 15), (100, 1), (1000, 1)])
async def test_paging_returns_every_point_once_in_order(env: QueryEnv, history: History, page_size: int,
                                                        pages: int) -> None:
    collected: list[tuple] = []
    token = None
    count = 0
    while True:
        params = {"run_id": history.run_id, "metric_key": "loss", "max_results": str(page_size)}
        if token:
            params["page_token"] = token
        status, body = await env.get("/metrics/get-history", **params)
        assert status == 200
        count += 1
        assert len(body["metrics"]) <= page_size
        collected += _tuples(body)
        token = body.get("next_page_token")
        if not token:
            break
    assert count == pages
    assert collected == _reference_history(history.ref, history.ref_run_id, "loss")


async def test_run_uuid_alias_and_ajax_prefix(env: QueryEnv, history: History) -> None:
    resp = await env.http.get("/ajax-api/2.0/mlflow/metrics/get-history",
                              params={"run_uuid": history.run_id, "metric_key": "loss", "max_results": "3"})
    body = await resp.json()
    assert resp.status == 200 and len(body["metrics"]) == 3 and body["next_page_token"]


async def test_point_extras_render_as_fields(env: QueryEnv) -> None:
    w = env.writer
    exp = await w.experiment("extras")
    run_id = await w.run(exp, "r", 1)
    await w.log(run_id, metrics=[("ds", 0.5, 10, 0, {"model_id": "m-1", "dataset_name": "train", "dataset_digest": "abc"}),
                                 ("ds", 0.7, 11, 1)])
    _, body = await env.get("/metrics/get-history", run_id=run_id, metric_key="ds")
    assert body == {"metrics": [
        {"key": "ds", "value": 0.5, "timestamp": 10, "step": 0, "dataset_name": "train", "dataset_digest": "abc",
         "model_id": "m-1"},
        {"key": "ds", "value": 0.7, "timestamp": 11, "step": 1},
    ]}


async def test_keys_with_dots_and_dollars(env: QueryEnv) -> None:
    w = env.writer
    exp = await w.experiment("odd-keys")
    run_id = await w.run(exp, "r", 1)
    await w.log(run_id, metrics=[("a.b", 1.0, 1, 0), ("$x", 2.0, 1, 0)])
    assert _tuples((await env.get("/metrics/get-history", run_id=run_id, metric_key="a.b"))[1]) == [("a.b", 1.0, 1, 0)]
    assert _tuples((await env.get("/metrics/get-history", run_id=run_id, metric_key="$x"))[1]) == [("$x", 2.0, 1, 0)]


async def test_unknown_metric_or_run_is_an_empty_history(env: QueryEnv, history: History) -> None:
    # The SQL store answers 200 with no metrics here (it does not check that the run exists).
    assert await env.get("/metrics/get-history", run_id=history.run_id, metric_key="nope") == (200, {})
    assert await env.get("/metrics/get-history", run_id="no-such-run", metric_key="loss") == (200, {})
    assert history.ref.get_metric_history("no-such-run", "loss") == []


@pytest.mark.parametrize(("params", "fragment"), [
    ({"metric_key": "loss"}, "Missing value for required parameter 'run_id'"),
    ({"run_id": "r"}, "Missing value for required parameter 'metric_key'"),
    ({"run_id": "r", "metric_key": "loss", "max_results": "0"}, "It must be a positive integer"),
    ({"run_id": "r", "metric_key": "loss", "max_results": "lots"}, "Invalid value \"lots\" for parameter 'max_results'"),
    ({"run_id": "r", "metric_key": "loss", "page_token": "###"}, "Invalid page token"),
])
async def test_bad_history_requests_are_400(env: QueryEnv, params: dict, fragment: str) -> None:
    status, body = await env.get("/metrics/get-history", **params)
    assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE" and fragment in body["message"], body


async def test_page_token_is_bound_to_its_run_and_key(env: QueryEnv, history: History) -> None:
    _, first = await env.get("/metrics/get-history", run_id=history.run_id, metric_key="loss", max_results="5")
    status, body = await env.get("/metrics/get-history", run_id=history.sampled_run_id, metric_key="loss",
                                 max_results="5", page_token=first["next_page_token"])
    assert status == 400 and "different search" in body["message"]


# --- bulk interval -------------------------------------------------------------------------------


def _reference_bulk(history: History, run_ids: list[str], max_results: int, start: int | None = None,
                    end: int | None = None) -> list[tuple]:
    ours_to_ref = {history.run_id: history.ref_run_id, history.sampled_run_id: history.ref_sampled_run_id}
    ref_to_ours = {v: k for k, v in ours_to_ref.items()}
    out = []
    key = "acc"
    for m in history.ref.get_metric_history_bulk_interval(
            [ours_to_ref[r] for r in run_ids], key, max_results, start, end):
        out.append((m.key, _to_json_value(m.value), m.timestamp, m.step, ref_to_ours[m.run_id]))
    return out


async def _bulk(env: QueryEnv, **params) -> tuple[int, dict]:
    return await env.get("/metrics/get-history-bulk-interval", **params)


@pytest.mark.parametrize(("max_results", "window"), [
    (10, None), (1, None), (2, None), (3, None), (101, None), (102, None), (2500, None), (7, (10, 60)), (50, (0, 7)),
])
async def test_bulk_interval_samples_like_the_sql_store(env: QueryEnv, history: History, max_results: int,
                                                        window: tuple[int, int] | None) -> None:
    params: dict[str, Any] = {"run_ids": history.sampled_run_id, "metric_key": "acc", "max_results": str(max_results)}
    start = end = None
    if window:
        start, end = window
        params.update(start_step=str(start), end_step=str(end))
    status, body = await _bulk(env, **params)
    assert status == 200
    got = [(m["key"], m["value"], m["timestamp"], m["step"], m["run_id"]) for m in body.get("metrics", [])]
    assert got == _reference_bulk(history, [history.sampled_run_id], max_results, start, end)


async def test_bulk_interval_keeps_request_order_of_runs(env: QueryEnv, history: History) -> None:
    resp = await env.http.get("/api/2.0/mlflow/metrics/get-history-bulk-interval", params=[
        ("run_ids", history.sampled_run_id), ("run_ids", "no-such-run"), ("run_ids", history.run_id),
        ("metric_key", "acc"), ("max_results", "5")])
    body = await resp.json()
    assert resp.status == 200
    assert {m["run_id"] for m in body["metrics"]} == {history.sampled_run_id}  # the loss run has no "acc"
    got = [(m["key"], m["value"], m["timestamp"], m["step"], m["run_id"]) for m in body["metrics"]]
    assert got == _reference_bulk(history, [history.sampled_run_id], 5)
    assert got[0][3] == 0 and got[-1][3] == 201  # first and last points are kept


@pytest.mark.parametrize(("params", "fragment"), [
    ({"metric_key": "acc"}, "Missing value for required parameter 'run_ids'"),
    ({"run_ids": "r"}, "Missing value for required parameter 'metric_key'"),
    ({"run_ids": "r", "metric_key": "acc", "start_step": "1"}, "both must be specified"),
    ({"run_ids": "r", "metric_key": "acc", "start_step": "5", "end_step": "1"}, "end_step must be greater"),
    ({"run_ids": "r", "metric_key": "acc", "max_results": "0"}, "max_results must be between 1 and 2500"),
    ({"run_ids": "r", "metric_key": "acc", "max_results": "2501"}, "max_results must be between 1 and 2500"),
])
async def test_bad_bulk_interval_requests_are_400(env: QueryEnv, params: dict, fragment: str) -> None:
    status, body = await _bulk(env, **params)
    assert status == 400 and fragment in body["message"], body


async def test_bulk_interval_accepts_at_most_100_runs(env: QueryEnv) -> None:
    resp = await env.http.get("/api/2.0/mlflow/metrics/get-history-bulk-interval",
                              params=[("run_ids", f"r{i}") for i in range(101)] + [("metric_key", "acc")])
    body = await resp.json()
    assert resp.status == 400
    assert body["message"].startswith("GetMetricHistoryBulkInterval request must specify at most 100 run_ids."
                                      " Received 101 run_ids.")


# --- the page collector alone -----------------------------------------------------------------------


def test_page_collector_stops_reading_once_no_bucket_can_contribute() -> None:
    buckets = [[[s, t, float(t)] for s, t in zip(range(i * 10, i * 10 + 10), range(i * 10, i * 10 + 10))]
               for i in range(20)]
    collector = PageCollector(None, 25)
    read = 0
    for bucket in buckets:
        if not collector.wants(bucket[0][1]):
            break
        collector.add(bucket)
        read += 1
    page, more = collector.page()
    assert more and [p[1] for p in page] == list(range(25))
    assert read < 10  # not the whole history


def test_sample_points_mirrors_ntile() -> None:
    points = [[s, 0, 0.0] for s in range(10)]
    assert [p[0] for p in sample_points(points, 3)] == [0, 4, 9]  # groups 4/3/3, last point kept
    assert [p[0] for p in sample_points(points, 1)] == [9]
    assert [p[0] for p in sample_points(points, 10)] == list(range(10))
    assert time_order([3, 5, None]) == (5, 3, 0.0, True)


@pytest.mark.parametrize("page_size", [7, 10, 23, 1000])
async def test_an_ordered_history_is_read_bucket_by_bucket_and_pages_like_the_sql_store(
        env: QueryEnv, history: History, page_size: int) -> None:
    """Timestamps never go back across buckets (ties across bucket boundaries included, where the
    step and value decide): the writer marks the history ordered and reads go by bucket id."""
    w = env.writer
    exp = await w.experiment(f"ordered-{page_size}")
    run_id = await w.run(exp, "ordered", 3)
    ref_run = history.ref.create_run(history.ref.get_experiment_by_name("history").experiment_id, "u", 0, [],
                                     f"ordered-{page_size}").info.run_id
    rng = random.Random(page_size)
    points = []
    for i in range(64):  # 13 timestamps per 5 ms step, so equal timestamps span bucket boundaries
        ts = 10_000 + (i // 13) * 5
        points.append(("val", round(rng.uniform(-1, 1), 2), ts, rng.randrange(0, 5)))
    for i in range(0, len(points), 9):
        await w.log(run_id, metrics=points[i:i + 9])
        history.ref.log_batch(ref_run, [Metric(*p) for p in points[i:i + 9]], [], [])
    run = await env.db["runs"].find_one({"_id": run_id})
    assert run["mb"]["val"]["o"] is True and run["mb"]["val"]["seq"] >= 6
    collected: list[tuple] = []
    token, pages = None, 0
    while True:
        params = {"run_id": run_id, "metric_key": "val", "max_results": str(page_size)}
        if token:
            params["page_token"] = token
        status, body = await env.get("/metrics/get-history", **params)
        assert status == 200 and len(body.get("metrics", [])) <= page_size
        collected += _tuples(body)
        pages += 1
        token = body.get("next_page_token")
        if not token:
            break
    assert pages == -(-64 // page_size)
    assert collected == _reference_history(history.ref, ref_run, "val")
