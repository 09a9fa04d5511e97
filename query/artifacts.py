"""Artifact downloads and listings (the `mlflow-artifacts` proxy's read side), plus the legacy
run-scoped helpers the UI uses (`/get-artifact`, `/api/2.0/mlflow/artifacts/list`).

Downloads stream from the store to the socket block by block. Every client path is checked by
`safe_relative_path` / `join_under` before any I/O; the legacy helpers resolve the run's
artifact root first and never leave it.
"""

from __future__ import annotations

import contextlib
import mimetypes
import posixpath
from typing import Any
from urllib.parse import quote

from aiohttp import web
from pymongo.asynchronous.database import AsyncDatabase

from common.artifacts import ArtifactStore, FileInfo, join_under, safe_relative_path
from common.errors import MlflowError
from common.mongo import RUNS
from common.validation import run_not_found_message, validate_run_id
from common.web import json_response

PREFIXES = ("/api/2.0/mlflow-artifacts", "/ajax-api/2.0/mlflow-artifacts")
MLFLOW_PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
SCHEME = "mlflow-artifacts:"


def mime_type(path: str) -> str:
    guessed, _ = mimetypes.guess_type(path)
    return guessed or ("text/plain" if posixpath.basename(path) in ("MLmodel", "MLproject") else "application/octet-stream")


async def stream_file(request: web.Request, store: ArtifactStore, path: str) -> web.StreamResponse:
    size, chunks = await store.open(path)
    name = posixpath.basename(path)
    response = web.StreamResponse(headers={
        "Content-Type": mime_type(path),
        "Content-Length": str(size),
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
    })
    async with contextlib.aclosing(chunks):
        await response.prepare(request)
        async for chunk in chunks:
            await response.write(chunk)
    await response.write_eof()
    return response


def listing(files: list[FileInfo], under: str = "") -> dict[str, Any]:
    """MLflow leaves `files` out when a listing is empty (an empty protobuf repeated field)."""
    entries = []
    for f in files:
        entry: dict[str, Any] = {"path": posixpath.join(under, f.path) if under else f.path, "is_dir": f.is_dir}
        if f.file_size is not None:
            entry["file_size"] = f.file_size
        entries.append(entry)
    return {"files": entries} if entries else {}


async def run_artifact_root(db: AsyncDatabase, run_id: str) -> tuple[str, str]:
    """(artifact_uri, store path of the run's artifact root) for a run that exists."""
    validate_run_id(run_id)
    doc = await db[RUNS].find_one({"_id": run_id}, {"artifact_uri": 1})
    if doc is None:
        raise MlflowError.not_found(run_not_found_message(run_id))
    uri = doc.get("artifact_uri", "")
    if not uri.startswith(SCHEME):
        raise MlflowError.invalid(f"The run's artifacts are not served by this server ({uri}).")
    return uri, safe_relative_path(uri[len(SCHEME):].lstrip("/"))


def _raw_tail(request: web.Request, marker: str) -> str:
    raw = request.raw_path.split("?", 1)[0]
    for prefix in PREFIXES:
        if raw.startswith(prefix + marker):
            return safe_relative_path(raw[len(prefix + marker):])
    raise MlflowError.invalid("Invalid path")


def add_artifact_routes(app: web.Application, store: ArtifactStore, db: AsyncDatabase) -> None:
    async def download(request: web.Request) -> web.StreamResponse:
        path = _raw_tail(request, "/artifacts/")
        if not path:
            raise MlflowError.invalid("Invalid path")
        return await stream_file(request, store, path)

    async def list_dir(request: web.Request) -> web.Response:
        return json_response(listing(await store.list(safe_relative_path(request.query.get("path", "")))))

    async def legacy_get_artifact(request: web.Request) -> web.StreamResponse:
        run_id = request.query.get("run_id") or request.query.get("run_uuid") or ""
        _, root = await run_artifact_root(db, run_id)
        return await stream_file(request, store, join_under(root, request.query.get("path", "")))

    async def legacy_list(request: web.Request) -> web.Response:
        run_id = request.query.get("run_id") or request.query.get("run_uuid") or ""
        uri, root = await run_artifact_root(db, run_id)
        rel = safe_relative_path(request.query.get("path", ""))
        files = await store.list(join_under(root, rel))
        return json_response({"root_uri": uri, **listing(files, under=rel)})

    for prefix in PREFIXES:
        app.router.add_get(prefix + "/artifacts", list_dir)
        app.router.add_get(prefix + "/artifacts/{path:.*}", download)
    app.router.add_get("/get-artifact", legacy_get_artifact)
    app.router.add_get("/ajax-api/2.0/mlflow/get-artifact", legacy_get_artifact)
    for prefix in MLFLOW_PREFIXES:
        app.router.add_get(prefix + "/artifacts/list", legacy_list)
