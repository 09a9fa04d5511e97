"""The test-services layer works against the real servers (local or Docker)."""

from __future__ import annotations

import asyncio
import socket
import urllib.error
import urllib.request

import pytest

# Same import path as conftest.py, so both share one module (and one set of servers).
try:
    from tests import services as svc
except ImportError:  # pragma: no cover - repo root not on sys.path
    import services as svc

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def services():
    # Shadows conftest's session fixture so this file also runs on its own;
    # start_services() is shared and reference counted, so nothing starts twice.
    s, cleanup = svc.start_services()
    yield s
    cleanup()


# ------------------------------------------------------------------- helpers


def test_unique_name_is_short_unique_and_safe():
    names = {svc.unique_name("Runs-Test.DB") for _ in range(500)}
    assert len(names) == 500
    for n in names:
        assert n.startswith("runs_test_db_")
        assert len(n) <= 60
        assert all(c in "abcdefghijklmnopqrstuvwxyz0123456789_" for c in n)


def test_free_port_and_wait_for_port():
    port = svc.free_port()
    with pytest.raises(TimeoutError):
        svc.wait_for_port("127.0.0.1", port, timeout=0.3)
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", port))
        srv.listen()
        svc.wait_for_port("127.0.0.1", port, timeout=5)


def test_start_services_is_shared_and_refcounted(services):
    again, cleanup = svc.start_services()
    assert again == services
    cleanup()
    cleanup()  # idempotent; must not tear down the module's servers
    assert svc.amqp_answers(*svc._amqp_host_port(services.amqp_url))


# ------------------------------------------------------------------- servers


def test_mongodb_ping_and_roundtrip(services):
    from pymongo import MongoClient

    client = MongoClient(services.mongodb_uri, serverSelectionTimeoutMS=5000)
    db_name = svc.unique_name("svc_mongo")
    try:
        assert client.admin.command("ping")["ok"] == 1.0
        coll = client[db_name]["things"]
        coll.insert_one({"_id": "a", "n": 1})
        coll.update_one({"_id": "a"}, {"$inc": {"n": 41}})
        assert coll.find_one({"_id": "a"}) == {"_id": "a", "n": 42}
        assert db_name in client.list_database_names()
    finally:
        client.drop_database(db_name)
        client.close()


async def test_quorum_queue_with_publisher_confirms(services):
    import aio_pika
    from pamqp.commands import Basic

    queue_name = svc.unique_name("svc_q")
    connection = await aio_pika.connect(services.amqp_url, timeout=10)
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(
            queue_name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        confirm = await channel.default_exchange.publish(
            aio_pika.Message(b"hello", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=queue_name,
            timeout=10,
        )
        assert isinstance(confirm, Basic.Ack)
        # A quorum queue refuses a redeclare as classic: proves the type took effect.
        probe = await connection.channel()
        with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):
            await probe.declare_queue(queue_name, durable=True, arguments={"x-queue-type": "classic"})
        msg = await _get(queue)
        assert msg.body == b"hello"
        # quorum queues count deliveries
        assert msg.headers.get("x-delivery-count") in (None, 0)
        await msg.ack()
        await queue.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()


async def _get(queue, timeout: float = 10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        msg = await queue.get(no_ack=False, fail=False)
        if msg is not None:
            return msg
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no message in {queue.name} after {timeout}s")
        await asyncio.sleep(0.05)


async def test_azurite_container_and_blob_roundtrip(services):
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob.aio import BlobServiceClient

    container_name = svc.unique_name("svc").replace("_", "-")  # [a-z0-9-] for Azure
    async with BlobServiceClient.from_connection_string(services.azure_connection_string) as client:
        container = client.get_container_client(container_name)
        await container.create_container()
        try:
            blob = container.get_blob_client("dir/artifact.txt")
            await blob.upload_blob(b"artifact-bytes")
            downloader = await blob.download_blob()
            assert await downloader.readall() == b"artifact-bytes"
            names = [b.name async for b in container.list_blobs()]
            assert names == ["dir/artifact.txt"]
        finally:
            await container.delete_container()
        with pytest.raises(ResourceNotFoundError):
            await container.get_container_properties()


# --------------------------------------------------------------------- nginx

NGINX_CONF = """
worker_processes 1;
events { worker_connections 64; }
http {
    access_log {{PREFIX}}/logs/access.log;
    server {
        listen 127.0.0.1:{{LISTEN_PORT}};
        location = /health { default_type text/plain; return 200 "ok\\n"; }
        location / { return 404; }
    }
}
"""


def test_start_nginx_serves_health_and_stops():
    port, stop = svc.start_nginx(NGINX_CONF)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
            assert r.status == 200
            assert r.read() == b"ok\n"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/nope", timeout=5)
        assert err.value.code == 404
    finally:
        stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_start_nginx_reports_a_broken_config():
    with pytest.raises(RuntimeError, match="nginx exited"):
        svc.start_nginx("events {}\nhttp { server { listen {{LISTEN_PORT}}; bogus_directive on; } }\n")
    with pytest.raises(ValueError, match="UPSTREAM"):
        svc.start_nginx("events {}\nhttp { server { listen {{LISTEN_PORT}}; proxy_pass {{UPSTREAM}}; } }\n")


# ------------------------------------------------------------ rabbitmq outage


async def test_rabbitmq_outage_keeps_durable_messages(services):
    import aio_pika

    host, port = svc._amqp_host_port(services.amqp_url)
    queue_name = svc.unique_name("svc_outage")
    connection = await aio_pika.connect(services.amqp_url, timeout=10)
    channel = await connection.channel(publisher_confirms=True)
    await channel.declare_queue(queue_name, durable=True, arguments={"x-queue-type": "quorum"})
    await channel.default_exchange.publish(
        aio_pika.Message(b"survives", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
        routing_key=queue_name,
        timeout=10,
    )

    await asyncio.to_thread(svc.rabbitmq_stop)
    try:
        assert not svc.amqp_answers(host, port)
        if services.backend == "local":  # stop_app closes the listener
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((host, port), timeout=2).close()
        await asyncio.sleep(0.2)
        assert connection.is_closed or channel.is_closed
    finally:
        await asyncio.to_thread(svc.rabbitmq_start)
        await connection.close()

    assert svc.amqp_answers(host, port)
    connection = await aio_pika.connect(services.amqp_url, timeout=10)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(
            queue_name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        msg = await _get(queue, timeout=30)
        assert msg.body == b"survives"
        await msg.ack()
        await queue.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()


def test_local_backend_explains_how_to_start_missing_servers(monkeypatch):
    dead = svc.free_port()
    monkeypatch.setenv("GENESIS_FLOW_TEST_DOCKER", "0")
    monkeypatch.setenv("GENESIS_FLOW_TEST_AMQP_URL", f"amqp://guest:guest@127.0.0.1:{dead}/")
    monkeypatch.setenv(
        "GENESIS_FLOW_TEST_AZURE_CONNECTION_STRING",
        svc._azurite_connection_string("127.0.0.1", dead),
    )
    with pytest.raises(svc.ServicesUnavailable) as err:
        svc._start_local()
    text = str(err.value)
    assert f"RabbitMQ 127.0.0.1:{dead}" in text
    assert f"Azurite blob 127.0.0.1:{dead}" in text
    assert "MongoDB" not in text  # the real one answers
    assert "bash scripts/services.sh start" in text
