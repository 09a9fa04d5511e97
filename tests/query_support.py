"""Test support for the query tier: production-shaped data and an in-process query server.

Data is written through the writer's own code path (`writer.plan.plan_batch` + `writer.store`)
from `common.events` envelopes, so documents have exactly the layout production stores. The query
app runs in-process on the test's event loop (aiohttp TestServer) against the real MongoDB wire
server, on a database of its own that is dropped afterwards.
"""

from __future__ import annotations

import itertools
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from common import documents
from common import events as ev
from common.artifacts import open_store
from common.mongo import ensure_default_experiment, ensure_indexes
from common.settings import load_settings
from query.app import QueryDeps, create_app
from writer.plan import plan_batch
from writer.store import apply_plan, load_state

API = "/api/2.0/mlflow"

MetricSpec = tuple  # (key, value, timestamp, step) or (key, value, timestamp, step, {extras})


class DataWriter:
    """Writes experiments, runs and run data the way the writer tier does."""

    def __init__(self, db: AsyncDatabase, bucket_size: int = 1000):
        self.db = db
        self.bucket_size = bucket_size
        self._ids = itertools.count(1)

    async def apply(self, *events: ev.Event) -> None:
        now = int(time.time() * 1000)
        envelopes = [
            ev.Envelope(id=uuid.uuid4().hex, partition_key=ev.partition_key(e),
                        published_at=now, event=e)
            for e in events
        ]
        state = await load_state(self.db, envelopes)
        plan = plan_batch(envelopes, state, self.bucket_size)
        rejected = {k: err.message for k, err in plan.outcomes.items() if err is not None}
        assert not rejected, rejected
        await apply_plan(self.db, plan)

    async def experiment(self, name: str, tags: Mapping[str, str] | None = None, creation_time: int | None = None) -> str:
        eid = str(next(self._ids))
        await self.apply(ev.ExperimentCreated(
            experiment_id=eid, name=name, artifact_location=documents.experiment_artifact_location(eid),
            creation_time=creation_time if creation_time is not None else int(time.time() * 1000),
            tags=[ev.Tag(k, v) for k, v in (tags or {}).items()],
        ))
        return eid

    def run_created(self, experiment_id: str, name: str, start_time: int, *, user_id: str = "root",
                    tags: Mapping[str, str] | None = None) -> ev.RunCreated:
        run_id = uuid.uuid4().hex
        all_tags = {"mlflow.user": user_id, **(tags or {}), "mlflow.runName": name}
        return ev.RunCreated(
            run_id=run_id, experiment_id=experiment_id, user_id=user_id, run_name=name, start_time=start_time,
            artifact_uri=documents.run_artifact_uri(documents.experiment_artifact_location(experiment_id), run_id),
            tags=[ev.Tag(k, v) for k, v in all_tags.items()],
        )

    async def run(self, experiment_id: str, name: str, start_time: int, **kwargs) -> str:
        created = self.run_created(experiment_id, name, start_time, **kwargs)
        await self.apply(created)
        return created.run_id

    @staticmethod
    def data(run_id: str, metrics: Iterable[MetricSpec] = (), params: Mapping[str, str] | None = None,
             tags: Mapping[str, str] | None = None) -> ev.RunDataLogged:
        out = []
        for m in metrics:
            extras = m[4] if len(m) > 4 else {}
            out.append(ev.Metric(m[0], float(m[1]), int(m[2]), int(m[3]), **extras))
        return ev.RunDataLogged(run_id=run_id, metrics=out,
                                params=[ev.Tag(k, v) for k, v in (params or {}).items()],
                                tags=[ev.Tag(k, v) for k, v in (tags or {}).items()])

    async def log(self, run_id: str, metrics: Iterable[MetricSpec] = (), params: Mapping[str, str] | None = None,
                  tags: Mapping[str, str] | None = None) -> None:
        await self.apply(self.data(run_id, metrics, params, tags))


@dataclass
class QueryEnv:
    db: AsyncDatabase
    http: TestClient
    writer: DataWriter

    @property
    def url(self) -> str:
        return str(self.http.make_url("")).rstrip("/")

    async def get(self, path: str, **params) -> tuple[int, dict]:
        resp = await self.http.get(API + path, params=params)
        return resp.status, await resp.json()

    async def post(self, path: str, body: dict) -> tuple[int, dict]:
        resp = await self.http.post(API + path, json=body)
        return resp.status, await resp.json()


@asynccontextmanager
async def query_env(mongodb_uri: str, bucket_size: int = 1000) -> AsyncIterator[QueryEnv]:
    client = AsyncMongoClient(mongodb_uri)
    db = client[f"q_{uuid.uuid4().hex[:8]}"]
    try:
        await ensure_indexes(db)
        await ensure_default_experiment(db)
        app = create_app(load_settings("query", env={}), QueryDeps(db, CollectorRegistry(), open_store(tempfile.mkdtemp(prefix="q-art-"))))
        http = TestClient(TestServer(app, host="127.0.0.1"))
        await http.start_server()
        try:
            yield QueryEnv(db, http, DataWriter(db, bucket_size))
        finally:
            await http.close()
    finally:
        await client.drop_database(db.name)
        await client.close()
