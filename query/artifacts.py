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
import unicodedata
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


# MLflow serves these as text/plain (`mlflow/utils/mime_type_utils.py`): never as something a
# browser would render or run on the server's origin.
TEXT_EXTENSIONS = frozenset({
    "txt", "log", "err", "cfg", "conf", "cnf", "cf", "ini", "properties", "prop", "hocon", "toml", "yaml", "yml",
    "xml", "json", "js", "py", "py3", "csv", "tsv", "md", "rst", "ipynb", "MLmodel", "MLproject"})
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def mime_type(path: str) -> str:
    name = posixpath.basename(path)
    extension = posixpath.splitext(name)[1].lstrip(".") or name
    if extension in TEXT_EXTENSIONS:
        return "text/plain"
    guessed, _ = mimetypes.guess_type(name)
    return guessed or "application/octet-stream"


def content_disposition(name: str) -> str:
    """MLflow's `_content_disposition_attachment`: a plain token, a quoted string, or for
    non-ASCII names an ASCII fallback plus the RFC 5987 form."""
    if not name.isascii():
        fallback = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii") or "download"
        return f"attachment; filename={_header_value(fallback)}; filename*=UTF-8''{quote(name, safe='!#$&+-.^_`|~')}"
    return f"attachment; filename={_header_value(name)}"


def _header_value(value: str) -> str:
    if value and set(value) <= _TOKEN_CHARS:
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def _open(store: ArtifactStore, path: str) -> tuple[int, Any]:
    try:
        return await store.open(path)
    except MlflowError as err:
        if err.http_status == 404 and await store.list(path):
            raise MlflowError.invalid(f"Artifact path refers to a directory, not a file: '{path}'") from None
        raise


async def stream_file(request: web.Request, store: ArtifactStore, path: str) -> web.StreamResponse:
    size, chunks = await _open(store, path)
    response = web.StreamResponse(headers={
        "Content-Type": mime_type(path),
        "Content-Length": str(size),
        "Content-Disposition": content_disposition(posixpath.basename(path)),
        "X-Content-Type-Options": "nosniff",
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


async def list_run_artifacts(db: AsyncDatabase, store: ArtifactStore, run_id: str, path: str | None) -> dict[str, Any]:
    """`artifacts/list` of a run: its artifact URI and the entries under `path`, their paths
    relative to the run's root. The path is checked before the run is looked up, as MLflow does."""
    rel = safe_relative_path(path or "")
    uri, root = await run_artifact_root(db, run_id)
    return {"root_uri": uri, **listing(await store.list(join_under(root, rel)), under=rel)}


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
        return json_response(await list_run_artifacts(db, store, run_id, request.query.get("path")))

    for prefix in PREFIXES:
        app.router.add_get(prefix + "/artifacts", list_dir)
        app.router.add_get(prefix + "/artifacts/{path:.*}", download)
    app.router.add_get("/get-artifact", legacy_get_artifact)
    app.router.add_get("/ajax-api/2.0/mlflow/get-artifact", legacy_get_artifact)
    for prefix in MLFLOW_PREFIXES:
        app.router.add_get(prefix + "/artifacts/list", legacy_list)
