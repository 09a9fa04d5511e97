"""Batches apply side by side; a partition release or a backup's pause needs none in progress.

`BatchGate` is a shared/exclusive lock for asyncio: every batch holds it shared (`shared()`);
`async with gate:` takes it exclusively, waiting for the batches being applied to finish and
keeping new ones from starting until it is let go. Waiting exclusive holders go first, so a
pause is not starved by a steady stream of batches. (asyncio has no readers-writer lock; this
is the usual condition-variable one.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class BatchGate:
    def __init__(self) -> None:
        self._cond = asyncio.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting_exclusive = 0

    @contextlib.asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._exclusive and not self._waiting_exclusive)
            self._shared += 1
        try:
            yield
        finally:
            async with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    async def __aenter__(self) -> None:
        async with self._cond:
            self._waiting_exclusive += 1
            try:
                await self._cond.wait_for(lambda: not self._exclusive and self._shared == 0)
            finally:
                self._waiting_exclusive -= 1
            self._exclusive = True

    async def __aexit__(self, *exc: object) -> None:
        async with self._cond:
            self._exclusive = False
            self._cond.notify_all()

    def locked(self) -> bool:
        return self._exclusive
