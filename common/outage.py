"""How long a dependency has been failing, and what that means for a client's retry.

The stock MLflow client retries 429/503 (7 times by default) and sleeps what `Retry-After`
says instead of its own exponential backoff. A constant `Retry-After: 1` therefore spends all
of a client's retries in seven seconds. Answering with the time the dependency has been down
(at least 2 s, at most 60 s) makes the client's waits double as the outage goes on: a client
that meets an outage at its start retries after 2, 4, 8, 16, 32 and 64 s, so its default
retries outlast a minute-long outage with room to spare, while short blips stay short.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

MIN_RETRY_AFTER_S = 2
MAX_RETRY_AFTER_S = 60


def retry_after_for(down_s: float) -> int:
    return int(min(MAX_RETRY_AFTER_S, max(MIN_RETRY_AFTER_S, math.ceil(down_s))))


class Outage:
    """The state of one dependency as the requests that use it see it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self.down_since: float | None = None

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def failed(self) -> None:
        if self.down_since is None:
            self.down_since = self._clock()

    def recovered(self) -> None:
        self.down_since = None

    def down_for(self) -> float:
        return 0.0 if self.down_since is None else self._clock() - self.down_since

    def retry_after(self) -> int:
        return retry_after_for(self.down_for())
