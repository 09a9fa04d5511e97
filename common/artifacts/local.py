"""Artifacts as files under one directory (standalone mode, laptops, tests).

File I/O runs in worker threads (`asyncio.to_thread`), one block at a time. An upload is written
to `.gf-tmp-<random>` next to its target, fsynced, then renamed over it (`os.replace`), so readers
see the old file or the new one, never a part. Multipart parts wait in `<root>/.gf-tmp-mpu/<id>/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import secrets
import shutil
import stat
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import BinaryIO

from common.errors import MlflowError
from common.artifacts.paths import INVALID_PATH, is_within
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
    missing_part,
    no_such_artifact,
    no_such_upload,
    rechunk,
    storage_key,
)

BLOCK_SIZE = 1024 * 1024
_TARGET_FILE = "target"  # inside a multipart dir: the key the upload is for
_ETAG_LEN = 8
# A full or read-only disk is an outage the client should retry, not a bug.
_UNAVAILABLE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO}


def _unavailable(exc: OSError) -> MlflowError:
    return MlflowError.unavailable(f"Artifact storage is unavailable: {exc.strerror or exc}")


@contextlib.contextmanager
def _os_errors(key: str):
    try:
        yield
    except MlflowError:
        raise
    except (NotADirectoryError, IsADirectoryError, FileExistsError):
        raise MlflowError.invalid(f"{INVALID_PATH}: '{key}' conflicts with an existing file or directory") from None
    except OSError as exc:
        if exc.errno in _UNAVAILABLE_ERRNOS:
            raise _unavailable(exc) from exc
        raise


class _FileChunks:
    """Reads an open file in blocks from a worker thread; closes it at the end or on aclose()."""

    def __init__(self, fh: BinaryIO, block_size: int):
        self._fh = fh
        self._block_size = block_size

    def __aiter__(self) -> "_FileChunks":
        return self

    async def __anext__(self) -> bytes:
        if self._fh.closed:
            raise StopAsyncIteration
        data = await asyncio.to_thread(self._fh.read, self._block_size)
        if not data:
            self._fh.close()
            raise StopAsyncIteration
        return data

    async def aclose(self) -> None:
        self._fh.close()


class _TempFile:
    """A `.gf-tmp-*` file beside its target that becomes the target on `commit`."""

    def __init__(self, root: str, target: str):
        self.root = root
        self.target = target
        self.parent = os.path.dirname(target)
        self.created: list[str] = []  # directories made for it, deepest first
        self.path = ""
        self.fh: BinaryIO | None = None
        self.hasher = hashlib.sha256()
        self.size = 0

    def open(self) -> None:
        for attempt in range(3):
            try:
                self._make_parents()
                self.path = os.path.join(self.parent, f"{RESERVED_PREFIX}{uuid.uuid4().hex}")
                self.fh = open(self.path, "xb")
                return
            except FileNotFoundError:
                # A concurrent delete pruned the (still empty) parent between makedirs and open.
                if attempt == 2:
                    raise

    def _make_parents(self) -> None:
        missing: list[str] = []
        d = self.parent
        while d != self.root and not os.path.isdir(d):
            missing.append(d)
            d = os.path.dirname(d)
        os.makedirs(self.parent, exist_ok=True)
        self.created = [m for m in missing if m not in self.created] + self.created

    def write(self, block: bytes) -> None:
        assert self.fh is not None
        self.hasher.update(block)  # hashlib releases the GIL for large blocks
        self.fh.write(block)
        self.size += len(block)

    def commit(self) -> None:
        assert self.fh is not None
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        os.replace(self.path, self.target)
        _fsync_dir(self.parent)

    def discard(self) -> None:
        if self.fh is not None:
            self.fh.close()
        if self.path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        for d in self.created:
            try:
                os.rmdir(d)
            except OSError:
                break  # something else lives there now


def _fsync_dir(path: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class LocalArtifactStore:
    def __init__(self, root: str, *, block_size: int = BLOCK_SIZE):
        self.root = os.path.abspath(root)
        self._block_size = block_size

    def __repr__(self) -> str:
        return f"LocalArtifactStore({self.root!r})"

    # --- paths ---------------------------------------------------------------------------------

    def _file_path(self, key: str) -> str:
        """Absolute path of a key, refusing one that a symlink inside the root leads outside."""
        full = os.path.join(self.root, *key.split("/")) if key else self.root
        if not is_within(os.path.realpath(self.root), os.path.realpath(full)):
            raise MlflowError.invalid(INVALID_PATH)
        return full

    def _upload_dir(self, upload_id: str) -> str:
        return os.path.join(self.root, MULTIPART_DIR, upload_id)

    def _prune(self, directory: str) -> None:
        """Remove directories left empty, up to the root (an object store has no empty dirs)."""
        while directory != self.root and is_within(self.root, directory):
            try:
                os.rmdir(directory)
            except OSError:
                return
            directory = os.path.dirname(directory)

    # --- plain objects -------------------------------------------------------------------------

    async def _write(self, key: str, target: str, blocks: AsyncIterator[bytes]) -> PutResult:
        tmp = _TempFile(self.root, target)
        try:
            with _os_errors(key):
                await asyncio.to_thread(tmp.open)
                async with contextlib.aclosing(blocks):
                    async for block in blocks:
                        await asyncio.to_thread(tmp.write, block)
                await asyncio.to_thread(tmp.commit)
        except BaseException:
            tmp.discard()  # quick syscalls; done inline so cancellation cannot skip them
            raise
        return PutResult(size=tmp.size, sha256=tmp.hasher.hexdigest())

    async def put(self, path: str, chunks: AsyncIterator[bytes], *, max_bytes: int | None = None) -> PutResult:
        key = storage_key(path)
        target = await asyncio.to_thread(self._file_path, key)
        return await self._write(key, target, rechunk(chunks, self._block_size, max_bytes))

    async def open(self, path: str) -> tuple[int, AsyncIterator[bytes]]:
        key = storage_key(path)

        def _open() -> tuple[int, BinaryIO]:
            try:
                fh = open(self._file_path(key), "rb")
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                raise no_such_artifact(key) from None
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                fh.close()
                raise no_such_artifact(key)
            return st.st_size, fh

        size, fh = await asyncio.to_thread(_open)
        return size, _FileChunks(fh, self._block_size)

    async def list(self, dir_path: str) -> list[FileInfo]:
        key = storage_key(dir_path, allow_root=True)

        def _list() -> list[FileInfo]:
            try:
                entries = os.scandir(self._file_path(key))
            except (FileNotFoundError, NotADirectoryError):
                return []
            infos: list[FileInfo] = []
            with entries:
                for entry in entries:
                    if entry.name.startswith(RESERVED_PREFIX):
                        continue
                    try:
                        if entry.is_dir():
                            infos.append(FileInfo(entry.name, True))
                        else:
                            infos.append(FileInfo(entry.name, False, entry.stat().st_size))
                    except FileNotFoundError:
                        continue  # deleted while we looked
            return sorted(infos, key=lambda f: f.path)

        return await asyncio.to_thread(_list)

    async def delete(self, path: str) -> None:
        key = storage_key(path)

        def _delete() -> None:
            full = self._file_path(key)
            try:
                st = os.lstat(full)
            except (FileNotFoundError, NotADirectoryError):
                return
            if stat.S_ISDIR(st.st_mode):
                with contextlib.suppress(FileNotFoundError):
                    shutil.rmtree(full)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(full)
            self._prune(os.path.dirname(full))

        with _os_errors(key):
            await asyncio.to_thread(_delete)

    # --- multipart -----------------------------------------------------------------------------

    def _open_upload(self, key: str, upload_id: str) -> str:
        """The directory of an upload that exists and is for `key`."""
        check_upload_id(key, upload_id)
        directory = self._upload_dir(upload_id)
        try:
            with open(os.path.join(directory, _TARGET_FILE), encoding="utf-8") as fh:
                target = fh.read()
        except (FileNotFoundError, NotADirectoryError):
            raise no_such_upload(key, upload_id) from None
        if target != key:
            raise no_such_upload(key, upload_id)
        return directory

    async def create_multipart(self, path: str) -> str:
        key = storage_key(path)
        upload_id = uuid.uuid4().hex

        def _create() -> None:
            self._file_path(key)  # refuse a symlinked escape now rather than at completion
            directory = self._upload_dir(upload_id)
            os.makedirs(directory)
            with open(os.path.join(directory, _TARGET_FILE), "w", encoding="utf-8") as fh:
                fh.write(key)

        with _os_errors(key):
            await asyncio.to_thread(_create)
        return upload_id

    async def upload_part(
        self, path: str, upload_id: str, part_number: int, chunks: AsyncIterator[bytes],
        *, max_bytes: int | None = None,
    ) -> UploadedPart:
        key = storage_key(path)
        check_part_number(part_number)
        directory = await asyncio.to_thread(self._open_upload, key, upload_id)
        etag = secrets.token_hex(_ETAG_LEN // 2)
        part_path = os.path.join(directory, _part_name(part_number, etag))
        blocks = rechunk(chunks, self._block_size, max_bytes)
        size = 0
        fh: BinaryIO | None = None
        try:
            with _os_errors(key):
                fh = await asyncio.to_thread(open, part_path, "xb")
                async with contextlib.aclosing(blocks):
                    async for block in blocks:
                        await asyncio.to_thread(fh.write, block)
                        size += len(block)
                await asyncio.to_thread(_flush_and_close, fh)
        except BaseException:
            if fh is not None:
                fh.close()
            with contextlib.suppress(OSError):
                os.unlink(part_path)
            raise
        return UploadedPart(part_number=part_number, etag=etag, size=size)

    async def complete_multipart(self, path: str, upload_id: str, parts: Sequence[PartRef]) -> PutResult:
        key = storage_key(path)
        check_parts(parts)

        def _prepare() -> tuple[str, str, list[str]]:
            directory = self._open_upload(key, upload_id)
            files = []
            for part in parts:
                part_path = os.path.join(directory, _part_name(part.part_number, part.etag))
                if len(part.etag) != _ETAG_LEN or not os.path.isfile(part_path):
                    raise missing_part(upload_id, part.part_number)
                files.append(part_path)
            return directory, self._file_path(key), files

        directory, target, files = await asyncio.to_thread(_prepare)
        result = await self._write(key, target, self._read_files(files))
        await asyncio.to_thread(shutil.rmtree, directory, True)
        return result

    async def _read_files(self, files: list[str]) -> AsyncIterator[bytes]:
        for name in files:
            fh = await asyncio.to_thread(open, name, "rb")
            try:
                while block := await asyncio.to_thread(fh.read, self._block_size):
                    yield block
            finally:
                fh.close()

    async def abort_multipart(self, path: str, upload_id: str) -> None:
        key = storage_key(path)

        def _abort() -> None:
            try:
                directory = self._open_upload(key, upload_id)
            except MlflowError:
                return  # unknown, finished or already aborted (or another path's): nothing to do
            shutil.rmtree(directory, ignore_errors=True)

        await asyncio.to_thread(_abort)

    # --- lifecycle -----------------------------------------------------------------------------

    async def check(self) -> None:
        def _check() -> None:
            os.makedirs(self.root, exist_ok=True)
            if not os.access(self.root, os.W_OK | os.X_OK):
                raise MlflowError.unavailable(f"Artifact root {self.root} is not writable")

        with _os_errors(""):
            await asyncio.to_thread(_check)

    async def close(self) -> None:
        return None


def _part_name(part_number: int, etag: str) -> str:
    # etag comes from the client on completion: keep it to hex so it cannot name another file
    safe = etag if all(c in "0123456789abcdef" for c in etag) else "invalid"
    return f"part-{part_number:05d}-{safe}"


def _flush_and_close(fh: BinaryIO) -> None:
    fh.flush()
    os.fsync(fh.fileno())
    fh.close()
