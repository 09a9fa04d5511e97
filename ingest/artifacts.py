"""Artifact uploads and deletes (the `mlflow-artifacts` proxy's write side).

Bodies stream from the client socket to the artifact store in blocks: never whole files in
memory, never through RabbitMQ or MongoDB. Once the store holds the file, one metadata event
(path, size, checksum, owning run or model) goes through the queue so the writer records it.

Paths are taken from the raw request target and checked by `safe_relative_path` before any
I/O, so percent-encoded dots and slashes cannot slip past the router's own normalisation.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import msgspec
from aiohttp import web

from common import events as ev
from common import validation as v
from common.artifacts import ArtifactStore, PartRef, artifact_scope, safe_relative_path
from common.clock import now_ms
from common.errors import MlflowError
from common.requests import decode_message, parse_json_body
from ingest.bus import EventBus

PREFIXES = ("/api/2.0/mlflow-artifacts", "/ajax-api/2.0/mlflow-artifacts")
BLOCK = 1024 * 1024


class MultipartCreate(msgspec.Struct):
    path: str | None = None
    num_parts: int = 1


class MultipartComplete(msgspec.Struct):
    upload_id: str
    parts: list[PartRef]
    path: str | None = None


class MultipartAbort(msgspec.Struct):
    upload_id: str
    path: str | None = None


SCHEMAS: dict[type, v.Schema] = {
    MultipartCreate: {"path": (v.REQUIRED, v.STRING), "num_parts": (v.INTLIKE,)},
    MultipartComplete: {"path": (v.REQUIRED, v.STRING), "upload_id": (v.STRING,), "parts": (v.REQUIRED,)},
    MultipartAbort: {"path": (v.REQUIRED, v.STRING), "upload_id": (v.STRING,)},
}


def multipart_destination(dir_path: str, client_file: str | None) -> str:
    """MLflow's multipart protocol names the artifact *directory* in the URL and the client's
    local file in the body: the artifact is `<dir>/<basename of the local file>`."""
    name = (client_file or "").replace("\\", "/").rsplit("/", 1)[-1]
    return safe_relative_path(f"{dir_path}/{name}" if dir_path else name)


def artifact_path(request: web.Request, marker: str) -> str:
    """The client's path after `<prefix><marker>`, from the raw (still encoded) target, made safe."""
    raw = request.raw_path.split("?", 1)[0]
    for prefix in PREFIXES:
        head = prefix + marker
        if raw.startswith(head):
            return safe_relative_path(raw[len(head):])
    raise MlflowError.invalid("Invalid path")


async def body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(BLOCK):
        yield chunk


class ArtifactService:
    def __init__(self, store: ArtifactStore, bus: EventBus, max_bytes: int, max_concurrent: int):
        self._store = store
        self._bus = bus
        self._max_bytes = max_bytes
        self._slots = asyncio.Semaphore(max_concurrent)

    async def _stored(self, path: str, size: int, sha256: str | None) -> None:
        scope = artifact_scope(path)
        await self._bus.submit(ev.ArtifactStored(
            path=path, size=size, time=now_ms(), sha256=sha256, experiment_id=scope.experiment_id,
            run_id=scope.run_id, model_id=scope.model_id), "committed")

    async def upload(self, path: str, chunks: AsyncIterator[bytes]) -> None:
        if not path:
            raise MlflowError.invalid("Invalid path")
        if self._slots.locked():
            raise MlflowError.unavailable("Too many uploads in progress; retry shortly.")
        async with self._slots:
            result = await self._store.put(path, chunks, max_bytes=self._max_bytes)
        await self._stored(path, result.size, result.sha256)

    async def delete(self, path: str) -> None:
        if not path:
            raise MlflowError.invalid("Invalid path")
        await self._store.delete(path)
        scope = artifact_scope(path)
        await self._bus.submit(ev.ArtifactDeleted(path=path, time=now_ms(), run_id=scope.run_id,
                                                  model_id=scope.model_id), "committed")

    async def create_multipart(self, path: str, req: MultipartCreate, part_url: str) -> dict[str, Any]:
        if not path or req.num_parts < 1 or req.num_parts > 10_000:
            raise MlflowError.invalid(v.invalid_value("num_parts", req.num_parts))
        upload_id = await self._store.create_multipart(path)
        return {"upload_id": upload_id, "credentials": [
            {"url": f"{part_url}?upload_id={upload_id}&part_number={n}", "part_number": n, "headers": {}}
            for n in range(1, req.num_parts + 1)]}

    async def upload_part(self, path: str, upload_id: str, part_number: int, chunks: AsyncIterator[bytes]) -> str:
        async with self._slots:
            part = await self._store.upload_part(path, upload_id, part_number, chunks, max_bytes=self._max_bytes)
        return part.etag

    async def complete_multipart(self, path: str, req: MultipartComplete) -> None:
        result = await self._store.complete_multipart(path, req.upload_id, req.parts)
        await self._stored(path, result.size, result.sha256)

    async def abort_multipart(self, path: str, req: MultipartAbort) -> None:
        await self._store.abort_multipart(path, req.upload_id)


def _base_url(request: web.Request) -> str:
    proto = request.headers.get("X-Forwarded-Proto", request.scheme)
    return f"{proto}://{request.host}"


def add_artifact_routes(app: web.Application, service: ArtifactService) -> None:
    async def put(request: web.Request) -> web.Response:
        await service.upload(artifact_path(request, "/artifacts/"), body_chunks(request))
        return web.Response(status=200)

    async def delete(request: web.Request) -> web.Response:
        await service.delete(artifact_path(request, "/artifacts/"))
        return web.json_response({})

    async def body(request: web.Request, kind: type) -> Any:
        return decode_message(parse_json_body(await request.read()), kind, SCHEMAS[kind])

    async def mpu_create(request: web.Request) -> web.Response:
        req = await body(request, MultipartCreate)
        path = multipart_destination(artifact_path(request, "/mpu/create/"), req.path)
        prefix = next(p for p in PREFIXES if request.path.startswith(p))
        part_url = f"{_base_url(request)}{prefix}/mpu/upload/{quote(path)}"
        return web.json_response(await service.create_multipart(path, req, part_url))

    async def mpu_upload(request: web.Request) -> web.Response:
        path = artifact_path(request, "/mpu/upload/")
        try:
            upload_id = request.query["upload_id"]
            part_number = int(request.query["part_number"])
        except (KeyError, ValueError):
            raise MlflowError.invalid("upload_id and an integer part_number are required.") from None
        etag = await service.upload_part(path, upload_id, part_number, body_chunks(request))
        return web.Response(status=200, headers={"ETag": etag})

    async def mpu_complete(request: web.Request) -> web.Response:
        req = await body(request, MultipartComplete)
        await service.complete_multipart(multipart_destination(artifact_path(request, "/mpu/complete/"), req.path), req)
        return web.json_response({})

    async def mpu_abort(request: web.Request) -> web.Response:
        req = await body(request, MultipartAbort)
        await service.abort_multipart(multipart_destination(artifact_path(request, "/mpu/abort/"), req.path), req)
        return web.json_response({})

    for prefix in PREFIXES:
        app.router.add_put(prefix + "/artifacts/{path:.*}", put)
        app.router.add_delete(prefix + "/artifacts/{path:.*}", delete)
        app.router.add_post(prefix + "/mpu/create/{path:.*}", mpu_create)
        app.router.add_put(prefix + "/mpu/upload/{path:.*}", mpu_upload)
        app.router.add_post(prefix + "/mpu/complete/{path:.*}", mpu_complete)
        app.router.add_post(prefix + "/mpu/abort/{path:.*}", mpu_abort)
