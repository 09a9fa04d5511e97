"""The artifact store contract that ingest (uploads, deletes, multipart) and query (downloads,
listings) call, the shapes it returns, and `open_store` to pick an implementation from settings.

Paths given to a store are client paths relative to the store root (the part after
`/api/2.0/mlflow-artifacts/artifacts/`); every method checks them again with
`storage_key`, so a store is safe even if a caller forgets.

Both implementations behave like an object store:
* an object appears whole or not at all (an upload that fails or is too large leaves nothing);
* directories exist only while something is in them (the local store prunes emptied ones);
* names starting with `.gf-tmp-` are the store's own (in-flight uploads) and are refused to
  clients and hidden from listings.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from typing import Protocol, runtime_checkable

import msgspec

from common.errors import MlflowError
from common.artifacts.paths import INVALID_PATH, safe_relative_path

RESERVED_PREFIX = ".gf-tmp-"
MULTIPART_DIR = RESERVED_PREFIX + "mpu"  # at the store root: one entry per open multipart upload
MAX_PART_NUMBER = 10_000  # S3's limit, which the MLflow client's part numbering assumes

UPLOAD_ID_RE = re.compile(r"^[0-9a-f]{32}$")


class PutResult(msgspec.Struct, frozen=True):
    size: int
    sha256: str | None = None  # hex; None where it would need a second read (Azure multipart)


class FileInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    """One entry of a listing, in MLflow's wire shape (`file_size` absent for directories)."""

    path: str  # relative to the listed directory
    is_dir: bool
    file_size: int | None = None


class PartRef(msgspec.Struct, frozen=True):
    """A part as the client names it when completing a multipart upload."""

    part_number: int
    etag: str


class UploadedPart(PartRef, frozen=True):
    size: int


class ArtifactTooLarge(MlflowError):
    def __init__(self, max_bytes: int):
        super().__init__(f"Artifact exceeds the maximum size of {max_bytes} bytes.")
        self.max_bytes = max_bytes


@runtime_checkable
class ArtifactStore(Protocol):
    async def put(self, path: str, chunks: AsyncIterator[bytes], *, max_bytes: int | None = None) -> PutResult:
        """Stream `chunks` to `path`, replacing what was there; visible only once complete."""
        ...

    async def open(self, path: str) -> tuple[int, AsyncIterator[bytes]]:
        """Size and content of a file; 404 RESOURCE_DOES_NOT_EXIST when there is none.

        Close the iterator (`aclose()`, or `contextlib.aclosing`) if not read to the end.
        """
        ...

    async def list(self, dir_path: str) -> list[FileInfo]:
        """Immediate children of `dir_path` sorted by name; `[]` for a file or a missing path."""
        ...

    async def delete(self, path: str) -> None:
        """Delete a file or a whole directory; nothing there is not an error."""
        ...

    async def create_multipart(self, path: str) -> str:
        """Start a multipart upload to `path`; returns its upload id."""
        ...

    async def upload_part(
        self, path: str, upload_id: str, part_number: int, chunks: AsyncIterator[bytes],
        *, max_bytes: int | None = None,
    ) -> UploadedPart:
        """Store one part (1..10000); uploading a part number again replaces it at completion."""
        ...

    async def complete_multipart(self, path: str, upload_id: str, parts: Sequence[PartRef]) -> PutResult:
        """Assemble `parts` (ascending part numbers, etags from `upload_part`) into `path`."""
        ...

    async def abort_multipart(self, path: str, upload_id: str) -> None:
        """Forget an upload; aborting an unknown or finished upload is not an error."""
        ...

    async def check(self) -> None:
        """Raise if the store cannot be written (readiness probe)."""
        ...

    async def close(self) -> None: ...


# --- helpers both implementations use ----------------------------------------------------------


def storage_key(path: str, *, allow_root: bool = False) -> str:
    """A client path as a store key: safe, normalised, not the root (unless allowed), not ours."""
    key = safe_relative_path(path)
    if not key and not allow_root:
        raise MlflowError.invalid(INVALID_PATH)
    if any(segment.startswith(RESERVED_PREFIX) for segment in key.split("/")):
        raise MlflowError.invalid(INVALID_PATH)
    return key


def no_such_artifact(key: str) -> MlflowError:
    return MlflowError.not_found(f"No such artifact: '{key}'")


def no_such_upload(key: str, upload_id: str) -> MlflowError:
    return MlflowError.not_found(f"Multipart upload '{upload_id}' for '{key}' does not exist.")


def check_upload_id(key: str, upload_id: str) -> None:
    if not isinstance(upload_id, str) or not UPLOAD_ID_RE.match(upload_id):
        raise no_such_upload(key, str(upload_id))


def check_part_number(part_number: int) -> None:
    if isinstance(part_number, bool) or not isinstance(part_number, int) or not 1 <= part_number <= MAX_PART_NUMBER:
        raise MlflowError.invalid(
            f"Invalid value {part_number!r} for parameter 'part_number' supplied:"
            f" must be an integer from 1 to {MAX_PART_NUMBER}."
        )


def check_parts(parts: Sequence[PartRef]) -> None:
    """Parts to complete: at least one, part numbers valid and strictly ascending (like S3)."""
    if not parts:
        raise MlflowError.invalid("Missing value for required parameter 'parts'.")
    previous = 0
    for part in parts:
        check_part_number(part.part_number)
        if part.part_number <= previous:
            raise MlflowError.invalid("Parts must be listed once each, in ascending order of part_number.")
        previous = part.part_number


def missing_part(upload_id: str, part_number: int) -> MlflowError:
    return MlflowError.invalid(
        f"Part {part_number} of multipart upload '{upload_id}' was not uploaded or its etag does not match."
    )


def quote_key(key: str) -> str:
    """A key as ASCII (blob metadata values must be ASCII)."""
    return urllib.parse.quote(key, safe="/")


async def rechunk(
    chunks: AsyncIterator[bytes], block_size: int, max_bytes: int | None = None,
) -> AsyncIterator[bytes]:
    """Regroup a byte stream into blocks of exactly `block_size` (the last may be shorter).

    Holds at most one block's worth of chunks and joins them once; raises ArtifactTooLarge as
    soon as the stream passes `max_bytes`, before buffering the excess. Blocks are `bytes` on
    purpose: aiohttp slices a `bytearray` body before sending it, copying every block again.
    """
    pending: list[bytes] = []
    filled = 0
    total = 0
    async for chunk in chunks:
        if not chunk:
            continue
        total += len(chunk)
        if max_bytes is not None and total > max_bytes:
            raise ArtifactTooLarge(max_bytes)
        if filled + len(chunk) < block_size:
            pending.append(bytes(chunk))
            filled += len(chunk)
            continue
        with memoryview(chunk) as view:
            offset = 0
            while len(view) - offset >= block_size - filled:
                take = block_size - filled
                if pending:
                    pending.append(bytes(view[offset:offset + take]))
                    block = b"".join(pending)
                    pending = []
                else:
                    block = bytes(chunk) if take == len(chunk) else bytes(view[offset:offset + take])
                offset += take
                filled = 0
                yield block
            if offset < len(view):
                pending.append(bytes(view[offset:]))
                filled = len(view) - offset
    if pending:
        yield b"".join(pending)


# --- choosing a store from settings ------------------------------------------------------------

_CONTAINER_RE = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")


def _store_prefix(raw: str, artifact_root: str) -> str:
    try:
        return safe_relative_path(urllib.parse.unquote(raw.strip("/")))
    except MlflowError:
        raise ValueError(f"artifact root {artifact_root!r}: invalid path prefix") from None


def open_store(artifact_root: str, azure_connection_string: str | None = None) -> ArtifactStore:
    """The store for GENESIS_FLOW_ARTIFACT_ROOT. No I/O here; the first use connects.

    `file:///abs/path`, `file:relative/path` or a bare path -> local files;
    `azure://container/prefix` (also MLflow's `wasbs://container@account.blob.core.windows.net/prefix`)
    -> Azure Blob through `azure_connection_string` (container created at first write).
    Raises ValueError for a root it cannot use.
    """
    root = artifact_root.strip()
    parts = urllib.parse.urlsplit(root)
    scheme = parts.scheme.lower()
    if scheme in ("", "file"):
        from common.artifacts.local import LocalArtifactStore

        if scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise ValueError(f"artifact root {artifact_root!r}: file URIs must not name a host")
            path = urllib.parse.unquote(parts.path)
        else:
            path = root
        if not path:
            raise ValueError(f"artifact root {artifact_root!r}: empty path")
        return LocalArtifactStore(path)
    if scheme in ("azure", "wasbs", "wasb"):
        from common.artifacts.azure import AzureArtifactStore

        container = parts.netloc.split("@", 1)[0] if scheme != "azure" else parts.netloc
        if not _CONTAINER_RE.match(container):
            raise ValueError(f"artifact root {artifact_root!r}: {container!r} is not a valid Azure container name")
        if not azure_connection_string:
            raise ValueError(f"artifact root {artifact_root!r} needs AZURE_STORAGE_CONNECTION_STRING")
        return AzureArtifactStore(azure_connection_string, container, _store_prefix(parts.path, artifact_root))
    raise ValueError(
        f"artifact root {artifact_root!r}: unsupported scheme {parts.scheme!r}"
        " (use file:///path or azure://container/prefix)"
    )
