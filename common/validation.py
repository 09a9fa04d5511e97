"""MLflow's validation rules, written once.

Two layers, both mirroring the reference server:

* request-shape checks (`check_fields`): what `mlflow/server/handlers.py` asserts about the JSON
  body before it touches the store (required fields, JSON types);
* value rules (`validate_*`): what `mlflow/utils/validation.py` enforces in the store (names,
  lengths, batch limits, ids).

Messages are MLflow's own, so a client sees the same text from us as from `mlflow server`.
Ingest and the migration tool call these same functions.
"""

from __future__ import annotations

import functools
import json
import math
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from common.errors import MlflowError

RUN_ID_RE = re.compile(r"^[a-zA-Z0-9][\w\-]{0,255}$")
EXPERIMENT_ID_RE = re.compile(r"^[a-zA-Z0-9][\w\-]{0,63}$")
NAME_RE = re.compile(r"^[/\w.\- :]*$")

MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
MAX_ENTITIES_PER_BATCH = 1000
MAX_BATCH_LOG_REQUEST_SIZE = 1_000_000
MAX_PARAM_VAL_LENGTH = 6000
MAX_TAG_VAL_LENGTH = 8000
MAX_EXPERIMENT_NAME_LENGTH = 500
MAX_EXPERIMENT_TAG_KEY_LENGTH = 250
MAX_EXPERIMENT_TAG_VAL_LENGTH = 20000
MAX_ENTITY_KEY_LENGTH = 250
MAX_DATASET_NAME_SIZE = 500
MAX_DATASET_DIGEST_SIZE = 36
MAX_DATASET_SCHEMA_SIZE = 1048575
MAX_DATASET_SOURCE_SIZE = 65535
MAX_DATASET_PROFILE_SIZE = 16777215
MAX_INPUT_TAG_KEY_SIZE = 255
MAX_INPUT_TAG_VALUE_SIZE = 500

_MISSING_KEY_NAME_MESSAGE = "A key name must be provided."
_API_DOCS = " See the API docs for more information about request parameters."

# MLflow (and the SQL store) clamp infinities to the largest finite double.
MAX_DOUBLE = 1.7976931348623157e308


# --- message helpers (mlflow.utils.validation) -------------------------------------------------


def invalid_value(path: str, value: Any, message: str | None = None) -> str:
    formatted = json.dumps(value, sort_keys=True, separators=(",", ":"))
    if message:
        return f"Invalid value {formatted} for parameter '{path}' supplied: {message}"
    return f"Invalid value {formatted} for parameter '{path}' supplied."


def missing_value(path: str) -> str:
    return f"Missing value for required parameter '{path}'."


def exceeds_maximum_length(path: str, limit: int) -> str:
    return f"'{path}' exceeds the maximum length of {limit} characters"


def _json_path(current: str, value: str) -> str:
    if not current:
        return value
    if value.startswith("["):
        return f"{current}{value}"
    return f"{current}.{value}"


# --- request-shape checks (mlflow.server.handlers) ---------------------------------------------

Check = Callable[[Any], bool]


def is_string(x: Any) -> bool:
    return isinstance(x, str)


def is_intlike(x: Any) -> bool:
    if isinstance(x, bool):
        return True  # int(True) is an int in the reference server too
    if isinstance(x, int):
        return True
    try:
        int(x)
    except (ValueError, TypeError):
        return False
    return not isinstance(x, float) or x.is_integer()


def is_floatlike(x: Any) -> bool:
    try:
        float(x)
    except (ValueError, TypeError):
        return False
    return not isinstance(x, (list, dict))


def is_array(x: Any) -> bool:
    return isinstance(x, list)


def is_bool(x: Any) -> bool:
    return isinstance(x, bool)


REQUIRED: Check = lambda x: x is not None and x != ""  # noqa: E731
STRING: Check = is_string
INTLIKE: Check = is_intlike
FLOATLIKE: Check = is_floatlike
ARRAY: Check = is_array
BOOL: Check = is_bool

Schema = Mapping[str, tuple[Check, ...]]


def check_fields(body: Mapping[str, Any], schema: Schema) -> None:
    """Apply a handler schema the way `_validate_request_json_with_schema` does."""
    for name, checks in schema.items():
        if name not in body and REQUIRED not in checks:
            continue
        value = body.get(name)
        if name == "run_id" and value is None and "run_uuid" in body:
            value = body.get("run_uuid")
        for check in checks:
            # An absent field parses fine as protobuf, so the reference server only type-checks
            # values that are present; absence is REQUIRED's business.
            if check(value) or (value is None and check is not REQUIRED):
                continue
            if check is REQUIRED:
                message = missing_value(name)
            else:
                message = invalid_value(name, value, f" Hint: Value was of type '{type(value).__name__}'.")
            raise MlflowError.invalid(message + _API_DOCS)


def check_required_keys(items: Iterable[Mapping[str, Any]], list_name: str, fields: tuple[str, ...]) -> None:
    """log-batch's per-item presence checks (`metrics[3].timestamp` ...)."""
    for idx, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise MlflowError.invalid(invalid_value(f"{list_name}[{idx}]", item) + _API_DOCS)
        for field in fields:
            value = item.get(field)
            if value is None or value == "":
                raise MlflowError.invalid(missing_value(f"{list_name}[{idx}].{field}"))


# --- value rules (mlflow.utils.validation) -----------------------------------------------------


def bad_character_message() -> str:
    return (
        "Names may only contain alphanumerics, underscores (_), dashes (-), periods (.),"
        " spaces ( ), colon(:) and slashes (/)."
    )


def bad_path_message(name: str) -> str:
    return (
        "Names may be treated as files in certain cases, and must not resolve to other names"
        f" when treated as such. This name would resolve to {posixpath.normpath(name)!r}"
    )


def path_not_unique(name: str) -> bool:
    norm = posixpath.normpath(name)
    return norm != name or norm == "." or norm.startswith("..") or norm.startswith("/")


@functools.lru_cache(maxsize=8192)
def _name_problem(name: str) -> str | None:
    """Why `name` is not a valid key, or None. Cached: a batch repeats the same few keys."""
    if not NAME_RE.match(name):
        return bad_character_message()
    if path_not_unique(name):
        return bad_path_message(name)
    return None


def _check_name(name: str, path: str) -> None:
    problem = _name_problem(name)
    if problem is not None:
        raise MlflowError.invalid(invalid_value(path, name, problem))


def validate_length(entity: str, limit: int, value: str | None) -> None:
    if value is not None and len(value) > limit:
        raise MlflowError.invalid(exceeds_maximum_length(entity, limit))


def validate_metric(key: Any, value: Any, timestamp: Any, step: Any, path: str = "") -> None:
    name_path = _json_path(path, "name")
    if key is None:
        raise MlflowError.invalid(
            invalid_value(name_path, key, f"Metric name cannot be None. {_MISSING_KEY_NAME_MESSAGE}")
        )
    _check_name(key, name_path)
    if value is None:
        raise MlflowError.invalid(missing_value(_json_path(path, "value")))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MlflowError.invalid(
            invalid_value(
                _json_path(path, "value"),
                value,
                f"(timestamp={timestamp}). Please specify value as a valid double (64-bit floating point)",
            )
        )
    if not isinstance(timestamp, (int, float)) or not 0 <= timestamp < 2**63:  # int64, as the proto's
        raise MlflowError.invalid(
            invalid_value(
                _json_path(path, "timestamp"),
                timestamp,
                f"metric '{key}' (value={value}). Timestamp must be a nonnegative long (64-bit integer) ",
            )
        )
    if not isinstance(step, (int, float)) or not -(2**63) <= step < 2**63:
        raise MlflowError.invalid(
            invalid_value(
                _json_path(path, "step"),
                step,
                f"metric '{key}' (value={value}). Step must be a valid long (64-bit integer).",
            )
        )
    validate_length("Metric name", MAX_ENTITY_KEY_LENGTH, key)


def validate_param(key: Any, value: str | None, path: str = "") -> None:
    key_path = _json_path(path, "key")
    if key is None:
        raise MlflowError.invalid(invalid_value(key_path, "", _MISSING_KEY_NAME_MESSAGE))
    _check_name(key, key_path)
    validate_length("Param key", MAX_ENTITY_KEY_LENGTH, key)
    validate_length("Param value", MAX_PARAM_VAL_LENGTH, value)


def validate_tag(key: Any, value: str | None, path: str = "") -> None:
    key_path = _json_path(path, "key")
    if key is None:
        raise MlflowError.invalid(missing_value(key_path))
    _check_name(key, key_path)
    validate_length(key_path, MAX_ENTITY_KEY_LENGTH, key)
    validate_length(_json_path(path, "value"), MAX_TAG_VAL_LENGTH, value)


def validate_tag_name(key: Any, path: str = "key") -> None:
    if key is None:
        raise MlflowError.invalid(missing_value(path))
    _check_name(key, path)


def validate_experiment_tag(key: Any, value: str | None) -> None:
    validate_tag_name(key)
    validate_length("key", MAX_EXPERIMENT_TAG_KEY_LENGTH, key)
    validate_length("value", MAX_EXPERIMENT_TAG_VAL_LENGTH, value)


def validate_param_keys_unique(keys: Iterable[str]) -> None:
    seen: set[str] = set()
    dupes: list[str] = []
    for key in keys:
        if key in seen:
            dupes.append(key)
        seen.add(key)
    if dupes:
        raise MlflowError.invalid(
            f"Duplicate parameter keys have been submitted: {dupes}. Please ensure "
            "the request contains only one param value per param key."
        )


def _validate_batch_limit(entity: str, limit: int, length: int) -> None:
    if length > limit:
        raise MlflowError.invalid(
            f"A batch logging request can contain at most {limit} {entity}. "
            f"Got {length} {entity}. Please split up {entity} across multiple"
            " requests and try again."
        )


def validate_batch_limits(n_metrics: int, n_params: int, n_tags: int) -> None:
    _validate_batch_limit("metrics", MAX_METRICS_PER_BATCH, n_metrics)
    _validate_batch_limit("params", MAX_PARAMS_TAGS_PER_BATCH, n_params)
    _validate_batch_limit("tags", MAX_PARAMS_TAGS_PER_BATCH, n_tags)
    _validate_batch_limit("metrics, params, and tags", MAX_ENTITIES_PER_BATCH, n_metrics + n_params + n_tags)


def validate_batch_request_size(size: int) -> None:
    if size > MAX_BATCH_LOG_REQUEST_SIZE:
        raise MlflowError.invalid(
            f"Batched logging API requests must be at most {MAX_BATCH_LOG_REQUEST_SIZE} bytes, "
            f"got a request of size {size}."
        )


def validate_run_id(run_id: str, path: str = "run_id") -> None:
    if not RUN_ID_RE.match(run_id):
        raise MlflowError.invalid(invalid_value(path, run_id))


def validate_experiment_id(experiment_id: str) -> None:
    if not EXPERIMENT_ID_RE.match(experiment_id):
        raise MlflowError.invalid(f"Invalid experiment ID: '{experiment_id}'")


def validate_experiment_name(name: Any) -> None:
    if name is None or name == "":
        raise MlflowError.invalid(f"Invalid experiment name: '{name}'")
    if not isinstance(name, str):
        raise MlflowError.invalid(f"Invalid experiment name: {name}. Expects a string.")
    if len(name) > MAX_EXPERIMENT_NAME_LENGTH:
        raise MlflowError.invalid(exceeds_maximum_length("name", MAX_EXPERIMENT_NAME_LENGTH))


def validate_dataset(name: str | None, digest: str | None, source_type: str | None, source: str | None,
                     schema: str | None, profile: str | None) -> None:
    for label, value in (("name", name), ("digest", digest), ("source_type", source_type), ("source", source)):
        if value is None:
            raise MlflowError.invalid(f"Dataset {label} cannot be None")
    validate_length("name", MAX_DATASET_NAME_SIZE, name)
    validate_length("digest", MAX_DATASET_DIGEST_SIZE, digest)
    validate_length("source", MAX_DATASET_SOURCE_SIZE, source)
    validate_length("schema", MAX_DATASET_SCHEMA_SIZE, schema)
    validate_length("profile", MAX_DATASET_PROFILE_SIZE, profile)


def validate_input_tag(key: str | None, value: str | None) -> None:
    if key is None:
        raise MlflowError.invalid("InputTag key cannot be None")
    if value is None:
        raise MlflowError.invalid("InputTag value cannot be None")
    validate_length("key", MAX_INPUT_TAG_KEY_SIZE, key)
    validate_length("value", MAX_INPUT_TAG_VALUE_SIZE, value)


def normalize_metric_value(value: float) -> tuple[float, bool]:
    """Return (stored value, is_nan). NaN is flagged; infinities clamp like the SQL store."""
    if math.isnan(value):
        return 0.0, True
    if math.isinf(value):
        return (MAX_DOUBLE if value > 0 else -MAX_DOUBLE), False
    return float(value), False


def param_conflict_message(run_id: str, conflicts: list[dict[str, str]], *, single: bool) -> str:
    """The SQL store's wording: log-parameter names one key, log-batch lists them."""
    if single:
        c = conflicts[0]
        return (
            f"Changing param values is not allowed. Param with key='{c['key']}' was already"
            f" logged with value='{c['old_value']}' for run ID='{run_id}'. Attempted logging new value"
            f" '{c['new_value']}'."
        )
    return (
        "Changing param values is not allowed. Params were already"
        f" logged='{conflicts}' for run ID='{run_id}'."
    )


def run_not_found_message(run_id: str) -> str:
    return f"Run with id={run_id} not found"


def run_not_active_message(run_id: str, stage: str) -> str:
    return f"The run {run_id} must be in the 'active' state. Current state is {stage}."


def experiment_not_found_message(experiment_id: str) -> str:
    return f"No Experiment with id={experiment_id} exists"


def experiment_not_active_message(experiment_id: str, stage: str) -> str:
    return f"The experiment {experiment_id} must be in the 'active' state. Current state is {stage}."
