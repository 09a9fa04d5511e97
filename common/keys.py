"""Safe MongoDB field names for MLflow keys.

MLflow keys may contain `.` (a path separator to MongoDB) and, with validation relaxed, `$`
(an operator prefix). Keys are stored as field names of embedded maps (`params.<key>`), so they
are percent-encoded: `%` -> `%25`, `.` -> `%2E`, `$` -> `%24`. Everything else is kept, so the
stored documents stay readable.
"""

from __future__ import annotations

import re

_ENCODE = str.maketrans({"%": "%25", ".": "%2E", "$": "%24"})


def encode_key(key: str) -> str:
    return key.translate(_ENCODE)


def decode_key(field: str) -> str:
    if "%" not in field:
        return field
    return _DECODE_RE.sub(lambda m: _DECODE[m.group(0)], field)


_DECODE = {"%25": "%", "%2E": ".", "%24": "$"}
_DECODE_RE = re.compile("%25|%2E|%24")
