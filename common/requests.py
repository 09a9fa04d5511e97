"""Reading MLflow request messages the way the reference server does (both tiers use this).

`_get_request_message` in `mlflow/server/handlers.py`: an empty or unparsable JSON body is `{}`
(so the client hears which field is missing), legacy clients may double-encode the body, the
handler schema is asserted, and protobuf-JSON leniency applies ("5" is an int, "NaN" a float).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

from common import validation as v
from common.errors import MlflowError

T = TypeVar("T")

_json = msgspec.json.Decoder()


def parse_json_body(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        body = _json.decode(raw)
        if isinstance(body, str):  # legacy clients double-encode
            body = _json.decode(body)
    except msgspec.DecodeError:
        return {}
    except RecursionError:  # nesting deeper than the decoder's stack: hostile, not a crash
        raise MlflowError.invalid("Malformed request body: JSON nested too deeply.") from None
    if not isinstance(body, dict):
        raise MlflowError.invalid(f"Malformed request body: expected a JSON object, got {type(body).__name__}.")
    return body


def decode_message(body: Mapping[str, Any], kind: type[T], schema: v.Schema) -> T:
    """Assert the handler schema, then decode into the request Struct `kind`."""
    v.check_fields(body, schema)
    try:
        return msgspec.convert(dict(body), kind, strict=False)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at `")
        path = where.rstrip("`").removeprefix("$.").removeprefix("$")
        if path:
            raise MlflowError.invalid(f"Invalid value for parameter '{path}' supplied: {message}.") from None
        raise MlflowError.invalid(f"Invalid request: {message}.") from None
