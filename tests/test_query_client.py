"""The stock MLflow client reading through the query tier.

The query app serves on the test's event loop; the client is synchronous, so each call runs in a
worker thread while the loop keeps serving.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException

from common import events as ev
from tests.query_support import QueryEnv

pytestmark = pytest.mark.integration

T = TypeVar("T")
LONG_HISTORY = 25_010  # the client pages get-history by 25,000: this takes two pages


@dataclass
class Data:
    exp: str
    exp_name: str
    runs: dict[str, str]


@pytest.fixture(scope="module")
def client(env: QueryEnv) -> MlflowClient:
    return MlflowClient(tracking_uri=env.url)


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


@pytest.fixture(scope="module")
async def data(env: QueryEnv) -> Data:
    w = env.writer
    exp = await w.experiment("client-reads", tags={"owner": "team-a"})
    runs = {}
    for i, (name, rmse) in enumerate([("good", 0.2), ("bad", 0.9), ("weird", math.nan), ("bare", None)]):
        created = w.run_created(exp, name, 1000 + i, tags={"kind": "test"})
        await w.apply(created)
        runs[name] = created.run_id
        metrics = [("rmse", rmse, 10, 0)] if rmse is not None else []
        await w.log(created.run_id, metrics=metrics, params={"lr": str(i / 10)})
    await w.apply(ev.RunUpdated(runs["good"], status="FINISHED", end_time=5000))
    history = [("loss", 1.0 / (s + 1), 100_000 + s, s) for s in range(LONG_HISTORY)]
    history[5] = ("loss", math.nan, 100_005, 5)
    for i in range(0, LONG_HISTORY, 1000):
        await w.log(runs["good"], metrics=history[i:i + 1000])
    return Data(exp, "client-reads", runs)


async def test_get_experiment_by_name_returns_none_when_missing(client: MlflowClient, data: Data) -> None:
    assert await call(client.get_experiment_by_name, "no-such-experiment") is None
    exp = await call(client.get_experiment_by_name, data.exp_name)
    assert exp.experiment_id == data.exp and exp.tags == {"owner": "team-a"}
    assert exp.lifecycle_stage == "active"


async def test_get_experiment_and_missing_one(client: MlflowClient, data: Data) -> None:
    assert (await call(client.get_experiment, data.exp)).name == data.exp_name
    with pytest.raises(MlflowException) as info:
        await call(client.get_experiment, "987654")
    assert info.value.error_code == "RESOURCE_DOES_NOT_EXIST"


async def test_search_experiments(client: MlflowClient, data: Data) -> None:
    found = await call(client.search_experiments, filter_string="tags.owner = 'team-a'")
    assert [e.name for e in found] == [data.exp_name]
    everything = await call(client.search_experiments, view_type=ViewType.ALL, order_by=["name ASC"])
    assert [e.name for e in everything] == ["Default", data.exp_name]


async def test_get_run(client: MlflowClient, data: Data) -> None:
    run = await call(client.get_run, data.runs["good"])
    assert run.info.status == "FINISHED" and run.info.end_time == 5000
    assert run.data.params == {"lr": "0.0"}
    assert run.data.tags["kind"] == "test" and run.data.tags["mlflow.runName"] == "good"
    assert run.data.metrics["rmse"] == 0.2
    assert run.data.metrics["loss"] == 1.0 / LONG_HISTORY  # latest = greatest (step, timestamp, value)
    weird = await call(client.get_run, data.runs["weird"])
    assert math.isnan(weird.data.metrics["rmse"])


async def test_search_runs_filters_orders_and_pages(client: MlflowClient, data: Data) -> None:
    runs = await call(client.search_runs, [data.exp], filter_string="metrics.rmse < 1 and params.lr != '0.3'",
                      order_by=["metrics.rmse DESC"])
    assert [r.info.run_name for r in runs] == ["bad", "good"]
    ordered = await call(client.search_runs, [data.exp], order_by=["metrics.rmse ASC"])
    assert [r.info.run_name for r in ordered] == ["good", "bad", "weird", "bare"]
    first = await call(client.search_runs, [data.exp], max_results=3)
    assert len(first) == 3 and first.token
    rest = await call(client.search_runs, [data.exp], max_results=3, page_token=first.token)
    assert [r.info.run_name for r in [*first, *rest]] == ["bare", "weird", "bad", "good"] and rest.token is None


async def test_search_runs_errors_surface_as_mlflow_exceptions(client: MlflowClient, data: Data) -> None:
    with pytest.raises(MlflowException) as info:
        await call(client.search_runs, [data.exp], filter_string="metrics.rmse < 1 OR params.lr = '0'")
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException, match="max_results"):
        await call(client.search_runs, [data.exp], max_results=50_001)


async def test_get_metric_history_pages_through_a_long_history(client: MlflowClient, data: Data) -> None:
    history = await call(client.get_metric_history, data.runs["good"], "loss")
    assert len(history) == LONG_HISTORY
    assert [m.step for m in history] == list(range(LONG_HISTORY))
    assert math.isnan(history[5].value) and history[6].value == 1.0 / 7
    assert await call(client.get_metric_history, data.runs["good"], "nope") == []
