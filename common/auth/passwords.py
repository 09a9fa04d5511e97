"""Password and API-token hashing with the standard library.

Passwords: scrypt (memory-hard; N=2**14, r=8, p=1, 16-byte salt), stored as
``scrypt$N$r$p$salt_b64$hash_b64`` so parameters can be raised later. API tokens are 32 random
bytes: their SHA-256 is enough (a brute-force search of 256 bits is not a threat, unlike a
password), and it lets a token be found by an indexed lookup of its hash.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

MIN_PASSWORD_LENGTH = 12
_N, _R, _P = 2**14, 8, 1
TOKEN_PREFIX = "gf_"


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                                dklen=len(expected), maxmem=64 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
