"""Opaque page tokens: keyset cursors, not offsets.

A token holds the sort-key values of the last row of a page and a fingerprint of the search that
made it. The next page asks MongoDB for rows strictly after those values in sort order, so every
row is returned exactly once however deep the paging goes, each page costs the same, and rows
written between pages cannot shift the window. The fingerprint rejects a token replayed against
a different search.

Token values come back from the client, so they are checked to be plain scalars before they are
used: they only ever appear as comparison values in a query document, never as operators.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
from collections.abc import Sequence
from typing import Any

import msgspec

from common.codec import bson_enc_hook
from common.errors import MlflowError
from query.translate import MATCH_NOTHING, SortKey

Scalar = None | bool | int | float | str

_INT64 = 2**63
TOKEN_VERSION = 1


class _Token(msgspec.Struct, array_like=True):
    v: int
    q: str  # fingerprint of the search
    k: list[Any]  # sort-key values of the last row


_encoder = msgspec.json.Encoder(enc_hook=bson_enc_hook)
_decoder = msgspec.json.Decoder(_Token)


def fingerprint(*parts: Any) -> str:
    """A short stable digest of what defines a search (not the page size: clients may change it)."""
    return hashlib.blake2b(msgspec.json.encode(parts), digest_size=8).hexdigest()


def encode_token(search: str, values: Sequence[Scalar]) -> str:
    raw = _encoder.encode(_Token(TOKEN_VERSION, search, list(values)))
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _bad(detail: str) -> MlflowError:
    return MlflowError.invalid(f"Invalid page token: {detail}")


def _check_scalar(value: Any) -> Scalar:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if -_INT64 <= value < _INT64:
            return value
        raise _bad("a value is out of range")
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise _bad("unexpected value type")


def decode_token(token: str | None, search: str, n_values: int | tuple[int, ...]) -> list[Scalar] | None:
    """The cursor values of `token`, or None for the first page; INVALID_PARAMETER_VALUE if the
    token is malformed or belongs to another search."""
    if not token:
        return None
    try:
        # Strict, as MLflow's b64decode is: tokens issued here are padded base64.
        raw = base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise MlflowError.invalid("Invalid page token, could not base64-decode") from None
    try:
        parsed = _decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise _bad("not a token issued by this server") from None
    if parsed.v != TOKEN_VERSION or parsed.q != search:
        raise _bad("it was issued for a different search (filter, order or experiments changed)")
    if len(parsed.k) not in (n_values if isinstance(n_values, tuple) else (n_values,)):
        raise _bad("wrong number of values")
    return [_check_scalar(v) for v in parsed.k]


def _after(key: SortKey, value: Scalar) -> dict[str, Any] | None:
    """Rows strictly after `value` on one key, in MongoDB's order (null sorts lowest)."""
    if key.ascending:
        return {key.field: {"$gt": value}} if value is not None else {key.field: {"$ne": None}}
    if value is None:
        return None
    if key.nullable:
        return {"$or": [{key.field: {"$lt": value}}, {key.field: None}]}
    return {key.field: {"$lt": value}}


def after_condition(keys: Sequence[SortKey], values: Sequence[Scalar]) -> dict[str, Any]:
    """Rows after the cursor in the lexicographic order of `keys`:
    OR over i of (keys before i equal AND key i after)."""
    branches: list[dict[str, Any]] = []
    equal: list[dict[str, Any]] = []
    for key, value in zip(keys, values):
        after = _after(key, value)
        if after is not None:
            branches.append({"$and": [*equal, after]} if equal else after)
        equal.append({key.field: {"$eq": value}})
    if not branches:
        return MATCH_NOTHING
    return branches[0] if len(branches) == 1 else {"$or": branches}


def _plain(value: Any) -> Scalar:
    # bson.Int64 (from $convert) is an int subclass the JSON encoder does not take
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else value


def cursor_values(row: dict[str, Any], keys: Sequence[SortKey]) -> list[Scalar]:
    return [_plain(row.get(k.field)) for k in keys]
