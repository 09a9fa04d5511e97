"""Copying artifacts between stores (the configured one, a backup directory, another URI), streamed
block by block through the `ArtifactStore` contract with a SHA-256 computed on the way.

A backup names where its artifact bytes live by a *location*: a store URI (`azure://container/
prefix`, `file:///path`) or a path relative to the backup directory (`artifacts`,
`../backup-0101/artifacts` for files an incremental backup did not copy again). `open_location`
turns either into a store.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from common.artifacts import ArtifactStore, open_store
from common.artifacts.local import LocalArtifactStore
from common.errors import MlflowError

COPY_CONCURRENCY = 8
_RETRIES = 3  # a file replaced while it was read (Azure: etag changed) is read again


class ChecksumMismatch(Exception):
    pass


def is_uri(location: str) -> bool:
    return bool(urllib.parse.urlsplit(location).scheme) and not os.path.isabs(location)


def open_location(location: str, backup_dir: Path, azure_connection_string: str | None) -> ArtifactStore:
    if is_uri(location):
        return open_store(location, azure_connection_string)
    return LocalArtifactStore(str((backup_dir / location).resolve()))


def relocate(location: str, from_dir: Path, to_dir: Path) -> str:
    """A location written relative to `from_dir`, as seen from `to_dir`."""
    if is_uri(location):
        return location
    return os.path.relpath((from_dir / location).resolve(), to_dir.resolve())


async def walk(store: ArtifactStore, directory: str = "") -> AsyncIterator[tuple[str, int]]:
    """Every file under `directory` as (path, size), depth first in name order."""
    for entry in await store.list(directory):
        path = f"{directory}/{entry.path}" if directory else entry.path
        if entry.is_dir:
            async for item in walk(store, path):
                yield item
        else:
            yield path, entry.file_size or 0


async def _hashed(chunks: AsyncIterator[bytes], sha: Any, counter: list[int]) -> AsyncIterator[bytes]:
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            sha.update(chunk)
            counter[0] += len(chunk)
            yield chunk


async def copy_file(source: ArtifactStore, target: ArtifactStore, path: str) -> tuple[int, str] | None:
    """Stream one file; returns (size, sha256) of what was copied, None if it no longer exists."""
    for attempt in range(_RETRIES):
        try:
            _, chunks = await source.open(path)
        except MlflowError as err:
            if err.http_status == 404:
                return None  # deleted after the backup began
            raise
        sha, counter = hashlib.sha256(), [0]
        try:
            result = await target.put(path, _hashed(chunks, sha, counter))
        except Exception:
            if attempt == _RETRIES - 1:
                raise
            await asyncio.sleep(0.5 * (attempt + 1))
            continue
        digest = sha.hexdigest()
        if result.sha256 is not None and result.sha256 != digest:
            raise ChecksumMismatch(f"{path}: the target stored {result.sha256}, the source sent {digest}")
        return counter[0], digest
    raise AssertionError("unreachable")


async def hash_file(store: ArtifactStore, path: str) -> tuple[int, str] | None:
    """(size, sha256) of a stored file, read to the end; None if it does not exist."""
    try:
        _, chunks = await store.open(path)
    except MlflowError as err:
        if err.http_status == 404:
            return None
        raise
    sha, size = hashlib.sha256(), 0
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest()


async def for_each(items: AsyncIterator[Any], work: Callable[[Any], Awaitable[None]],
                   concurrency: int = COPY_CONCURRENCY) -> None:
    """Run `work` on every item with bounded concurrency; the first failure stops the rest."""
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=concurrency * 4)
    done = object()

    async def worker() -> None:
        while (item := await queue.get()) is not done:
            await work(item)

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        async for item in items:
            await _put_or_fail(queue, item, workers)
        for _ in workers:
            await _put_or_fail(queue, done, workers)
        await asyncio.gather(*workers)
    finally:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


async def _put_or_fail(queue: asyncio.Queue[Any], item: Any, workers: list[asyncio.Task[None]]) -> None:
    """Queue an item, unless a worker already failed (then raise its error instead of waiting)."""
    put = asyncio.ensure_future(queue.put(item))
    while not put.done():
        await asyncio.wait([put, *workers], return_when=asyncio.FIRST_COMPLETED)
        for w in workers:
            if w.done() and not w.cancelled() and w.exception() is not None:
                put.cancel()
                raise w.exception()  # type: ignore[misc]


async def iterate(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item
