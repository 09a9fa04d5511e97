"""Who is calling: HTTP Basic (MLFLOW_TRACKING_USERNAME/PASSWORD) or Bearer
(MLFLOW_TRACKING_TOKEN, a per-user API token), verified against the user store.

Verified credentials are remembered for `ttl` seconds so a hot training loop does not run scrypt
per request. The cache is keyed by an HMAC of the credential under a per-process random key, so
neither passwords nor tokens are kept in memory in the clear. Password, admin-flag and user
changes made through this process drop its entries at once; other replicas see them within `ttl`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import math
import secrets
import time
from dataclasses import dataclass

from common.auth.store import AuthStore, User
from common.errors import REQUEST_LIMIT_EXCEEDED, UNAUTHENTICATED, MlflowError
from common.ratelimit import Limit, TokenBuckets

_MAX_ENTRIES = 10_000
# Failed logins per (client address, username): a burst of 20, then one a second, so guessing one
# account's password is slow; and per client address over all usernames (a burst of 100, then 5 a
# second), so a flood of wrong credentials cannot keep the CPU busy with scrypt.
FAILED_LOGINS_PER_ACCOUNT = Limit(rate=1.0, burst=20.0)
FAILED_LOGINS_PER_CLIENT = Limit(rate=5.0, burst=100.0)


@dataclass(frozen=True)
class Identity:
    username: str
    is_admin: bool
    user_id: int


def unauthenticated(message: str = "You are not authenticated. Please see "
                    "https://www.mlflow.org/docs/latest/auth/index.html#authenticating-to-mlflow "
                    "on how to authenticate.") -> MlflowError:
    return MlflowError(message, UNAUTHENTICATED)


def parse_authorization(header: str) -> tuple[str, str, str]:
    """("basic", username, password) or ("bearer", "", token); MlflowError 401 otherwise."""
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise unauthenticated("Malformed Basic credentials.") from None
        username, sep, password = decoded.partition(":")
        if not sep or not username:
            raise unauthenticated("Malformed Basic credentials.")
        return "basic", username, password
    if scheme.lower() == "bearer" and value:
        return "bearer", "", value
    raise unauthenticated("Unsupported authorization scheme; use Basic or Bearer.")


class Authenticator:
    def __init__(self, store: AuthStore, ttl: float):
        self.store = store
        self.ttl = ttl
        self._key = secrets.token_bytes(32)
        self._cache: dict[bytes, tuple[float, Identity]] = {}
        self._locks: dict[bytes, asyncio.Lock] = {}
        self._failed_account = TokenBuckets(FAILED_LOGINS_PER_ACCOUNT)
        self._failed_client = TokenBuckets(FAILED_LOGINS_PER_CLIENT)

    async def identify(self, header: str | None, client: str = "") -> Identity:
        if not header:
            raise unauthenticated()
        kind, username, secret = parse_authorization(header)
        key = hmac.new(self._key, f"{kind}\0{username}\0{secret}".encode(), hashlib.sha256).digest()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        account = f"{client}\0{username or 'token'}"
        if (wait := max(self._failed_account.wait(account), self._failed_client.wait(client))) > 0:
            raise MlflowError(f"Too many failed logins; retry after {math.ceil(wait)} s.", REQUEST_LIMIT_EXCEEDED,
                              retry_after=max(1, math.ceil(wait)))
        # One verification per credential at a time: a burst of requests with the same new
        # credential waits for the first scrypt instead of running it N times.
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                hit = self._cache.get(key)
                if hit is not None and hit[0] > time.monotonic():
                    return hit[1]
                user = await self._verify(kind, username, secret)
        finally:
            self._locks.pop(key, None)
        if user is None:
            self._failed_account.take(account)
            self._failed_client.take(client)
            raise unauthenticated("Invalid credentials." if kind == "basic" else "Invalid or revoked token.")
        identity = Identity(user.username, user.is_admin, user.id)
        if len(self._cache) >= _MAX_ENTRIES:
            self._cache.clear()
        self._cache[key] = (time.monotonic() + self.ttl, identity)
        return identity

    async def _verify(self, kind: str, username: str, secret: str) -> User | None:
        if kind == "bearer":
            return await self.store.user_for_token(secret)
        # scrypt is CPU-bound (~50 ms): keep the event loop serving other requests meanwhile.
        doc = await self.store.db["auth_users"].find_one({"_id": username})
        if doc is None:
            return None
        from common.auth.passwords import verify_password

        ok = await asyncio.to_thread(verify_password, secret, doc.get("password_hash", ""))
        return User(int(doc.get("id", 0)), username, bool(doc.get("is_admin"))) if ok else None

    def forget(self, username: str) -> None:
        """Drop this process's cached verifications of `username` (password, admin or user changed)."""
        for key, (_, identity) in list(self._cache.items()):
            if identity.username == username:
                self._cache.pop(key, None)
