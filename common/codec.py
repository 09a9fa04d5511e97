"""msgspec hooks for values that come back from MongoDB."""

from __future__ import annotations

from typing import Any


def bson_enc_hook(obj: Any) -> Any:
    # PyMongo decodes BSON int64 as bson.Int64, an int subclass msgspec does not encode itself.
    if isinstance(obj, int):
        return int(obj)
    raise TypeError(f"cannot encode {type(obj).__name__}")
