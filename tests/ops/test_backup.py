"""Backup, verify, restore and the DR drill against the real servers, with the stock client.

One source deployment (nginx, ingest, writer, query; artifacts on Azurite) is filled through the
stock `mlflow` client, then backed up while four threads keep logging metrics. The restored
copies are read back through a query tier of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, ViewType
from pymongo import MongoClient

from common import writer_pause
from common.keys import encode_key
from common.settings import load_settings
from genesis_flow import mongodump
from genesis_flow.backup import read_manifest, restore, verify
from tests.services import Services
from tests.stack import REPO, Stack, make_stack

pytestmark = pytest.mark.integration

BUCKET_SIZE = "200"  # small buckets: the long history spans many documents
LOADERS = 4


def genesis_flow(stack_env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "genesis_flow.cli", *args], cwd=REPO, env=stack_env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def restore_target(services: Services, tmp: Path, name: str) -> Stack:
    """A stack on a fresh database with a fresh artifact root (files) to restore into."""
    stack = make_stack(services, name)
    stack.env["GENESIS_FLOW_ARTIFACT_ROOT"] = (tmp / f"{stack.db_name}-artifacts").as_uri()
    return stack


@dataclass
class Seed:
    experiment_id: str
    deleted_experiment_id: str
    runs: list[str]
    deleted_run: str
    history_run: str
    artifact_files: dict[str, bytes]  # path relative to the run's artifact root -> content
    model: str


@dataclass
class Load:
    """Points four threads logged (committed acks) while the backup ran."""

    runs: list[str]
    acked: dict[str, list[tuple[int, float]]] = field(default_factory=lambda: defaultdict(list))  # (step, ack time)
    started: float = 0.0  # the moment the backup command was started
    finished: float = 0.0
    backup: Path = Path()
    output: str = ""


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def source(services: Services) -> Iterator[Stack]:
    stack = make_stack(services, "bk", GENESIS_FLOW_METRIC_BUCKET_SIZE=BUCKET_SIZE)
    try:
        for tier in ("writer", "ingest", "query"):
            stack.start(tier)
        stack.start_router()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def seed(source: Stack, tmp_path_factory: pytest.TempPathFactory) -> Seed:
    client = MlflowClient(tracking_uri=source.url("router"))
    exp = client.create_experiment(f"bk-{uuid.uuid4().hex[:8]}", tags={"team": "dr"})
    history_run = client.create_run(exp, run_name="long-history").info.run_id
    client.log_batch(history_run, params=[Param("lr", "0.01")])
    for start in range(0, 2500, 1000):
        client.log_batch(history_run, metrics=[Metric("loss", 1 / (i + 1), 1_700_000_000_000 + i, i)
                                               for i in range(start, min(start + 1000, 2500))])
    client.log_metric(history_run, "val.acc", math.nan, step=1)
    client.log_metric(history_run, "val.acc", math.inf, step=2)
    client.log_metric(history_run, "val.acc", 0.75, step=3)
    client.set_tag(history_run, "stage", "train")
    files = {"model/weights.bin": os.urandom(200_000), "a/b/c.txt": b"nested\n", "a/d.json": b'{"k": 1}'}
    local = tmp_path_factory.mktemp("seed-artifacts")
    for rel, data in files.items():
        (local / rel).parent.mkdir(parents=True, exist_ok=True)
        (local / rel).write_bytes(data)
    client.log_artifacts(history_run, str(local))
    other = client.create_run(exp, run_name="second").info.run_id
    client.log_param(other, "batch", "32")
    client.log_metric(other, "loss", 0.5, step=0)
    deleted_run = client.create_run(exp, run_name="deleted").info.run_id
    client.log_metric(deleted_run, "loss", 0.9)
    client.delete_run(deleted_run)
    gone = client.create_experiment(f"bk-gone-{uuid.uuid4().hex[:8]}")
    gone_run = client.create_run(gone).info.run_id
    client.log_metric(gone_run, "loss", 0.1)
    client.delete_experiment(gone)
    model = f"bk-model-{uuid.uuid4().hex[:6]}"
    client.create_registered_model(model)
    client.create_model_version(model, f"runs:/{history_run}/model", run_id=history_run)
    return Seed(exp, gone, [history_run, other, deleted_run, gone_run], deleted_run, history_run, files, model)


@pytest.fixture(scope="module")
def loaded_backup(source: Stack, seed: Seed, tmp_path_factory: pytest.TempPathFactory) -> Load:
    """`genesis-flow backup --out DIR --verify` while four threads log one metric per request."""
    client = MlflowClient(tracking_uri=source.url("router"))
    load = Load(runs=[client.create_run(seed.experiment_id, run_name=f"load-{i}").info.run_id for i in range(LOADERS)])
    stop = threading.Event()
    errors: list[BaseException] = []

    def log_points(run_id: str) -> None:
        own = MlflowClient(tracking_uri=source.url("router"))
        step = 0
        try:
            while not stop.is_set():
                own.log_metric(run_id, "load", float(step), timestamp=1_700_000_000_000 + step, step=step)
                load.acked[run_id].append((step, time.time()))
                step += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=log_points, args=(run_id,)) for run_id in load.runs]
    for t in threads:
        t.start()
    try:
        while min((len(load.acked[r]) for r in load.runs), default=0) < 20:
            assert not errors, errors
            time.sleep(0.05)
        load.backup = tmp_path_factory.mktemp("backups") / "full"
        load.started = time.time()
        done = genesis_flow(source.env, "backup", "--out", str(load.backup), "--verify")
        load.finished = time.time()
        load.output = done.stdout + done.stderr
        assert done.returncode == 0, load.output[-3000:]
        time.sleep(1.0)  # the writers resumed: points keep being committed
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not errors, errors
    return load


def _bson(backup: Path, collection: str) -> list[dict]:
    manifest = read_manifest(backup)
    return [doc for doc in mongodump.iter_documents(backup / manifest["database"]["dump"] / f"{collection}.bson")]


# --- backup under load ---------------------------------------------------------------------------


def test_backup_taken_during_writes_holds_every_point_acknowledged_before_it(
        source: Stack, loaded_backup: Load) -> None:
    load = loaded_backup
    manifest = read_manifest(load.backup)
    consistency = manifest["database"]["consistency"]
    assert consistency["mode"] == "writers-paused" and len(consistency["writers"]) == 1, consistency
    stored: dict[str, set[int]] = defaultdict(set)
    for bucket in _bson(load.backup, "metrics"):
        if bucket["run_id"] in load.runs:
            stored[bucket["run_id"]].update(p[0] for p in bucket["p"])
    for run_id in load.runs:
        before = {step for step, acked_at in load.acked[run_id] if acked_at < load.started}
        assert before and before <= stored[run_id], (run_id, sorted(before - stored[run_id])[:10])
        assert any(acked_at > load.finished for _, acked_at in load.acked[run_id]), "writes resumed after the backup"


def test_backup_is_one_instant_between_batches(loaded_backup: Load) -> None:
    """No half-applied batch: each run's latest metric and bucket bookkeeping match its buckets."""
    buckets = defaultdict(dict)
    for bucket in _bson(loaded_backup.backup, "metrics"):
        buckets[(bucket["run_id"], bucket["key"])][bucket["seq"]] = bucket["p"]
    runs = {doc["_id"]: doc for doc in _bson(loaded_backup.backup, "runs")}
    enc = encode_key("load")
    for run_id in loaded_backup.runs:
        series = buckets[(run_id, enc)]
        last_seq = max(series)
        assert runs[run_id]["mb"][enc]["seq"] == last_seq
        assert runs[run_id]["mb"][enc]["n"] == len(series[last_seq])
        assert runs[run_id]["metrics"][enc]["s"] == max(p[0] for points in series.values() for p in points)


def test_nothing_acknowledged_is_lost_to_the_pause(source: Stack, loaded_backup: Load) -> None:
    client = MlflowClient(tracking_uri=source.url("router"))
    for run_id in loaded_backup.runs:
        history = {m.step for m in client.get_metric_history(run_id, "load")}
        assert {step for step, _ in loaded_backup.acked[run_id]} <= history


# --- the writer pause, piece by piece --------------------------------------------------------------


@pytest.fixture
async def pause_db(services: Services):
    from pymongo import AsyncMongoClient

    client = AsyncMongoClient(services.mongodb_uri)
    name = f"pause_{uuid.uuid4().hex[:12]}"
    try:
        yield client[name]
    finally:
        await client.drop_database(name)
        await client.close()


async def test_the_pause_waits_for_the_batch_in_flight(pause_db) -> None:
    batch = asyncio.Lock()
    await batch.acquire()  # a writer in the middle of a batch
    async with writer_pause.watching(pause_db, "w1", batch, poll_s=0.05):
        claiming = asyncio.create_task(_hold(pause_db, "backup-1"))
        await asyncio.sleep(1.0)
        assert not claiming.done()  # the backup waits for the batch
        batch.release()
        writers = await asyncio.wait_for(claiming, 10)
    assert writers == ["w1"]


async def _hold(db, holder: str, **kwargs) -> list[str]:
    async with writer_pause.pause_writers(db, holder, **kwargs) as pause:
        await pause.confirm()
        return pause.writers


async def test_one_pause_at_a_time(pause_db) -> None:
    async with writer_pause.pause_writers(pause_db, "backup-1"):
        with pytest.raises(writer_pause.PauseFailed, match="already paused by 'backup-1'"):
            await _hold(pause_db, "backup-2")
    assert await _hold(pause_db, "backup-2") == []  # lifted on exit


async def test_a_writer_that_shows_up_during_the_dump_fails_the_backup(pause_db) -> None:
    async with writer_pause.pause_writers(pause_db, "backup-1") as pause:
        late = asyncio.Lock()
        async with writer_pause.watching(pause_db, "late", late, poll_s=0.05):  # e.g. was cut off from MongoDB
            await asyncio.sleep(0.5)
            with pytest.raises(writer_pause.PauseFailed, match="late was running"):
                await pause.confirm()


async def test_an_abandoned_pause_ends_with_its_lease(pause_db) -> None:
    pause = writer_pause.WriterPause(pause_db, "tok", "crashed-backup", lease_s=1.0)
    await pause._claim()  # and never renewed: the holder died
    batch = asyncio.Lock()
    async with writer_pause.watching(pause_db, "w1", batch, poll_s=0.05):
        await asyncio.sleep(0.3)
        assert batch.locked()  # paused
        await asyncio.sleep(1.5)
        assert not batch.locked()  # resumed by itself


# --- verify --------------------------------------------------------------------------------------


async def test_verify_passes_and_fails_on_a_changed_byte(source: Stack, loaded_backup: Load, tmp_path: Path) -> None:
    settings = load_settings("backup", env=source.env)
    report = await verify(settings, loaded_backup.backup)
    assert report["ok"], report["differences"]
    assert report["checked"]["artifact_files"] == 3

    artifact = tmp_path / "artifact-flipped"
    shutil.copytree(loaded_backup.backup, artifact)
    weights = next(artifact.glob("artifacts/**/weights.bin"))
    data = bytearray(weights.read_bytes())
    data[1000] ^= 0xFF
    weights.write_bytes(bytes(data))
    report = await verify(settings, artifact)
    assert not report["ok"] and any("weights.bin" in d for d in report["differences"]), report
    cli = genesis_flow(source.env, "backup", "--verify", str(artifact))
    assert cli.returncode == 1 and "weights.bin" in cli.stdout

    dump = tmp_path / "bson-truncated"
    shutil.copytree(loaded_backup.backup, dump)
    runs = next(dump.glob("mongodb/*/runs.bson"))
    runs.write_bytes(runs.read_bytes()[:-7])
    report = await verify(settings, dump)
    assert not report["ok"] and any("runs.bson" in d for d in report["differences"]), report


# --- restore -------------------------------------------------------------------------------------


def _experiments(client: MlflowClient) -> list[tuple[str, str]]:
    return sorted((e.name, e.lifecycle_stage) for e in client.search_experiments(view_type=ViewType.ALL))


def _history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, int, str]]:
    return [(m.step, m.timestamp, repr(m.value)) for m in client.get_metric_history(run_id, key)]


def _listing(client: MlflowClient, run_id: str, path: str) -> list[tuple[str, int | None]]:
    return sorted((f.path, f.file_size) for f in client.list_artifacts(run_id, path))


def _runs_by_id(client: MlflowClient, experiment_ids: list[str]) -> dict[str, object]:
    return {r.info.run_id: r for r in client.search_runs(experiment_ids, run_view_type=ViewType.ALL, max_results=1000)}


def test_restore_into_a_fresh_database_serves_the_same_data(
        services: Services, source: Stack, seed: Seed, loaded_backup: Load, tmp_path: Path) -> None:
    target = restore_target(services, tmp_path, "bkr")
    env = target.env
    try:
        done = genesis_flow(env, "restore", str(loaded_backup.backup))
        assert done.returncode == 0, done.stderr[-3000:]
        again = genesis_flow(env, "restore", str(loaded_backup.backup))
        assert again.returncode == 1 and "--drop" in again.stderr
        dropped = genesis_flow(env, "restore", str(loaded_backup.backup), "--drop")
        assert dropped.returncode == 0, dropped.stderr[-3000:]
        assert json.loads(dropped.stdout)["artifact_files"] == 3

        target.start("query")
        old = MlflowClient(tracking_uri=source.url("router"))
        new = MlflowClient(tracking_uri=target.url("query"))
        assert _experiments(new) == _experiments(old)
        exp_ids = [seed.experiment_id, seed.deleted_experiment_id]
        old_runs, new_runs = _runs_by_id(old, exp_ids), _runs_by_id(new, exp_ids)
        for run_id in seed.runs:
            a, b = old_runs[run_id], new_runs[run_id]
            assert (b.info.lifecycle_stage, b.data.params, b.data.tags) == (a.info.lifecycle_stage, a.data.params,
                                                                             a.data.tags)
            assert b.data.metrics.keys() == a.data.metrics.keys()
            for key in a.data.metrics:
                assert _history(new, run_id, key) == _history(old, run_id, key)
        assert len(new.get_metric_history(seed.history_run, "loss")) == 2500
        for run_id in loaded_backup.runs:
            before = {s for s, t in loaded_backup.acked[run_id] if t < loaded_backup.started}
            assert before <= {m.step for m in new.get_metric_history(run_id, "load")}
        assert _listing(new, seed.history_run, "a") == _listing(old, seed.history_run, "a") == [
            ("a/b", None), ("a/d.json", 8)]
        for rel, data in seed.artifact_files.items():
            assert Path(new.download_artifacts(seed.history_run, rel, str(tmp_path / "dl"))).read_bytes() == data
        version = new.get_model_version(seed.model, "1")
        assert (version.run_id, version.source) == (seed.history_run, f"runs:/{seed.history_run}/model")
        indexes = MongoClient(services.mongodb_uri)[target.db_name]["runs"].index_information()
        assert {"exp_stage_start", "params_wildcard"} <= indexes.keys()
    finally:
        target.stop()


# --- incremental ---------------------------------------------------------------------------------


async def test_incremental_backup_copies_only_changed_artifacts(
        services: Services, source: Stack, seed: Seed, loaded_backup: Load, tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri=source.url("router"))
    changed, added = tmp_path / "changed", tmp_path / "added"
    (changed / "a").mkdir(parents=True)
    (changed / "a" / "d.json").write_bytes(b'{"k": 2}')
    added.mkdir()
    (added / "new.txt").write_bytes(b"new file")
    client.log_artifact(seed.history_run, str(changed / "a" / "d.json"), "a")
    client.log_artifact(seed.history_run, str(added / "new.txt"), "extra")
    settings = load_settings("backup", env=source.env)
    prefix = f"{seed.experiment_id}/{seed.history_run}/artifacts/"
    records = MongoClient(services.mongodb_uri)[source.db_name]["artifacts"]
    new_sha = {hashlib.sha256(b'{"k": 2}').hexdigest(), hashlib.sha256(b"new file").hexdigest()}
    assert {d["sha256"] for d in records.find({"_id": {"$in": [prefix + "a/d.json", prefix + "extra/new.txt"]}})} \
        == new_sha  # recorded by the writer before the uploads were acknowledged (committed acks)

    increment = loaded_backup.backup.parent / f"incr-{uuid.uuid4().hex[:6]}"
    done = genesis_flow(source.env, "backup", "--out", str(increment), "--incremental-from",
                        str(loaded_backup.backup), "--verify")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    manifest = read_manifest(increment)
    copied = sorted(f["path"].removeprefix(prefix) for f in manifest["artifacts"]["files"] if "base" not in f)
    referenced = sorted(f["path"].removeprefix(prefix) for f in manifest["artifacts"]["files"] if "base" in f)
    assert copied == ["a/d.json", "extra/new.txt"]
    assert referenced == ["a/b/c.txt", "model/weights.bin"]
    assert manifest["totals"]["copied_bytes"] == 16 and manifest["artifacts"]["incremental_from"] == "../full"
    on_disk = sorted(str(p.relative_to(increment / "artifacts")) for p in (increment / "artifacts").rglob("*")
                     if p.is_file())
    assert on_disk == [prefix + "a/d.json", prefix + "extra/new.txt"]

    target = restore_target(services, tmp_path, "bki")
    root = tmp_path / f"{target.db_name}-artifacts"
    try:
        report = await restore(load_settings("restore", env=target.env), increment)
        assert report["artifact_files"] == 4
        assert (root / prefix / "model/weights.bin").read_bytes() == seed.artifact_files["model/weights.bin"]
        assert (root / prefix / "a/d.json").read_bytes() == b'{"k": 2}'
    finally:
        await asyncio.to_thread(target.stop)  # it runs its own event loop
    assert (await verify(settings, increment))["ok"]


# --- artifacts to another store ------------------------------------------------------------------


async def test_artifacts_can_go_to_another_store(services: Services, source: Stack, seed: Seed,
                                                  tmp_path: Path) -> None:
    container = f"bk-{uuid.uuid4().hex[:12]}"
    out = tmp_path / "to-azure"
    target = restore_target(services, tmp_path, "bka")
    try:
        done = genesis_flow(source.env, "backup", "--out", str(out), "--artifacts-to", f"azure://{container}/backup",
                            "--verify")
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        manifest = read_manifest(out)
        assert manifest["artifacts"]["location"] == f"azure://{container}/backup" and not (out / "artifacts").exists()
        again = genesis_flow(source.env, "backup", "--out", str(tmp_path / "again"), "--artifacts-to",
                             f"azure://{container}/backup")
        assert again.returncode == 1 and "already holds files" in again.stderr
        report = await restore(load_settings("restore", env=target.env), out)
        root = tmp_path / f"{target.db_name}-artifacts"
        prefix = f"{seed.experiment_id}/{seed.history_run}/artifacts/"
        assert report["artifact_files"] >= 3
        assert (root / prefix / "model/weights.bin").read_bytes() == seed.artifact_files["model/weights.bin"]
    finally:
        await asyncio.to_thread(target.stop)
        from azure.core.exceptions import ResourceNotFoundError
        from azure.storage.blob.aio import BlobServiceClient

        async with BlobServiceClient.from_connection_string(services.azure_connection_string) as blobs:
            with contextlib.suppress(ResourceNotFoundError):
                await blobs.delete_container(container)


# --- the DR drill --------------------------------------------------------------------------------


def test_dr_drill_end_to_end(services: Services, tmp_path: Path) -> None:
    stack = make_stack(services, "drill")
    try:
        for tier in ("writer", "ingest", "query"):
            stack.start(tier)
        stack.start_router()
        client = MlflowClient(tracking_uri=stack.url("router"))
        exp = client.create_experiment("drill")
        run_id = client.create_run(exp).info.run_id
        client.log_batch(run_id, metrics=[Metric("loss", 1 / (i + 1), 1_700_000_000_000 + i, i) for i in range(300)],
                         params=[Param("lr", "0.1")])
        (tmp_path / "report.txt").write_text("drill")
        client.log_artifact(run_id, str(tmp_path / "report.txt"), "reports")
        client.create_registered_model("drill-model")
        client.create_model_version("drill-model", f"runs:/{run_id}/model", run_id=run_id)
        gone = client.create_experiment("drill-gone")
        client.log_metric(client.create_run(gone).info.run_id, "loss", 0.5)
        client.delete_experiment(gone)
        for tier in ("writer", "ingest", "query"):  # the deployment is down for the drill
            stack.kill(tier, signal.SIGTERM)
        work = tmp_path / "work"
        drill = ["bash", str(REPO / "scripts" / "dr-drill.sh"), "--workdir", str(work), "--destroy-source"]
        done = subprocess.run(drill, env={**stack.env, "PYTHON": sys.executable}, capture_output=True, text=True,
                              timeout=600, check=False)
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        compare = json.loads((work / "compare.json").read_text())
        validation = json.loads((work / "validation.json").read_text())
        assert compare["ok"] and validation["ok"], (compare, validation)
        counted = {r["name"].split(" ")[0]: r["detail"] for r in compare["results"]}
        assert [counted[k] for k in ("experiments", "runs", "registered", "model")] == ["3", "2", "1", "1"]
        uri = (work / "uri").read_text().strip()
        with pytest.raises(requests.ConnectionError):  # the drill stopped the tiers it started
            requests.get(uri + "/health", timeout=5)
        assert stack.db_name not in MongoClient(services.mongodb_uri).list_database_names()  # destroyed
        assert f"{stack.db_name}_dr" not in MongoClient(services.mongodb_uri).list_database_names()  # cleaned up
    finally:
        stack.stop()
