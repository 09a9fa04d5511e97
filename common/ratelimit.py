"""Per-identity token buckets: each caller (authenticated user or token owner; the client address
when anonymous) gets `rate` requests per second with bursts up to `burst`, separately for each
route class (writes, search and other reads, artifacts). Past it: 429 REQUEST_LIMIT_EXCEEDED with
Retry-After, which the stock client retries with backoff.

Limits are per process: with N replicas behind the router a caller gets up to N times the rate
(nginx's `limit_req` is the place for a global cap)."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from common.errors import REQUEST_LIMIT_EXCEEDED, MlflowError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_MAX_BUCKETS = 100_000
_EXEMPT = frozenset({"/health", "/ready", "/metrics", "/version"})


@dataclass(frozen=True)
class Limit:
    rate: float  # tokens per second
    burst: float


def parse_limit(text: str) -> Limit | None:
    """``"50"`` (50/s, burst 50) or ``"50/200"`` (50/s, burst 200); empty or 0: no limit."""
    text = text.strip()
    if not text:
        return None
    rate_text, _, burst_text = text.partition("/")
    try:
        rate = float(rate_text)
        burst = float(burst_text) if burst_text else max(rate, 1.0)
    except ValueError:
        raise SystemExit(f"genesis-flow: invalid rate limit {text!r} (expected '<per second>[/<burst>]')") from None
    return None if rate <= 0 else Limit(rate, max(burst, 1.0))


class TokenBuckets:
    def __init__(self, limit: Limit, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # identity -> (tokens, at)

    def take(self, identity: str) -> float:
        """0 if a request may pass now, else the seconds until one token is back."""
        now = self.clock()
        tokens, at = self._buckets.get(identity, (self.limit.burst, now))
        tokens = min(self.limit.burst, tokens + (now - at) * self.limit.rate)
        if tokens >= 1:
            if len(self._buckets) >= _MAX_BUCKETS and identity not in self._buckets:
                self._prune(now)
            self._buckets[identity] = (tokens - 1, now)
            return 0.0
        self._buckets[identity] = (tokens, now)
        return (1 - tokens) / self.limit.rate

    def wait(self, identity: str) -> float:
        """Seconds until `identity` has a token, without taking one (0: it has one now)."""
        tokens, at = self._buckets.get(identity, (self.limit.burst, self.clock()))
        tokens = min(self.limit.burst, tokens + (self.clock() - at) * self.limit.rate)
        return 0.0 if tokens >= 1 else (1 - tokens) / self.limit.rate

    def _prune(self, now: float) -> None:
        """Forget callers whose bucket has refilled: they are indistinguishable from new ones."""
        full = self.limit.burst / self.limit.rate
        for key, (_, at) in list(self._buckets.items()):
            if now - at >= full:
                del self._buckets[key]


def client_address(request: web.Request) -> str:
    """The nearest proxy's view of the client (the last X-Forwarded-For hop), else the peer."""
    forwarded = request.headers.get("X-Forwarded-For", "")
    hop = forwarded.rsplit(",", 1)[-1].strip()
    return hop or request.remote or "unknown"


def rate_limit_middleware(limits: dict[str, Limit | None], classify: Callable[[web.Request], str]):
    buckets = {name: TokenBuckets(limit) for name, limit in limits.items() if limit is not None}

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in _EXEMPT or request.method == "OPTIONS":
            return await handler(request)
        bucket = buckets.get(classify(request))
        if bucket is not None:
            identity = request.get("identity")
            who = f"user:{identity.username}" if identity is not None else f"ip:{client_address(request)}"
            wait = bucket.take(who)
            if wait > 0:
                raise MlflowError(f"Too many requests; retry after {math.ceil(wait)} s.", REQUEST_LIMIT_EXCEEDED,
                                  retry_after=max(1, math.ceil(wait)))
        return await handler(request)

    return middleware
