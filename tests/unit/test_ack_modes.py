"""What an ack means: an enqueued ack needs a durable queue; without one, only a commit counts."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from common import events as ev
from common.errors import MlflowError
from common.settings import Settings
from ingest.bus import EventBus
from ingest.metrics import IngestMetrics


class SilentTransport:
    """Accepts every publish; no writer ever commits (no notice comes back)."""

    reply_to = "inbox"

    def __init__(self, durable: bool):
        self.durable = durable
        self.published: list[str] = []

    def is_available(self) -> bool:
        return True

    async def wait_available(self, timeout: float) -> None:
        return None

    async def start(self, on_notice) -> None:
        return None

    async def publish(self, partition: int, body: bytes, message_id: str) -> None:
        self.published.append(message_id)


def bus(durable: bool) -> tuple[EventBus, SilentTransport]:
    transport = SilentTransport(durable)
    settings = Settings(commit_timeout_s=0.2, commit_degraded_wait_s=0.2)
    return EventBus(settings, transport, IngestMetrics(CollectorRegistry())), transport  # type: ignore[arg-type]


EVENT = ev.RunDataLogged("r" * 32, metrics=[ev.Metric("loss", 0.5, 1, 0)])


async def test_an_enqueued_ack_returns_once_the_durable_queue_has_the_event() -> None:
    b, transport = bus(durable=True)
    assert await b.submit(EVENT, "enqueued") is None
    assert len(transport.published) == 1


async def test_without_a_durable_queue_an_enqueued_request_still_waits_for_its_commit() -> None:
    b, transport = bus(durable=False)  # standalone: the queue is memory
    with pytest.raises(MlflowError) as err:
        await b.submit(EVENT, "enqueued")
    assert err.value.http_status == 503 and len(transport.published) == 1
