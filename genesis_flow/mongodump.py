"""MongoDB collections in mongodump's directory format, written and read with PyMongo's `bson`.

    <root>/<db>/<collection>.bson           the documents, concatenated BSON, in `_id` order
    <root>/<db>/<collection>.metadata.json  {"options":{...},"indexes":[...],"uuid":"<hex>",
                                             "collectionName":"...","type":"collection"}

The metadata file is canonical extended JSON, as mongodump 100.x writes it (index specs exactly as
`listIndexes` returns them, the collection UUID as 32 hex digits), so `mongorestore --uri ...
<root>` loads a Genesis-Flow backup, and `genesis-flow restore` reads a mongodump of ours.

A collection's checksum is the SHA-256 of its `.bson` file: of each document's BSON bytes, as
MongoDB returns them, in `_id` order. Recomputed from a database (`database_digest`) it must be the
same after a restore, which is how a restore proves itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bson
from bson import json_util
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from bson.son import SON
from pymongo.asynchronous.database import AsyncDatabase

RAW = CodecOptions(document_class=RawBSONDocument)
_FLUSH_BYTES = 4 * 1024 * 1024
_INSERT_BATCH_BYTES = 8 * 1024 * 1024
_INSERT_BATCH_DOCS = 1000
# Index fields that describe an index rather than define it: createIndexes refuses or ignores them.
_INDEX_NOISE = ("ns", "v", "background")


@dataclass
class Digest:
    """Count, size and SHA-256 of a stream of BSON documents."""

    documents: int = 0
    bytes: int = 0
    _sha: Any = field(default_factory=hashlib.sha256)

    def add(self, raw: bytes) -> None:
        self.documents += 1
        self.bytes += len(raw)
        self._sha.update(raw)

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    def summary(self) -> dict[str, Any]:
        return {"documents": self.documents, "bytes": self.bytes, "sha256": self.sha256}


def bson_path(directory: Path, collection: str) -> Path:
    return directory / f"{collection}.bson"


def metadata_path(directory: Path, collection: str) -> Path:
    return directory / f"{collection}.metadata.json"


def metadata_json(collection: str, info: dict[str, Any], indexes: list[SON]) -> bytes:
    """mongodump's metadata document for a collection (`info`: its `listCollections` entry)."""
    meta = SON([("options", SON(info.get("options") or {})), ("indexes", indexes)])
    uuid = (info.get("info") or {}).get("uuid")
    if uuid is not None:
        meta["uuid"] = bytes(uuid).hex()
    meta["collectionName"] = collection
    meta["type"] = info.get("type", "collection")
    return json_util.dumps(meta, json_options=json_util.CANONICAL_JSON_OPTIONS, separators=(",", ":")).encode()


def read_metadata(path: Path) -> dict[str, Any]:
    return json_util.loads(path.read_text(encoding="utf-8"))


class _BufferedFile:
    """A file written from the event loop in large blocks by a worker thread."""

    def __init__(self, path: Path):
        self._fh = open(path, "xb")  # noqa: SIM115 - closed by close()
        self._pending: list[bytes] = []
        self._size = 0

    async def write(self, data: bytes) -> None:
        self._pending.append(data)
        self._size += len(data)
        if self._size >= _FLUSH_BYTES:
            await self.flush()

    async def flush(self) -> None:
        if self._pending:
            block, self._pending, self._size = b"".join(self._pending), [], 0
            await asyncio.to_thread(self._fh.write, block)

    async def close(self) -> None:
        await self.flush()
        await asyncio.to_thread(_fsync_close, self._fh)


def _fsync_close(fh: Any) -> None:
    fh.flush()
    os.fsync(fh.fileno())
    fh.close()


async def dump_collection(db: AsyncDatabase, info: dict[str, Any], directory: Path,
                          on_document: Callable[[RawBSONDocument], None] | None = None) -> dict[str, Any]:
    """Write one collection's `.bson` and `.metadata.json`; returns its manifest entry."""
    name = info["name"]
    collection = db.get_collection(name, codec_options=RAW)
    indexes = [SON(ix) async for ix in await db[name].list_indexes()]
    meta = metadata_json(name, info, indexes)
    await asyncio.to_thread(metadata_path(directory, name).write_bytes, meta)
    digest = Digest()
    out = _BufferedFile(bson_path(directory, name))
    try:
        async for doc in collection.find({}, sort=[("_id", 1)], batch_size=1000):
            raw = doc.raw
            digest.add(raw)
            await out.write(raw)
            if on_document is not None:
                on_document(doc)
    finally:
        await out.close()
    return {**digest.summary(), "metadata_sha256": hashlib.sha256(meta).hexdigest(),
            "indexes": [ix["name"] for ix in indexes]}


def iter_documents(path: Path) -> Iterator[RawBSONDocument]:
    """The documents of a `.bson` file; raises bson.InvalidBSON on a truncated or damaged file."""
    with open(path, "rb") as fh:
        yield from bson.decode_file_iter(fh, codec_options=RAW)


def file_digest(path: Path, on_document: Callable[[RawBSONDocument], None] | None = None) -> Digest:
    """Digest of a `.bson` file, document by document (so damage inside a document shows too)."""
    digest = Digest()
    for doc in iter_documents(path):
        digest.add(doc.raw)
        if on_document is not None:
            on_document(doc)
    return digest


async def database_digest(db: AsyncDatabase, name: str,
                          on_document: Callable[[RawBSONDocument], None] | None = None) -> Digest:
    """The same digest computed from a live collection (`_id` order, bytes as MongoDB returns them)."""
    digest = Digest()
    async for doc in db.get_collection(name, codec_options=RAW).find({}, sort=[("_id", 1)], batch_size=1000):
        digest.add(doc.raw)
        if on_document is not None:
            on_document(doc)
    return digest


def _next_batch(documents: Iterator[RawBSONDocument]) -> list[RawBSONDocument]:
    batch: list[RawBSONDocument] = []
    size = 0
    for doc in documents:
        batch.append(doc)
        size += len(doc.raw)
        if len(batch) >= _INSERT_BATCH_DOCS or size >= _INSERT_BATCH_BYTES:
            break
    return batch


def index_specs(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The secondary indexes of a metadata document, as createIndexes takes them."""
    return [{k: v for k, v in ix.items() if k not in _INDEX_NOISE}
            for ix in meta.get("indexes", []) if ix.get("name") != "_id_"]


async def restore_collection(db: AsyncDatabase, directory: Path, name: str) -> Digest:
    """Create `name` with its dumped options, insert its documents in file order, then build its
    indexes (after the data: one pass per index instead of one update per insert). Returns the
    digest of what was read from the file."""
    meta = read_metadata(metadata_path(directory, name))
    options = dict(meta.get("options") or {})
    if name not in await db.list_collection_names():
        await db.create_collection(name, **options)
    collection = db.get_collection(name, codec_options=RAW)
    digest = Digest()
    documents = iter_documents(bson_path(directory, name))
    try:
        # The file is parsed in a worker thread, a batch at a time (a generator may move between
        # threads as long as one thread at a time advances it).
        while batch := await asyncio.to_thread(_next_batch, documents):
            for doc in batch:
                digest.add(doc.raw)
            await collection.insert_many(batch, ordered=True)
    finally:
        documents.close()
    specs = index_specs(meta)
    if specs:
        await db.command("createIndexes", name, indexes=specs)
    return digest
