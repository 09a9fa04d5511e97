"""Artifacts as block blobs in one Azure container, under an optional name prefix.

Uploads stage 4 MiB blocks and commit the block list only once the whole body arrived:
uncommitted blocks are invisible and Azure drops them within a week, so a failed upload
leaves nothing to see. Multipart parts are staged blocks on the target blob itself; an open
upload is recorded by a marker blob `<prefix>/.gf-tmp-mpu/<upload_id>` (metadata: the target
key), which makes uploads visible to every ingest replica and lets abort mean something.

Every block id has the same length (Azure requires it per blob): 32 hex of upload token,
5 digits of part number (0 for a plain put), 8 hex of part attempt, 5 digits of block index.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Sequence

from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobProperties
from azure.storage.blob.aio import BlobClient, BlobServiceClient, ContainerClient

from common.errors import MlflowError
from common.artifacts.paths import INVALID_PATH, join_under
from common.artifacts.store import (
    MULTIPART_DIR,
    RESERVED_PREFIX,
    FileInfo,
    PartRef,
    PutResult,
    UploadedPart,
    check_part_number,
    check_parts,
    check_upload_id,
    no_such_artifact,
    no_such_upload,
    quote_key,
    rechunk,
    storage_key,
)

BLOCK_SIZE = 4 * 1024 * 1024
# Blocks staged at once per upload, while the next block is read from the client. Each one
# costs about two blocks of memory (aiohttp copies the body into its write buffer), so one
# upload holds ~13 MiB at 1 and ~17 MiB at 2; 1 already overlaps the client with Azure.
STAGE_CONCURRENCY = 1
MAX_BLOB_NAME = 1024
MAX_BLOCKS = 50_000  # committed blocks per blob (Azure); 195 GiB at 4 MiB
_PUT_PART = 0
_PUT_ATTEMPT = "0" * 8
_ETAG_RE = re.compile(r"^([0-9a-f]{8})-(\d{1,5})$")
_DELETE_CONCURRENCY = 16
_RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}


def _block_id(token: str, part_number: int, attempt: str, index: int) -> str:
    return f"{token}{part_number:05d}{attempt}{index:05d}"


@contextlib.contextmanager
def _azure_errors():
    """Outages become 503 TEMPORARILY_UNAVAILABLE, which the MLflow client retries."""
    try:
        yield
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise MlflowError.unavailable(f"Artifact storage is unavailable: {type(exc).__name__}") from exc
    except HttpResponseError as exc:
        if exc.status_code in _RETRYABLE_STATUS:
            raise MlflowError.unavailable(f"Artifact storage is unavailable: HTTP {exc.status_code}") from exc
        raise


class AzureArtifactStore:
    def __init__(
        self, connection_string: str, container: str, prefix: str = "", *,
        block_size: int = BLOCK_SIZE, stage_concurrency: int = STAGE_CONCURRENCY,
    ):
        self._prefix = prefix.strip("/")
        self._block_size = block_size
        self._stage_concurrency = stage_concurrency
        # Small first and range GETs keep a download's memory at one block.
        self._service = BlobServiceClient.from_connection_string(
            connection_string, max_single_get_size=block_size, max_chunk_get_size=block_size,
        )
        self._container: ContainerClient = self._service.get_container_client(container)
        self._container_ready = False
        self._container_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"AzureArtifactStore({self._container.container_name!r}, prefix={self._prefix!r})"

    # --- names ---------------------------------------------------------------------------------

    def _name(self, key: str) -> str:
        name = join_under(self._prefix, key)
        if len(name) > MAX_BLOB_NAME:
            raise MlflowError.invalid(INVALID_PATH)
        return name

    def _dir_prefix(self, key: str) -> str:
        name = self._name(key)
        return f"{name}/" if name else ""

    def _blob(self, key: str) -> BlobClient:
        return self._container.get_blob_client(self._name(key))

    def _marker(self, upload_id: str) -> BlobClient:
        return self._container.get_blob_client(self._name(f"{MULTIPART_DIR}/{upload_id}"))

    async def _ensure_container(self) -> None:
        if self._container_ready:
            return
        async with self._container_lock:
            if self._container_ready:
                return
            with _azure_errors():
                try:
                    await self._container.create_container()
                except ResourceExistsError:
                    pass
            self._container_ready = True

    # --- staging -------------------------------------------------------------------------------

    async def _stage(
        self, blob: BlobClient, blocks: AsyncIterator[bytes], token: str, part_number: int, attempt: str,
        hasher: "hashlib._Hash | None" = None,
    ) -> tuple[list[str], int]:
        """Stage every block of a stream; returns the block ids in order and the byte count.

        Up to `stage_concurrency` blocks are in flight while the next one is read, so memory
        stays at a few blocks and the body's arrival overlaps the round trips to Azure.
        """
        ids: list[str] = []
        size = 0
        in_flight: set[asyncio.Task[None]] = set()

        async def stage(block_id: str, block: bytes) -> None:
            with _azure_errors():
                try:
                    await blob.stage_block(block_id, block, length=len(block))
                except ResourceNotFoundError as exc:
                    # The container went away under us: make it again on the client's retry.
                    self._container_ready = False
                    raise MlflowError.unavailable("Artifact container is missing; retry.") from exc

        try:
            async with contextlib.aclosing(blocks):
                async for block in blocks:
                    if len(ids) >= MAX_BLOCKS:
                        raise MlflowError.invalid(
                            f"Artifact exceeds the maximum size of {MAX_BLOCKS * self._block_size} bytes."
                        )
                    if hasher is not None:
                        hasher.update(block)
                    if len(in_flight) >= self._stage_concurrency:
                        done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                        for task in done:
                            task.result()
                    block_id = _block_id(token, part_number, attempt, len(ids))
                    in_flight.add(asyncio.create_task(stage(block_id, block)))
                    ids.append(block_id)
                    size += len(block)
            while in_flight:
                done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    task.result()
        except BaseException:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
            raise
        return ids, size

    # --- plain objects -------------------------------------------------------------------------

    async def put(self, path: str, chunks: AsyncIterator[bytes], *, max_bytes: int | None = None) -> PutResult:
        key = storage_key(path)
        await self._ensure_container()
        blob = self._blob(key)
        hasher = hashlib.sha256()
        blocks = rechunk(chunks, self._block_size, max_bytes)
        ids, size = await self._stage(blob, blocks, uuid.uuid4().hex, _PUT_PART, _PUT_ATTEMPT, hasher)
        digest = hasher.hexdigest()
        with _azure_errors():
            try:
                await blob.commit_block_list(ids, metadata={"sha256": digest})
            except HttpResponseError as exc:
                if exc.error_code != "InvalidBlockList":
                    raise
                # Another upload to the same blob committed first and dropped our blocks.
                raise MlflowError.unavailable(f"Concurrent upload to '{key}'; retry.") from exc
        return PutResult(size=size, sha256=digest)

    async def open(self, path: str) -> tuple[int, AsyncIterator[bytes]]:
        key = storage_key(path)
        with _azure_errors():
            try:
                downloader = await self._blob(key).download_blob()
            except ResourceNotFoundError:
                raise no_such_artifact(key) from None
        return downloader.size, _chunks(downloader.chunks())

    async def list(self, dir_path: str) -> list[FileInfo]:
        key = storage_key(dir_path, allow_root=True)
        prefix = self._dir_prefix(key)
        infos: list[FileInfo] = []
        with _azure_errors():
            try:
                async for item in self._container.walk_blobs(name_starts_with=prefix, delimiter="/"):
                    rel = item.name[len(prefix):].rstrip("/")
                    if not rel or rel.startswith(RESERVED_PREFIX):
                        continue
                    if isinstance(item, BlobProperties):
                        infos.append(FileInfo(rel, False, item.size))
                    else:
                        infos.append(FileInfo(rel, True))
            except ResourceNotFoundError:
                return []  # no container yet: nothing stored
        return sorted(infos, key=lambda f: f.path)

    async def delete(self, path: str) -> None:
        key = storage_key(path)
        name = self._name(key)
        with _azure_errors():
            try:
                names = [name]
                async for child in self._container.list_blob_names(name_starts_with=f"{name}/"):
                    names.append(child)
            except ResourceNotFoundError:
                return
            await self._delete_blobs(names)

    async def _delete_blobs(self, names: list[str]) -> None:
        gate = asyncio.Semaphore(_DELETE_CONCURRENCY)

        async def one(name: str) -> None:
            async with gate:
                try:
                    await self._container.delete_blob(name, delete_snapshots="include")
                except ResourceNotFoundError:
                    pass

        await asyncio.gather(*(one(n) for n in names))

    # --- multipart -----------------------------------------------------------------------------

    async def _check_upload(self, key: str, upload_id: str) -> None:
        check_upload_id(key, upload_id)
        with _azure_errors():
            try:
                props = await self._marker(upload_id).get_blob_properties()
            except ResourceNotFoundError:
                raise no_such_upload(key, upload_id) from None
        if props.metadata.get("target") != quote_key(key):
            raise no_such_upload(key, upload_id)

    async def create_multipart(self, path: str) -> str:
        key = storage_key(path)
        await self._ensure_container()
        upload_id = uuid.uuid4().hex
        with _azure_errors():
            await self._marker(upload_id).upload_blob(b"", metadata={"target": quote_key(key)})
        return upload_id

    async def upload_part(
        self, path: str, upload_id: str, part_number: int, chunks: AsyncIterator[bytes],
        *, max_bytes: int | None = None,
    ) -> UploadedPart:
        key = storage_key(path)
        check_part_number(part_number)
        await self._check_upload(key, upload_id)
        attempt = secrets.token_hex(4)
        blocks = rechunk(chunks, self._block_size, max_bytes)
        ids, size = await self._stage(self._blob(key), blocks, upload_id, part_number, attempt)
        return UploadedPart(part_number=part_number, etag=f"{attempt}-{len(ids)}", size=size)

    async def complete_multipart(self, path: str, upload_id: str, parts: Sequence[PartRef]) -> PutResult:
        key = storage_key(path)
        check_parts(parts)
        await self._check_upload(key, upload_id)
        ids: list[str] = []
        for part in parts:
            match = _ETAG_RE.match(part.etag)
            if not match:
                raise _parts_missing(upload_id)
            attempt, count = match.group(1), int(match.group(2))
            ids.extend(_block_id(upload_id, part.part_number, attempt, i) for i in range(count))
        if len(ids) > MAX_BLOCKS:
            raise MlflowError.invalid(f"Artifact exceeds the maximum size of {MAX_BLOCKS * self._block_size} bytes.")
        blob = self._blob(key)
        with _azure_errors():
            try:
                await blob.commit_block_list(ids)
            except HttpResponseError as exc:
                if exc.error_code != "InvalidBlockList":
                    raise
                raise _parts_missing(upload_id) from exc
            with contextlib.suppress(ResourceNotFoundError):
                await self._marker(upload_id).delete_blob()
            props = await blob.get_blob_properties()
        return PutResult(size=props.size, sha256=None)

    async def abort_multipart(self, path: str, upload_id: str) -> None:
        # Staged blocks cannot be deleted without committing them; Azure drops them within 7 days.
        key = storage_key(path)
        try:
            await self._check_upload(key, upload_id)
        except MlflowError as err:
            if err.http_status == 404:
                return  # unknown, finished or already aborted: fine
            raise
        with _azure_errors():
            with contextlib.suppress(ResourceNotFoundError):
                await self._marker(upload_id).delete_blob()

    # --- lifecycle -----------------------------------------------------------------------------

    async def check(self) -> None:
        await self._ensure_container()
        with _azure_errors():
            await self._container.get_container_properties()

    async def close(self) -> None:
        await self._service.close()


def _parts_missing(upload_id: str) -> MlflowError:
    return MlflowError.invalid(
        f"Some parts of multipart upload '{upload_id}' were not uploaded or their etags do not match."
    )


async def _chunks(source: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    with _azure_errors():
        async for chunk in source:
            yield chunk
