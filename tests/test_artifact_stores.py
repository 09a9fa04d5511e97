"""The artifact store contract, run against both stores: local files and Azure Blob (Azurite).

Each test gets an empty namespace of its own (a fresh directory, or a fresh blob prefix in a
container made for this module), so tests are independent and can run in any order.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator

import msgspec
import pytest

from common.artifacts import (
    ArtifactStore,
    ArtifactTooLarge,
    FileInfo,
    PartRef,
    open_store,
)
from common.artifacts.azure import AzureArtifactStore
from common.artifacts.local import LocalArtifactStore
from common.artifacts.store import rechunk
from common.errors import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST, MlflowError
from tests.services import Services, unique_name

MiB = 1024 * 1024


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def azure_container(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(connection string, container) on the test Azurite; the container is dropped afterwards."""
    services: Services = request.getfixturevalue("services")
    container = unique_name("artifacts").replace("_", "-")
    yield services.azure_connection_string, container
    from azure.storage.blob import BlobServiceClient

    with BlobServiceClient.from_connection_string(services.azure_connection_string) as client:
        with contextlib.suppress(Exception):
            client.delete_container(container)


@pytest.fixture(params=["local", "azure"])
async def store(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[ArtifactStore]:
    if request.param == "local":
        s: ArtifactStore = LocalArtifactStore(str(tmp_path / "artifacts"))
    else:
        conn, container = request.getfixturevalue("azure_container")
        s = AzureArtifactStore(conn, container, prefix=f"t/{unique_name('ns')}")
    yield s
    await s.close()


# --- helpers -----------------------------------------------------------------------------------


async def stream(data: bytes, chunk: int = 100_000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), chunk):
        yield data[i:i + chunk]


async def failing_stream(good: bytes, exc: Exception) -> AsyncIterator[bytes]:
    async for chunk in stream(good):
        yield chunk
    raise exc


async def generated(total: int, chunk: int = 256 * 1024) -> AsyncIterator[bytes]:
    """`total` bytes made on the fly (never held whole): a random pattern stamped with the offset."""
    pattern = os.urandom(chunk)
    for offset in range(0, total, chunk):
        n = min(chunk, total - offset)
        yield offset.to_bytes(8, "big") + pattern[8:n] if n > 8 else pattern[:n]


async def read_all(s: ArtifactStore, path: str) -> bytes:
    size, chunks = await s.open(path)
    data = b"".join([c async for c in chunks])
    assert len(data) == size
    return data


async def assert_missing(s: ArtifactStore, path: str) -> None:
    with pytest.raises(MlflowError) as info:
        await s.open(path)
    assert info.value.error_code == RESOURCE_DOES_NOT_EXIST
    assert info.value.http_status == 404


def names(infos: list[FileInfo]) -> list[tuple[str, bool, int | None]]:
    return [(f.path, f.is_dir, f.file_size) for f in infos]


# --- regrouping a stream into blocks (pure) ----------------------------------------------------


async def chunked(sizes: list[int]) -> AsyncIterator[bytes]:
    offset = 0
    for n in sizes:
        yield bytes((offset + i) % 251 for i in range(n))
        offset += n


@pytest.mark.parametrize(
    "sizes",
    [[], [0], [10], [16], [16, 16], [5, 0, 11, 16, 3], [40], [7] * 9, [1, 31, 16, 17, 15, 1], [15, 1, 16, 100]],
)
async def test_rechunk_makes_full_blocks_and_keeps_every_byte_in_order(sizes: list[int]):
    expected = b"".join([c async for c in chunked(sizes)])
    blocks = [b async for b in rechunk(chunked(sizes), 16)]
    assert b"".join(blocks) == expected
    assert all(len(b) == 16 for b in blocks[:-1])
    assert all(0 < len(b) <= 16 for b in blocks)
    assert all(type(b) is bytes for b in blocks)


async def test_rechunk_stops_as_soon_as_the_limit_is_passed():
    seen: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        while True:
            seen.append(1)
            yield b"x" * 10

    with pytest.raises(ArtifactTooLarge):
        async for _ in rechunk(endless(), 16, max_bytes=35):
            pass
    assert len(seen) == 4  # the fourth chunk crosses 35 bytes; nothing after it is read
    assert [b async for b in rechunk(chunked([20, 15]), 16, max_bytes=35)]  # exactly at the limit is fine


# --- put / open --------------------------------------------------------------------------------


async def test_put_then_open_round_trips_bytes_and_checksum(store: ArtifactStore):
    body = os.urandom(3 * MiB + 12345)
    result = await store.put("1/run/artifacts/model/weights.bin", stream(body, 65_536))
    assert result.size == len(body)
    assert result.sha256 == hashlib.sha256(body).hexdigest()
    assert await read_all(store, "1/run/artifacts/model/weights.bin") == body


async def test_empty_file_round_trips(store: ArtifactStore):
    result = await store.put("e/empty.txt", stream(b""))
    assert result.size == 0
    assert result.sha256 == hashlib.sha256(b"").hexdigest()
    assert await read_all(store, "e/empty.txt") == b""
    assert names(await store.list("e")) == [("empty.txt", False, 0)]


async def test_put_replaces_an_existing_file(store: ArtifactStore):
    await store.put("r/a.txt", stream(b"old content"))
    await store.put("r/a.txt", stream(b"new"))
    assert await read_all(store, "r/a.txt") == b"new"


async def test_names_with_spaces_and_unicode_round_trip(store: ArtifactStore):
    path = "u/my report 2024/résumé – 数据.txt"
    await store.put(path, stream(b"hello"))
    assert await read_all(store, path) == b"hello"
    assert names(await store.list("u")) == [("my report 2024", True, None)]
    assert names(await store.list("u/my report 2024")) == [("résumé – 数据.txt", False, 5)]


async def test_a_reader_may_stop_early(store: ArtifactStore):
    await store.put("s/big.bin", generated(3 * MiB))
    size, chunks = await store.open("s/big.bin")
    assert size == 3 * MiB
    first = await chunks.__anext__()
    assert first
    await chunks.aclose()


async def test_open_of_a_missing_file_or_a_directory_is_not_found(store: ArtifactStore):
    await store.put("m/dir/file.txt", stream(b"x"))
    await assert_missing(store, "m/nothing.txt")
    await assert_missing(store, "m/dir")


async def test_fifty_mib_streams_through_in_bounded_memory(store: ArtifactStore):
    total = 50 * MiB
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        t0 = time.perf_counter()
        result = await store.put("big/fifty.bin", generated(total))
        put_s = time.perf_counter() - t0
        _, put_peak = tracemalloc.get_traced_memory()

        tracemalloc.reset_peak()
        t0 = time.perf_counter()
        size, chunks = await store.open("big/fifty.bin")
        digest, seen = hashlib.sha256(), 0
        async for chunk in chunks:
            digest.update(chunk)
            seen += len(chunk)
        get_s = time.perf_counter() - t0
        _, get_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(
        f"\n{type(store).__name__}: put 50 MiB {50 / put_s:.0f} MiB/s peak {put_peak / MiB:.1f} MiB;"
        f" get {50 / get_s:.0f} MiB/s peak {get_peak / MiB:.1f} MiB"
    )
    assert result.size == size == seen == total
    assert digest.hexdigest() == result.sha256
    assert put_peak < 20 * MiB
    assert get_peak < 20 * MiB


# --- list --------------------------------------------------------------------------------------


async def test_list_shows_immediate_children_relative_to_the_directory(store: ArtifactStore):
    for path, body in [
        ("1/r/artifacts/a.txt", b"aaa"),
        ("1/r/artifacts/z.bin", b"z" * 10),
        ("1/r/artifacts/sub/b.txt", b"bb"),
        ("1/r/artifacts/sub/deeper/c.txt", b"c"),
    ]:
        await store.put(path, stream(body))

    assert names(await store.list("1/r/artifacts")) == [
        ("a.txt", False, 3),
        ("sub", True, None),
        ("z.bin", False, 10),
    ]
    assert names(await store.list("1/r/artifacts/sub")) == [("b.txt", False, 2), ("deeper", True, None)]
    assert names(await store.list("1/r/artifacts/sub/")) == names(await store.list("1/r/artifacts/sub"))
    assert names(await store.list("")) == [("1", True, None)]


async def test_listing_a_file_or_a_missing_path_is_empty(store: ArtifactStore):
    await store.put("l/reports/report.txt", stream(b"report"))
    assert await store.list("l/reports/report.txt") == []
    assert await store.list("l/nothing-here") == []


def test_file_info_encodes_like_mlflow():
    assert msgspec.json.encode(FileInfo("sub", True)) == b'{"path":"sub","is_dir":true}'
    assert msgspec.json.encode(FileInfo("a.txt", False, 3)) == b'{"path":"a.txt","is_dir":false,"file_size":3}'


# --- delete ------------------------------------------------------------------------------------


async def test_delete_a_file_keeps_its_siblings(store: ArtifactStore):
    await store.put("d/keep.txt", stream(b"k"))
    await store.put("d/drop.txt", stream(b"d"))
    await store.delete("d/drop.txt")
    await assert_missing(store, "d/drop.txt")
    assert names(await store.list("d")) == [("keep.txt", False, 1)]


async def test_delete_a_directory_removes_everything_below_and_nothing_beside(store: ArtifactStore):
    for path in ["d/sub/a.txt", "d/sub/deep/b.txt", "d/sub2/c.txt", "d/subfile"]:
        await store.put(path, stream(b"x"))
    await store.delete("d/sub")
    await assert_missing(store, "d/sub/a.txt")
    await assert_missing(store, "d/sub/deep/b.txt")
    assert names(await store.list("d")) == [("sub2", True, None), ("subfile", False, 1)]


async def test_deleting_the_last_file_leaves_no_empty_directory(store: ArtifactStore):
    await store.put("only/one/file.txt", stream(b"x"))
    await store.delete("only/one/file.txt")
    assert await store.list("") == []


async def test_delete_of_a_missing_path_is_not_an_error(store: ArtifactStore):
    await store.delete("never/was/here.txt")
    await store.delete("never")


# --- failed uploads leave nothing --------------------------------------------------------------


async def test_exceeding_max_bytes_is_refused_and_leaves_nothing(store: ArtifactStore):
    with pytest.raises(ArtifactTooLarge) as info:
        await store.put("big/too-large.bin", generated(5 * MiB), max_bytes=2 * MiB)
    assert info.value.error_code == INVALID_PARAMETER_VALUE
    await assert_missing(store, "big/too-large.bin")
    assert await store.list("") == []


async def test_exceeding_max_bytes_keeps_the_previous_version(store: ArtifactStore):
    await store.put("v/file.bin", stream(b"version one"))
    with pytest.raises(ArtifactTooLarge):
        await store.put("v/file.bin", stream(b"x" * 5000), max_bytes=4096)
    assert await read_all(store, "v/file.bin") == b"version one"


async def test_a_stream_that_fails_midway_leaves_nothing(store: ArtifactStore):
    with pytest.raises(ConnectionResetError):
        await store.put("f/a/b/partial.bin", failing_stream(os.urandom(6 * MiB), ConnectionResetError("client gone")))
    await assert_missing(store, "f/a/b/partial.bin")
    assert await store.list("") == []


async def test_a_stream_that_fails_midway_keeps_the_previous_version(store: ArtifactStore):
    await store.put("f/file.bin", stream(b"good"))
    with pytest.raises(RuntimeError):
        await store.put("f/file.bin", failing_stream(os.urandom(5 * MiB), RuntimeError("boom")))
    assert await read_all(store, "f/file.bin") == b"good"
    assert names(await store.list("f")) == [("file.bin", False, 4)]


# --- multipart ---------------------------------------------------------------------------------


async def test_multipart_upload_assembles_parts_in_order(store: ArtifactStore):
    path = "mp/model/model.skops"
    bodies = [os.urandom(5 * MiB + 1), os.urandom(5 * MiB), os.urandom(123_457)]
    upload_id = await store.create_multipart(path)
    # parts arrive concurrently and out of order, as the MLflow client's thread pool sends them
    uploaded = await asyncio.gather(
        *(store.upload_part(path, upload_id, n, stream(bodies[n - 1], 1 * MiB)) for n in (3, 1, 2))
    )
    parts = sorted(uploaded, key=lambda p: p.part_number)
    assert [p.size for p in parts] == [len(b) for b in bodies]
    await assert_missing(store, path)  # nothing visible before completion

    result = await store.complete_multipart(path, upload_id, parts)
    whole = b"".join(bodies)
    assert result.size == len(whole)
    assert result.sha256 in (None, hashlib.sha256(whole).hexdigest())
    assert await read_all(store, path) == whole
    assert names(await store.list("")) == [("mp", True, None)]  # no upload bookkeeping shows
    with pytest.raises(MlflowError) as info:
        await store.complete_multipart(path, upload_id, parts)
    assert info.value.error_code == RESOURCE_DOES_NOT_EXIST


async def test_multipart_part_uploaded_again_uses_the_etag_given_at_completion(store: ArtifactStore):
    path = "mp/retry.bin"
    upload_id = await store.create_multipart(path)
    p1 = await store.upload_part(path, upload_id, 1, stream(b"first attempt"))
    p1_again = await store.upload_part(path, upload_id, 1, stream(b"second"))
    p2 = await store.upload_part(path, upload_id, 2, stream(b"-tail"))
    assert p1.etag != p1_again.etag
    await store.complete_multipart(path, upload_id, [PartRef(1, p1_again.etag), PartRef(2, p2.etag)])
    assert await read_all(store, path) == b"second-tail"


async def test_multipart_abort_leaves_nothing_and_forgets_the_upload(store: ArtifactStore):
    path = "mp/aborted.bin"
    upload_id = await store.create_multipart(path)
    part = await store.upload_part(path, upload_id, 1, stream(os.urandom(MiB)))
    await store.abort_multipart(path, upload_id)
    await store.abort_multipart(path, upload_id)  # again: fine
    await assert_missing(store, path)
    assert await store.list("") == []
    for attempt in (
        store.complete_multipart(path, upload_id, [part]),
        store.upload_part(path, upload_id, 2, stream(b"late")),
    ):
        with pytest.raises(MlflowError) as info:
            await attempt
        assert info.value.error_code == RESOURCE_DOES_NOT_EXIST


async def test_multipart_with_a_wrong_etag_is_refused_and_leaves_nothing(store: ArtifactStore):
    path = "mp/wrong.bin"
    upload_id = await store.create_multipart(path)
    part = await store.upload_part(path, upload_id, 1, stream(b"data"))
    flipped = ("f" if part.etag[0] != "f" else "e") + part.etag[1:]
    for bad in ("deadbeef-1", "nonsense", flipped):
        with pytest.raises(MlflowError) as info:
            await store.complete_multipart(path, upload_id, [PartRef(1, bad)])
        assert info.value.error_code == INVALID_PARAMETER_VALUE
    with pytest.raises(MlflowError):
        await store.complete_multipart(path, upload_id, [part, PartRef(2, part.etag)])  # part 2 never sent
    await assert_missing(store, path)
    await store.complete_multipart(path, upload_id, [part])  # the upload is still usable
    assert await read_all(store, path) == b"data"


async def test_multipart_upload_ids_are_bound_to_their_path(store: ArtifactStore):
    upload_id = await store.create_multipart("mp/a.bin")
    for bad_id in (upload_id, "0" * 32, "../../etc", ""):
        with pytest.raises(MlflowError) as info:
            await store.upload_part("mp/b.bin", bad_id, 1, stream(b"x"))
        assert info.value.error_code == RESOURCE_DOES_NOT_EXIST
    await store.abort_multipart("mp/a.bin", upload_id)


@pytest.mark.parametrize("part_number", [0, -1, 10_001])
async def test_multipart_part_numbers_outside_1_to_10000_are_refused(store: ArtifactStore, part_number: int):
    upload_id = await store.create_multipart("mp/n.bin")
    with pytest.raises(MlflowError) as info:
        await store.upload_part("mp/n.bin", upload_id, part_number, stream(b"x"))
    assert info.value.error_code == INVALID_PARAMETER_VALUE
    await store.abort_multipart("mp/n.bin", upload_id)


async def test_multipart_parts_must_be_in_ascending_order(store: ArtifactStore):
    upload_id = await store.create_multipart("mp/o.bin")
    p1 = await store.upload_part("mp/o.bin", upload_id, 1, stream(b"a"))
    p2 = await store.upload_part("mp/o.bin", upload_id, 2, stream(b"b"))
    for parts in ([p2, p1], [p1, p1], []):
        with pytest.raises(MlflowError) as info:
            await store.complete_multipart("mp/o.bin", upload_id, parts)
        assert info.value.error_code == INVALID_PARAMETER_VALUE


async def test_multipart_part_over_max_bytes_is_refused(store: ArtifactStore):
    upload_id = await store.create_multipart("mp/big.bin")
    with pytest.raises(ArtifactTooLarge):
        await store.upload_part("mp/big.bin", upload_id, 1, generated(3 * MiB), max_bytes=MiB)
    await store.abort_multipart("mp/big.bin", upload_id)
    assert await store.list("") == []


# --- paths the stores refuse -------------------------------------------------------------------


@pytest.mark.parametrize("path", ["../escape.txt", "a/../../b", "/etc/passwd", "%2e%2e/x", "a\\b", "", ".",
                                  ".gf-tmp-mpu/x", "a/.gf-tmp-123"])
async def test_unsafe_or_reserved_paths_are_refused_by_every_method(store: ArtifactStore, path: str):
    calls = [
        lambda: store.put(path, stream(b"x")),
        lambda: store.open(path),
        lambda: store.delete(path),
        lambda: store.create_multipart(path),
    ]
    if path not in ("", "."):  # the root may be listed
        calls.append(lambda: store.list(path))
    for call in calls:
        with pytest.raises(MlflowError) as info:
            await call()
        assert info.value.error_code == INVALID_PARAMETER_VALUE
        assert info.value.message == "Invalid path"


async def test_check_passes_on_a_reachable_store(store: ArtifactStore):
    await store.check()


async def test_local_store_refuses_a_symlink_that_leads_outside(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    store = LocalArtifactStore(str(tmp_path / "root"))
    await store.put("1/x.txt", stream(b"x"))
    os.symlink(outside, tmp_path / "root" / "1" / "link")
    for call in (lambda: store.open("1/link/secret.txt"), lambda: store.put("1/link/new.txt", stream(b"x")),
                 lambda: store.list("1/link"), lambda: store.delete("1/link")):
        with pytest.raises(MlflowError) as info:
            await call()
        assert info.value.error_code == INVALID_PARAMETER_VALUE
    assert (outside / "secret.txt").read_text() == "secret"
    assert sorted(os.listdir(outside)) == ["secret.txt"]


async def test_local_store_refuses_a_file_where_a_directory_is_and_leaves_no_litter(tmp_path):
    store = LocalArtifactStore(str(tmp_path / "root"))
    await store.put("1/dir/x.txt", stream(b"x"))
    for path in ("1/dir", "1/dir/x.txt/y"):
        with pytest.raises(MlflowError) as info:
            await store.put(path, stream(b"y"))
        assert info.value.error_code == INVALID_PARAMETER_VALUE
    assert sorted(os.listdir(tmp_path / "root" / "1")) == ["dir"]
    assert sorted(os.listdir(tmp_path / "root" / "1" / "dir")) == ["x.txt"]


# --- choosing a store --------------------------------------------------------------------------


def test_open_store_reads_the_artifact_root_setting(tmp_path):
    assert isinstance(open_store(f"file://{tmp_path}/a"), LocalArtifactStore)
    assert open_store(f"file://{tmp_path}/a").root == f"{tmp_path}/a"
    assert open_store("file:rel/dir").root == os.path.abspath("rel/dir")
    assert open_store(str(tmp_path)).root == str(tmp_path)
    conn = "UseDevelopmentStorage=true"
    assert repr(open_store("azure://mlflow/artifacts/x", conn)) == "AzureArtifactStore('mlflow', prefix='artifacts/x')"
    wasbs = open_store("wasbs://mlflow@acct.blob.core.windows.net/p", conn)
    assert repr(wasbs) == "AzureArtifactStore('mlflow', prefix='p')"
    for bad, conn_str in [
        ("azure://mlflow/x", None),
        ("azure://Bad_Container/x", conn),
        ("azure://mlflow/../x", conn),
        ("s3://bucket/x", None),
        ("file://otherhost/x", None),
    ]:
        with pytest.raises(ValueError):
            open_store(bad, conn_str)
