"""`genesis-flow backup --out DIR [--verify]`, `backup --verify DIR`, `restore DIR [--drop]`.

A backup directory:

    DIR/manifest.json                    what is in it, with checksums (written last: no manifest,
                                         no backup)
    DIR/mongodb/<db>/<coll>.bson         mongodump's directory format (`genesis_flow/mongodump.py`):
    DIR/mongodb/<db>/<coll>.metadata.json  `mongorestore --uri ... DIR/mongodb` loads it too
    DIR/artifacts/<path>                 the artifact store's files (or in the store named by
                                         `--artifacts-to`)

Consistency while writes are in flight
--------------------------------------
MongoDB is dumped with every writer paused between two batches (`common/writer_pause.py`): the
backup claims the pause, waits until each running writer has finished the batch it was applying
and reported itself paused, dumps every collection, checks that the pause held throughout
(`WriterPause.confirm`), and lifts it. Only writers write the data collections (ingest's one
direct write is the experiment-id counter, which only grows), so the dump is the database as of
one instant between batches: every event in it is applied whole, across collections (a run's
latest metric and its history point, its bucket bookkeeping and the buckets), never half.

While the writers are paused, ingest keeps accepting writes and publishing them to the durable
quorum queues; they are applied, in order, when the pause ends, so the pause loses nothing. A
committed-mode client whose commit is held up past GENESIS_FLOW_COMMIT_TIMEOUT_S gets an
enqueued ack instead (as during a writer outage); reads lag by the pause. The pause lasts as long
as the MongoDB dump (artifacts are copied after it); a pause that outlives RabbitMQ's
`consumer_timeout` (30 minutes by default) makes the broker redeliver what the writers held, which
is harmless (idempotent plan), but keep dumps shorter. `--no-pause` skips it: each collection is
then read as it is at that moment, and a batch applied during the dump may be in one collection
and not another (the manifest says `"mode": "per-collection"`).

The guarantee: the backup holds every write acknowledged as committed before the backup began
(it was in MongoDB before the pause was claimed), and no acknowledged write is lost because of
the backup (what came later waits in the queue). A write acknowledged only as *enqueued* before
the backup began is in it if a writer had committed it before the pause; otherwise it reaches the
live database after the pause, not this backup. Every artifact whose upload was acknowledged
before the backup began is copied (the store is listed after the dump); files uploaded, replaced
or deleted during the copy may or may not be, and a file replaced during the copy is copied as
one version or the other, never a mix (both stores replace objects atomically).

The manifest
------------
`format` ("genesis-flow-backup"), `format_version` (1), `started_at` / `finished_at` (this host's
clock) and `genesis_flow_version`; `database`: `name`, `dump` (the directory under DIR),
`consistency` (`mode`: "writers-paused" with the writers that paused and MongoDB's times of the
pause request, the consistent point and the resume, or "per-collection"), `collections` (per
collection: `documents`, `bytes`, `sha256`, `metadata_sha256`, `indexes`) and `metric_history`
(`points`, `sha256`); `artifacts`: `source` (the store backed up), `location` (where this backup
put the files), `incremental_from`, and `files` (`path`, `size`, `sha256`, and `base` for a file
left in an earlier backup); `totals`: collections, documents, BSON bytes, metric points, artifact
files and bytes, how many of them were copied and how many referenced, and seconds.

Checksums and incremental backups
---------------------------------
Per collection: document count, bytes, and the SHA-256 of the `.bson` file (each document's BSON
in `_id` order). Over metric history: the number of points and an order-independent digest (the
sum mod 2**256 of SHA-256 over one line per point), which a client can recompute through the
API (`tools/deployment/dr_drill.py compare`). Per artifact: path, size and SHA-256 of the bytes
copied. With `--incremental-from PREV`, a file whose size and SHA-256 in the `artifacts`
collection (recorded by the writer at upload) equal PREV's entry, and whose stored size agrees, is
not copied again: its entry names where the bytes are (`base`, relative to the new backup). Keep
a chain of backups together (same parent directory) or keep them where they were.

Restore loads the collections into the configured database (refusing a non-empty one without
`--drop`, and one with writers running on it), recreates the dumped indexes and then
`ensure_indexes`, recomputes every checksum from the restored database, and copies the artifacts
into the configured store, checking each file's SHA-256 on the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import logging
import math
import os
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bson.raw_bson import RawBSONDocument
from pymongo.asynchronous.database import AsyncDatabase

from common.artifacts import ArtifactStore, open_store
from common.keys import decode_key
from common.mongo import (
    ARTIFACTS,
    CONTROL,
    METRICS,
    WRITER_STATUS,
    ensure_indexes,
    is_mongos,
    make_client,
    shard_collections,
)
from common.settings import Settings
from common.writer_pause import (
    BALANCER_HEARTBEATS,
    LIVE_S,
    PauseFailed,
    holder_name,
    pause_writers,
    server_now,
)
from genesis_flow import artifact_copy as ac
from genesis_flow import mongodump

log = logging.getLogger(__name__)

FORMAT = "genesis-flow-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MONGODB_DIR = "mongodb"
ARTIFACTS_DIR = "artifacts"
# Coordination and status, not data: a restored deployment starts these afresh.
NOT_BACKED_UP = frozenset({CONTROL, BALANCER_HEARTBEATS, WRITER_STATUS})
_INCREMENTAL_LOOKUP = 500


class BackupError(Exception):
    """The backup, verification or restore cannot be trusted; the message says why."""


# --- metric history digest ---------------------------------------------------------------------

_MAX_FLOAT = sys.float_info.max


def point_line(run_id: str, key: str, step: int, timestamp: int, value: float | None) -> bytes:
    """One history point as MLflow's API shows it: NaN as NaN, +-Inf as +-max float."""
    if value is None or math.isnan(value):
        text = "NaN"
    else:
        text = repr(max(-_MAX_FLOAT, min(_MAX_FLOAT, float(value))))
    return json.dumps([run_id, key, int(step), int(timestamp), text]).encode()


class HistoryDigest:
    """Order-independent digest of metric points (buckets arrive in `_id` order, API pages in
    time order): the sum of the points' SHA-256 values modulo 2**256."""

    def __init__(self) -> None:
        self.points = 0
        self._sum = 0

    def add(self, run_id: str, key: str, step: int, timestamp: int, value: float | None) -> None:
        self.points += 1
        self._sum = (self._sum + int.from_bytes(hashlib.sha256(point_line(run_id, key, step, timestamp, value))
                                                .digest(), "big")) % (1 << 256)

    def add_bucket(self, doc: RawBSONDocument) -> None:
        run_id, key = doc["run_id"], decode_key(doc["key"])
        for point in doc.get("p", ()):
            self.add(run_id, key, point[0], point[1], point[2])

    def summary(self) -> dict[str, Any]:
        return {"points": self.points, "sha256": f"{self._sum:064x}"}


# --- small helpers -----------------------------------------------------------------------------


def _iso(when: dt.datetime | None = None) -> str:
    when = when or dt.datetime.now(dt.UTC)
    if when.tzinfo is None:  # MongoDB dates are naive UTC
        when = when.replace(tzinfo=dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("genesis-flow")
    except PackageNotFoundError:
        return "unknown"


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupError(f"{path} is missing: {directory} is not a complete backup") from None
    except ValueError as exc:
        raise BackupError(f"{path} is not valid JSON: {exc}") from None
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(f"{path}: not a {FORMAT} manifest of version {FORMAT_VERSION}")
    return manifest


def _write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    tmp = directory / f".{MANIFEST}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=1, sort_keys=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, directory / MANIFEST)


async def _collections(db: AsyncDatabase) -> list[dict[str, Any]]:
    infos = [info async for info in await db.list_collections()]
    return sorted((i for i in infos if i.get("type", "collection") == "collection"
                   and not i["name"].startswith("system.") and i["name"] not in NOT_BACKED_UP),
                  key=lambda i: i["name"])


@contextlib.asynccontextmanager
async def _database(settings: Settings, app_name: str) -> AsyncIterator[AsyncDatabase]:
    client = make_client(settings.mongodb_uri, app_name=app_name, w="majority")
    try:
        yield client[settings.mongodb_db]
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def _store(store: ArtifactStore) -> AsyncIterator[ArtifactStore]:
    try:
        yield store
    finally:
        await store.close()


# --- backup ------------------------------------------------------------------------------------


@dataclass
class BackupOptions:
    out: Path
    incremental_from: Path | None = None
    artifacts_to: str | None = None  # a store URI; default: DIR/artifacts
    pause: bool = True
    pause_timeout_s: float = 60.0


async def backup(settings: Settings, opts: BackupOptions) -> dict[str, Any]:
    """Take a backup into `opts.out` (new or empty); returns its manifest."""
    out = opts.out.resolve()
    if out.exists() and any(out.iterdir()):
        raise BackupError(f"{out} exists and is not empty; back up into a new directory")
    previous = read_manifest(opts.incremental_from.resolve()) if opts.incremental_from else None
    location = opts.artifacts_to or ARTIFACTS_DIR
    if opts.artifacts_to and opts.artifacts_to.rstrip("/") == settings.artifact_root.rstrip("/"):
        raise BackupError("--artifacts-to names the store being backed up")
    started = time.monotonic()
    manifest: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION, "started_at": _iso(),
                                "genesis_flow_version": _version()}
    dump_dir = out / MONGODB_DIR / settings.mongodb_db
    dump_dir.mkdir(parents=True)
    source = open_store(settings.artifact_root, settings.azure_connection_string)
    target = ac.open_location(location, out, settings.azure_connection_string)
    async with _database(settings, "genesis-flow-backup") as db, _store(source), _store(target):
        if await target.list(""):
            raise BackupError(f"{location} already holds files; give each backup a store of its own")
        manifest["database"] = await _dump_database(db, dump_dir, opts)
        # After the writers resumed: the artifact copy may take long, and every upload that was
        # acknowledged before the backup began is in the store by now.
        manifest["artifacts"] = await _copy_artifacts(db, source, target, settings.artifact_root, location,
                                                      out, opts.incremental_from, previous)
    manifest["finished_at"] = _iso()
    manifest["totals"] = _totals(manifest, time.monotonic() - started)
    _write_manifest(out, manifest)
    return manifest


async def _dump_database(db: AsyncDatabase, dump_dir: Path, opts: BackupOptions) -> dict[str, Any]:
    history = HistoryDigest()
    collections: dict[str, Any] = {}

    async def dump_all() -> None:
        for info in await _collections(db):
            hook = history.add_bucket if info["name"] == METRICS else None
            collections[info["name"]] = await mongodump.dump_collection(db, info, dump_dir, hook)

    if opts.pause:
        async with pause_writers(db, holder_name("backup"), timeout_s=opts.pause_timeout_s) as pause:
            await dump_all()
            await pause.confirm()
            resumed = await _server_time(db)
        consistency = {"mode": "writers-paused", "writers": pause.writers,
                       "pause_requested_at": _iso(pause.requested_at), "consistent_at": _iso(pause.quiesced_at),
                       "resumed_at": _iso(resumed),
                       "pause_seconds": round((resumed - pause.requested_at).total_seconds(), 3)}
    else:
        await dump_all()
        consistency = {"mode": "per-collection"}
    return {"name": db.name, "dump": f"{MONGODB_DIR}/{db.name}", "consistency": consistency,
            "collections": collections, "metric_history": history.summary()}


async def _server_time(db: AsyncDatabase) -> dt.datetime:
    return await server_now(db[CONTROL])


async def _files_with_records(db: AsyncDatabase, source: ArtifactStore,
                              incremental: bool) -> AsyncIterator[tuple[str, int, dict]]:
    """Every stored file with its `artifacts` record (size, sha256 at upload), looked up in
    batches when an incremental backup needs them."""
    pending: list[tuple[str, int]] = []

    async def lookup() -> list[tuple[str, int, dict]]:
        if not incremental:
            return [(p, s, {}) for p, s in pending]
        ids = [p for p, _ in pending]
        records = {d["_id"]: d async for d in db[ARTIFACTS].find({"_id": {"$in": ids}}, {"size": 1, "sha256": 1})}
        return [(p, s, records.get(p) or {}) for p, s in pending]

    async for path, size in ac.walk(source):
        pending.append((path, size))
        if len(pending) >= _INCREMENTAL_LOOKUP:
            for item in await lookup():
                yield item
            pending = []
    if pending:
        for item in await lookup():
            yield item


async def _copy_artifacts(db: AsyncDatabase, source: ArtifactStore, target: ArtifactStore, source_uri: str,
                          location: str, out: Path, previous_dir: Path | None,
                          previous: dict[str, Any] | None) -> dict[str, Any]:
    before = {f["path"]: f for f in previous["artifacts"]["files"]} if previous else {}
    prev_location = previous["artifacts"]["location"] if previous else ""
    prev_dir = previous_dir.resolve() if previous_dir else None
    files: list[dict[str, Any]] = []

    async def one(item: tuple[str, int, dict]) -> None:
        path, listed_size, record = item
        old = before.get(path)
        if (old is not None and prev_dir is not None and record.get("sha256") == old["sha256"]
                and record.get("size") == old["size"] == listed_size):
            base = ac.relocate(old.get("base", prev_location), prev_dir, out)
            files.append({"path": path, "size": old["size"], "sha256": old["sha256"], "base": base})
            return
        copied = await ac.copy_file(source, target, path)
        if copied is not None:
            files.append({"path": path, "size": copied[0], "sha256": copied[1]})

    await ac.for_each(_files_with_records(db, source, bool(before)), one)
    files.sort(key=lambda f: f["path"])
    return {"source": source_uri, "location": location,
            "incremental_from": os.path.relpath(prev_dir, out) if prev_dir else None, "files": files}


def _totals(manifest: dict[str, Any], seconds: float) -> dict[str, Any]:
    collections = manifest["database"]["collections"].values()
    files = manifest["artifacts"]["files"]
    copied = [f for f in files if "base" not in f]
    return {"collections": len(manifest["database"]["collections"]),
            "documents": sum(c["documents"] for c in collections),
            "bson_bytes": sum(c["bytes"] for c in collections),
            "metric_points": manifest["database"]["metric_history"]["points"],
            "artifact_files": len(files), "artifact_bytes": sum(f["size"] for f in files),
            "copied_files": len(copied), "copied_bytes": sum(f["size"] for f in copied),
            "referenced_files": len(files) - len(copied),
            "referenced_bytes": sum(f["size"] for f in files) - sum(f["size"] for f in copied),
            "seconds": round(seconds, 3)}


# --- verify ------------------------------------------------------------------------------------


async def verify(settings: Settings, directory: Path) -> dict[str, Any]:
    """Recompute every checksum of a backup from its files; `ok` is False on any difference."""
    directory = directory.resolve()
    differences: list[str] = []
    try:
        manifest = read_manifest(directory)
    except BackupError as exc:
        return {"backup": str(directory), "ok": False, "differences": [str(exc)]}
    db_part = manifest["database"]
    dump_dir = directory / db_part["dump"]
    history = HistoryDigest()
    for name, expected in db_part["collections"].items():
        differences += await asyncio.to_thread(_verify_collection, dump_dir, name, expected,
                                               history.add_bucket if name == METRICS else None)
    if dump_dir.is_dir():
        extra = sorted(p.name for p in dump_dir.glob("*.bson") if p.stem not in db_part["collections"])
        differences += [f"mongodb: {name} is not in the manifest" for name in extra]
    if METRICS in db_part["collections"] and history.summary() != db_part["metric_history"]:
        differences.append(f"metric history: {history.summary()} != manifest {db_part['metric_history']}")
    differences += await _verify_artifacts(settings, directory, manifest["artifacts"])
    return {"backup": str(directory), "ok": not differences, "differences": differences,
            "checked": {"collections": len(db_part["collections"]),
                        "artifact_files": len(manifest["artifacts"]["files"])}}


def _verify_collection(dump_dir: Path, name: str, expected: dict[str, Any], hook: Any) -> list[str]:
    problems = []
    meta = mongodump.metadata_path(dump_dir, name)
    try:
        if hashlib.sha256(meta.read_bytes()).hexdigest() != expected["metadata_sha256"]:
            problems.append(f"mongodb: {meta.name} differs from its checksum")
    except FileNotFoundError:
        problems.append(f"mongodb: {meta.name} is missing")
    path = mongodump.bson_path(dump_dir, name)
    try:
        got = mongodump.file_digest(path, hook).summary()
    except FileNotFoundError:
        return problems + [f"mongodb: {path.name} is missing"]
    except Exception as exc:  # noqa: BLE001 - bson.InvalidBSON and friends: a damaged file
        return problems + [f"mongodb: {path.name} is damaged: {type(exc).__name__}: {exc}"]
    for field in ("documents", "bytes", "sha256"):
        if got[field] != expected[field]:
            problems.append(f"mongodb: {path.name}: {field} {got[field]} != manifest {expected[field]}")
    return problems


async def _verify_artifacts(settings: Settings, directory: Path, part: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    stores: dict[str, ArtifactStore] = {}

    def store_for(location: str) -> ArtifactStore:
        if location not in stores:
            stores[location] = ac.open_location(location, directory, settings.azure_connection_string)
        return stores[location]

    async def one(entry: dict[str, Any]) -> None:
        where = entry.get("base", part["location"])
        got = await ac.hash_file(store_for(where), entry["path"])
        if got is None:
            problems.append(f"artifacts: {entry['path']} is missing from {where}")
        elif got != (entry["size"], entry["sha256"]):
            problems.append(f"artifacts: {entry['path']} in {where}: size/sha256 {got[0]}/{got[1][:12]}... "
                            f"!= manifest {entry['size']}/{entry['sha256'][:12]}...")

    try:
        await ac.for_each(ac.iterate(part["files"]), one)
        own = {f["path"] for f in part["files"] if "base" not in f}
        async for path, _ in ac.walk(store_for(part["location"])):
            if path not in own:
                problems.append(f"artifacts: {path} in {part['location']} is not in the manifest")
    finally:
        for store in stores.values():
            await store.close()
    return sorted(problems)


# --- restore -----------------------------------------------------------------------------------


async def restore(settings: Settings, directory: Path, *, drop: bool = False) -> dict[str, Any]:
    """Load a backup into the configured database and artifact store; returns a report.

    Refuses a target that holds data (documents in any collection, files in the store) unless
    `drop`, which empties both first. Raises BackupError if a checksum of what was restored
    differs from the manifest."""
    directory = directory.resolve()
    manifest = read_manifest(directory)
    started = time.monotonic()
    db_part, art_part = manifest["database"], manifest["artifacts"]
    dump_dir = directory / db_part["dump"]
    for where in {art_part["location"], *(f["base"] for f in art_part["files"] if "base" in f)}:
        if _same_store(where, directory, settings.artifact_root):
            raise BackupError(f"the backup's artifacts are in {where}, the store being restored into")
    target = open_store(settings.artifact_root, settings.azure_connection_string)
    async with _database(settings, "genesis-flow-restore") as db, _store(target):
        occupied = await _occupied(db, target)
        if occupied and not drop:
            raise BackupError(f"the target is not empty ({'; '.join(occupied)}); restore with --drop to replace it")
        if drop:
            await _empty(db, target)
        if await is_mongos(db.client):
            await shard_collections(db.client, db.name)
        differences: list[str] = []
        history = HistoryDigest()
        for name, expected in db_part["collections"].items():
            read = await mongodump.restore_collection(db, dump_dir, name)
            got = await mongodump.database_digest(db, name, history.add_bucket if name == METRICS else None)
            for what, digest in (("backup file", read), ("restored collection", got)):
                if digest.summary() != {k: expected[k] for k in ("documents", "bytes", "sha256")}:
                    differences.append(f"{name}: {what} {digest.summary()} != manifest")
        await ensure_indexes(db)
        if METRICS in db_part["collections"] and history.summary() != db_part["metric_history"]:
            differences.append(f"metric history: restored {history.summary()} != manifest {db_part['metric_history']}")
        if differences:
            raise BackupError("restored data differs from the backup: " + "; ".join(differences))
        copied = await _restore_artifacts(settings, directory, art_part, target)
    return {"restored": str(directory), "database": settings.mongodb_db, "artifact_root": settings.artifact_root,
            "collections": {n: c["documents"] for n, c in db_part["collections"].items()},
            "metric_history": db_part["metric_history"], "artifact_files": copied[0], "artifact_bytes": copied[1],
            "seconds": round(time.monotonic() - started, 3)}


def _same_store(location: str, directory: Path, artifact_root: str) -> bool:
    def canonical(where: str, base: Path) -> str:
        if ac.is_uri(where) and not where.startswith("file:"):
            return where.rstrip("/")
        path = urllib.parse.unquote(urllib.parse.urlsplit(where).path) if where.startswith("file:") else where
        return str((base / path).resolve())

    return canonical(location, directory) == canonical(artifact_root, Path.cwd())


async def _occupied(db: AsyncDatabase, store: ArtifactStore) -> list[str]:
    what = []
    since = await _server_time(db) - dt.timedelta(seconds=LIVE_S)
    if writers := await db[CONTROL].find({"kind": "writer", "seen": {"$gte": since}}).to_list(None):
        what.append(f"{len(writers)} writer(s) are running on database {db.name}: stop the tiers first")
    for name in sorted(await db.list_collection_names()):
        if not name.startswith("system.") and name not in NOT_BACKED_UP and await db[name].find_one({}, {"_id": 1}):
            what.append(f"database {db.name} has documents in {name}")
            break
    if await store.list(""):
        what.append(f"artifact store {store!r} has files")
    return what


async def _empty(db: AsyncDatabase, store: ArtifactStore) -> None:
    for name in await db.list_collection_names():
        if not name.startswith("system."):
            await db.drop_collection(name)
    for entry in await store.list(""):
        await store.delete(entry.path)


async def _restore_artifacts(settings: Settings, directory: Path, part: dict[str, Any],
                             target: ArtifactStore) -> tuple[int, int]:
    stores: dict[str, ArtifactStore] = {}
    totals = [0, 0]

    async def one(entry: dict[str, Any]) -> None:
        where = entry.get("base", part["location"])
        if where not in stores:
            stores[where] = ac.open_location(where, directory, settings.azure_connection_string)
        copied = await ac.copy_file(stores[where], target, entry["path"])
        if copied is None:
            raise BackupError(f"artifacts: {entry['path']} is missing from {where}")
        if copied != (entry["size"], entry["sha256"]):
            await target.delete(entry["path"])
            raise BackupError(f"artifacts: {entry['path']} from {where} does not match its checksum "
                              f"(size/sha256 {copied[0]}/{copied[1]} != {entry['size']}/{entry['sha256']})")
        totals[0] += 1
        totals[1] += copied[0]

    try:
        await ac.for_each(ac.iterate(part["files"]), one)
    finally:
        for store in stores.values():
            await store.close()
    return totals[0], totals[1]


# --- commands ----------------------------------------------------------------------------------


def _print(doc: dict[str, Any]) -> None:
    print(json.dumps(doc, indent=2), flush=True)


def _quiet_sdk_logs() -> None:
    # The Azure SDK logs every HTTP request at INFO: thousands of lines for a large store.
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)


async def run_backup(settings: Settings, *, out: str | None, verify_dir: str | None, incremental_from: str | None,
                     artifacts_to: str | None, pause: bool, pause_timeout_s: float) -> int:
    """`genesis-flow backup`: exit 0 when the backup (and its verification, if asked) succeeded."""
    _quiet_sdk_logs()
    if out is None and not verify_dir:
        raise SystemExit("genesis-flow backup: give --out DIR (to take a backup) or --verify DIR (to check one)")
    if out is not None and verify_dir:
        raise SystemExit("genesis-flow backup: --verify takes no directory together with --out")
    if out is not None:
        opts = BackupOptions(Path(out), Path(incremental_from) if incremental_from else None, artifacts_to,
                             pause, pause_timeout_s)
        try:
            manifest = await backup(settings, opts)
        except (BackupError, PauseFailed) as exc:
            print(f"genesis-flow backup: {exc}", file=sys.stderr)
            return 1
        _print({"backup": str(opts.out.resolve()), "consistency": manifest["database"]["consistency"],
                "totals": manifest["totals"]})
        if verify_dir is None:
            return 0
        verify_dir = out
    report = await verify(settings, Path(verify_dir))  # type: ignore[arg-type]
    _print(report)
    return 0 if report["ok"] else 1


async def run_restore(settings: Settings, directory: str, *, drop: bool) -> int:
    _quiet_sdk_logs()
    try:
        report = await restore(settings, Path(directory), drop=drop)
    except BackupError as exc:
        print(f"genesis-flow restore: {exc}", file=sys.stderr)
        return 1
    _print(report)
    return 0
