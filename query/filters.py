"""The MLflow search grammar: filter strings and order_by clauses, parsed into typed clauses.

MLflow parses these with sqlparse and then picks the pieces apart (`mlflow/utils/search_utils.py`).
Here a small scanner-based recursive-descent parser reads the same language directly, so no text
ever reaches MongoDB except as a typed value:

    filter     := [clause (AND clause)*]
    clause     := identifier comparator value
                | identifier IS [NOT] NULL
                | identifier [NOT] IN '(' string (',' string)* ')'
    identifier := segment ('.' segment)*          segment: word | "quoted" | `quoted`
    comparator := '=' | '!=' | '>' | '>=' | '<' | '<=' | LIKE | ILIKE   (keywords any case)
    value      := 'string' | "string" | number
    order_by   := identifier [ASC | DESC]

Runs, experiments and logged models share this syntax; each has its own vocabulary below
(logged-models/search takes its order_by as structured objects, not as this grammar).

Identifiers are then split the way MLflow splits them (entity type before the first dot, key after
it, quotes stripped), checked against the entity's comparators and value types, and returned as
`Clause` / `OrderTerm` values. Error messages are MLflow's where it has a specific one; syntax
errors say where the parser stopped. Every error is an INVALID_PARAMETER_VALUE.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from common.errors import MlflowError

if TYPE_CHECKING:
    from query.requests import LoggedModelOrderBy

# --- entity vocabulary (mirrors SearchUtils / SearchExperimentsUtils) ---------------------------

METRIC = "metric"
PARAM = "parameter"
TAG = "tag"
ATTRIBUTE = "attribute"
DATASET = "dataset"

_RUN_ENTITIES = {
    "metric": METRIC, "metrics": METRIC,
    "parameter": PARAM, "parameters": PARAM, "param": PARAM, "params": PARAM,
    "tag": TAG, "tags": TAG,
    "attribute": ATTRIBUTE, "attributes": ATTRIBUTE, "attr": ATTRIBUTE, "run": ATTRIBUTE,
    "dataset": DATASET, "datasets": DATASET,
}
_RUN_ENTITY_NAMES = [METRIC, PARAM, TAG, ATTRIBUTE, DATASET]
_EXPERIMENT_ENTITIES = {"attribute": ATTRIBUTE, "tag": TAG, "tags": TAG}

COMPARISON_OPS = frozenset({"=", "!=", ">", ">=", "<", "<="})
STRING_OPS = frozenset({"=", "!=", "LIKE", "ILIKE"})
NULL_OPS = frozenset({"IS NULL", "IS NOT NULL"})
LIST_OPS = frozenset({"IN", "NOT IN"})
_ID_OPS = frozenset({"=", "!="}) | LIST_OPS

RUN_NUMERIC_ATTRIBUTES = frozenset({"start_time", "end_time", "created", "Created"})
RUN_STRING_ATTRIBUTES = frozenset({"run_id", "run_name", "status", "user_id", "artifact_uri",
                                   "run name", "Run name", "Run Name"})
RUN_ORDER_ATTRIBUTES = frozenset({"artifact_uri", "end_time", "run_id", "run_name", "start_time", "status",
                                  "user_id", "created", "Created"})
_RUN_ATTRIBUTE_ALIASES = {"created": "start_time", "Created": "start_time",
                          "run name": "run_name", "Run name": "run_name", "Run Name": "run_name"}
DATASET_KEYS = frozenset({"name", "digest", "context"})

EXPERIMENT_ATTRIBUTES = frozenset({"name", "experiment_id", "creation_time", "last_update_time"})
EXPERIMENT_NUMERIC_ATTRIBUTES = frozenset({"creation_time", "last_update_time"})

Value = float | int | str | tuple[str, ...] | None

_INT64 = 2**63


@dataclass(frozen=True)
class Clause:
    """One typed comparison: `kind` is an entity (METRIC ...), `key` the MLflow key or attribute."""

    kind: str
    key: str
    comparator: str
    value: Value


@dataclass(frozen=True)
class OrderTerm:
    kind: str
    key: str
    ascending: bool


# --- raw syntax ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Literal:
    kind: Literal["string", "number", "list", "word"]
    text: str  # as written, for messages
    value: str | tuple[str, ...]  # string body (quotes stripped, as MLflow does) / number text / items


@dataclass(frozen=True)
class _Comparison:
    identifier: str  # raw text, quotes included: MLflow splits it after parsing
    comparator: str  # upper case
    value: _Literal | None  # None for IS [NOT] NULL


def invalid(message: str) -> MlflowError:
    return MlflowError.invalid(message)


_WORD_RE = re.compile(r"\w+")
_NUMBER_RE = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?!\w)")
_OPERATOR_RE = re.compile(r"[<>=~!]+")
_WS_RE = re.compile(r"\s*")


class _Scanner:
    """Cursor over the text; every `read_*` either consumes what it names or raises."""

    def __init__(self, text: str, what: str):
        self.text = text
        self.pos = 0
        self.what = what  # "filter" / "order_by clause", for messages

    def error(self, detail: str) -> MlflowError:
        return invalid(f"Invalid {self.what} '{self.text}': {detail} at position {self.pos}.")

    def skip_ws(self) -> None:
        self.pos = _WS_RE.match(self.text, self.pos).end()  # type: ignore[union-attr]

    def eof(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def read_word(self) -> str | None:
        m = _WORD_RE.match(self.text, self.pos)
        if not m:
            return None
        self.pos = m.end()
        return m.group(0)

    def peek_word(self) -> str | None:
        m = _WORD_RE.match(self.text, self.pos)
        return m.group(0) if m else None

    def read_quoted(self, quote: str) -> str:
        """A quoted token, returned with its quotes. A doubled quote (and, for ' and ", a
        backslash-escaped one) stays inside the token, as in sqlparse."""
        start = self.pos
        i = self.pos + 1
        while i < len(self.text):
            ch = self.text[i]
            if ch == quote:
                if self.text.startswith(quote * 2, i):
                    i += 2
                    continue
                self.pos = i + 1
                return self.text[start:self.pos]
            i += 2 if ch == "\\" and quote != "`" and self.text.startswith(quote, i + 1) else 1
        raise self.error(f"unterminated {quote}-quoted text")

    def read_identifier(self) -> str:
        start = self.pos
        while True:
            ch = self.peek()
            if ch in ('"', "`"):
                self.read_quoted(ch)
            elif not self.read_word():
                raise self.error("expected an identifier such as metrics.rmse, params.lr or tags.\"my tag\"")
            if self.peek() != ".":
                return self.text[start:self.pos]
            self.pos += 1


def _strip_quotes(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _trim_backticks(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == "`":
        return text[1:-1]
    return text


def _read_value(sc: _Scanner) -> _Literal:
    sc.skip_ws()
    ch = sc.peek()
    if ch in ("'", '"'):
        text = sc.read_quoted(ch)
        return _Literal("string", text, text[1:-1])
    m = _NUMBER_RE.match(sc.text, sc.pos)
    if m:
        sc.pos = m.end()
        return _Literal("number", m.group(0), m.group(0))
    if ch == "(":
        return _read_list(sc)
    word = sc.read_word()
    if word:
        return _Literal("word", word, word)
    raise sc.error("expected a value (a quoted string or a number)")


def _read_list(sc: _Scanner) -> _Literal:
    start = sc.pos
    sc.pos += 1
    items: list[str] = []
    while True:
        sc.skip_ws()
        ch = sc.peek()
        if ch not in ("'", '"'):
            raise sc.error("expected a quoted string in the value list")
        items.append(sc.read_quoted(ch)[1:-1])
        sc.skip_ws()
        ch = sc.peek()
        sc.pos += 1
        if ch == ")":
            return _Literal("list", sc.text[start:sc.pos], tuple(items))
        if ch != ",":
            sc.pos -= 1
            raise sc.error("expected ',' or ')' in the value list")


def _read_comparison(sc: _Scanner) -> _Comparison:
    sc.skip_ws()
    identifier = sc.read_identifier()
    sc.skip_ws()
    m = _OPERATOR_RE.match(sc.text, sc.pos)
    if m:
        sc.pos = m.end()
        return _Comparison(identifier, m.group(0), _read_value(sc))
    word = (sc.read_word() or "").upper()
    if word in ("LIKE", "ILIKE"):
        return _Comparison(identifier, word, _read_value(sc))
    if word == "IS":
        sc.skip_ws()
        nxt = (sc.read_word() or "").upper()
        if nxt == "NOT":
            sc.skip_ws()
            nxt = "NOT " + (sc.read_word() or "").upper()
        if nxt not in ("NULL", "NOT NULL"):
            raise sc.error("expected NULL or NOT NULL after IS")
        return _Comparison(identifier, "IS " + nxt, None)
    if word == "NOT":
        sc.skip_ws()
        word = "NOT " + (sc.read_word() or "").upper()
    if word in ("IN", "NOT IN"):
        sc.skip_ws()
        if sc.peek() != "(":
            raise sc.error(f"expected a parenthesised list of quoted strings after {word}")
        return _Comparison(identifier, word, _read_list(sc))
    if word:
        # e.g. NOT LIKE: a comparator MLflow does not support; the typed layer names the valid ones
        return _Comparison(identifier, word, _read_value(sc))
    raise sc.error(f"expected a comparison operator after '{identifier}'")


def _parse_comparisons(text: str) -> list[_Comparison]:
    sc = _Scanner(text, "filter")
    sc.skip_ws()
    if sc.eof():
        return []
    out = [_read_comparison(sc)]
    while True:
        sc.skip_ws()
        if sc.eof():
            return out
        word = sc.peek_word()
        if word is None or word.upper() != "AND":
            if word is not None and word.upper() == "OR":
                raise invalid(f"Invalid clause(s) in filter string: 'OR'. Only AND is supported, in filter '{text}'.")
            raise sc.error("expected AND between clauses")
        sc.read_word()
        out.append(_read_comparison(sc))


def _set_repr(values: frozenset[str] | set[str]) -> str:
    return "{" + ", ".join(repr(v) for v in sorted(values)) + "}"


def _check_key(key: str) -> str:
    # Keys become MongoDB field names (encoded); these two can never be one.
    if not key or "\x00" in key:
        raise invalid(f"Invalid key {key!r}: a key must be non-empty and must not contain NUL characters.")
    return key


# --- runs --------------------------------------------------------------------------------------


def _run_identifier(raw: str, valid_attributes: frozenset[str]) -> tuple[str, str]:
    """(entity kind, key) like SearchUtils._get_identifier."""
    if "." in raw:
        entity_text, key = raw.split(".", 1)
        entity = _RUN_ENTITIES.get(_trim_backticks(entity_text))
        if entity is None:
            raise invalid(f"Invalid entity type '{_trim_backticks(entity_text)}'. Valid values are {_RUN_ENTITY_NAMES}")
    else:
        entity, key = ATTRIBUTE, raw
    key = _trim_backticks(_strip_quotes(key))
    if entity == ATTRIBUTE and key not in valid_attributes:
        raise invalid(f"Invalid attribute key '{key}' specified. Valid keys are '{_set_repr(valid_attributes)}'")
    if entity == DATASET and key not in DATASET_KEYS:
        raise invalid(f"Invalid dataset key '{key}' specified. Valid keys are '{_set_repr(DATASET_KEYS)}'")
    return entity, _check_key(key)


def _string_value(lit: _Literal, entity_label: str) -> str:
    if lit.kind == "string":
        return str(lit.value)
    if lit.kind == "word":
        raise invalid(
            "Parameter value is either not quoted or unidentified quote types used for string value"
            f" {lit.text}. Use either single or double quotes."
        )
    raise invalid(f"Expected a quoted string value for {entity_label}. Got value {lit.text}")


def _number_value(lit: _Literal, message: str) -> int | float:
    if lit.kind != "number":
        raise invalid(message)
    text = str(lit.value)
    if not re.fullmatch(r"-?\d+", text):
        return float(text)
    number = int(text)
    return number if -_INT64 <= number < _INT64 else float(number)  # BSON has no wider integer


def _run_value(kind: str, key: str, lit: _Literal) -> Value:
    if kind == METRIC:
        return float(_number_value(lit, f"Expected numeric value type for metric. Found {lit.text}"))
    if kind in (PARAM, TAG):
        if lit.kind == "list":
            raise invalid(f"Expected a quoted string value for {kind} (e.g. 'my-value'). Got value {lit.text}")
        return _string_value(lit, f"{kind} (e.g. 'my-value')")
    if kind == ATTRIBUTE and key in RUN_NUMERIC_ATTRIBUTES:
        return _number_value(lit, f"Expected numeric value type for numeric attribute: {key}. Found {lit.text}")
    if lit.kind == "list":
        if kind == ATTRIBUTE and key != "run_id":
            raise invalid("Only ['run_id'] attributes support comparison with a list of quoted string values.")
        return tuple(lit.value)
    return _string_value(lit, "attributes" if kind == ATTRIBUTE else "dataset attributes")


def _run_comparators(kind: str, key: str) -> frozenset[str]:
    if kind == METRIC or (kind == ATTRIBUTE and key in RUN_NUMERIC_ATTRIBUTES):
        return COMPARISON_OPS
    if kind in (PARAM, TAG):
        return STRING_OPS | NULL_OPS
    return STRING_OPS | LIST_OPS  # string attributes, datasets


def _run_clause(comp: _Comparison) -> Clause:
    kind, key = _run_identifier(comp.identifier, RUN_NUMERIC_ATTRIBUTES | RUN_STRING_ATTRIBUTES)
    if comp.comparator in NULL_OPS:
        if kind not in (PARAM, TAG):
            raise invalid(f"IS NULL / IS NOT NULL is only supported for tags and params, not for '{kind}' '{key}'")
        return Clause(kind, key, comp.comparator, None)
    assert comp.value is not None
    value = _run_value(kind, key, comp.value)
    allowed = _run_comparators(kind, key)
    if comp.comparator not in allowed:
        raise invalid(f"Invalid comparator '{comp.comparator}' not one of '{_set_repr(allowed)}'")
    if (comp.comparator in LIST_OPS) != isinstance(value, tuple):
        raise invalid(f"Invalid comparator '{comp.comparator}' for the value {comp.value.text}: lists of quoted"
                      " strings go with IN and NOT IN, single values with the other comparators.")
    if kind == ATTRIBUTE:
        key = _RUN_ATTRIBUTE_ALIASES.get(key, key)
    return Clause(kind, key, comp.comparator, value)


def parse_run_filter(text: str | None) -> list[Clause]:
    """`runs/search` filter -> typed clauses (AND-ed). Raises INVALID_PARAMETER_VALUE."""
    return [_run_clause(c) for c in _parse_comparisons(text or "")]


def _parse_order_by(text: str) -> tuple[str, bool]:
    sc = _Scanner(text, "order_by clause")
    sc.skip_ws()
    try:
        identifier = sc.read_identifier()
    except MlflowError:
        raise invalid(f"Invalid order_by clause '{text}'. Could not be parsed.") from None
    sc.skip_ws()
    ascending = True
    if not sc.eof():
        word = sc.read_word()
        if word is None:
            raise invalid(f"Invalid order_by clause '{text}'. Could not be parsed.")
        if word.lower() not in ("asc", "desc"):
            raise invalid(f"Invalid ordering key in order_by clause '{text}'.")
        ascending = word.lower() == "asc"
        sc.skip_ws()
        if not sc.eof():
            raise invalid(f"Invalid order_by clause '{text}'. Could not be parsed.")
    return identifier, ascending


def parse_run_order_by(order_by: list[str] | None) -> list[OrderTerm]:
    """`runs/search` order_by -> terms; duplicates are an error (MLflow answers them with a 500)."""
    terms: list[OrderTerm] = []
    seen: set[tuple[str, str]] = set()
    for text in order_by or []:
        identifier, ascending = _parse_order_by(text)
        kind, key = _run_identifier(identifier, RUN_ORDER_ATTRIBUTES)
        if kind == DATASET:
            raise invalid(f"Invalid identifier type '{kind}'")
        if kind == ATTRIBUTE:
            key = _RUN_ATTRIBUTE_ALIASES.get(key, key)
        if (kind, key) in seen:
            raise invalid(f"`order_by` contains duplicate fields: {order_by}")
        seen.add((kind, key))
        terms.append(OrderTerm(kind, key, ascending))
    return terms


# --- experiments -------------------------------------------------------------------------------


def _experiment_identifier(raw: str, valid_attributes: frozenset[str]) -> tuple[str, str]:
    if "." in raw:
        entity_text, key = raw.split(".", 1)
        entity = _EXPERIMENT_ENTITIES.get(entity_text)
        if entity is None:
            raise invalid(
                f"Invalid entity type '{entity_text}'. Valid entity types are ('attribute', 'tag', 'tags')"
            )
    else:
        entity, key = ATTRIBUTE, raw
    key = _trim_backticks(_strip_quotes(key))
    if entity == ATTRIBUTE and key not in valid_attributes:
        raise invalid(f"Invalid attribute key '{key}' specified. Valid keys are '{_set_repr(valid_attributes)}'")
    return entity, _check_key(key)


def parse_experiment_id(value: str) -> str:
    """Experiment ids are integers in MLflow's SQL store; ours are their decimal strings."""
    try:
        return str(int(value))
    except (TypeError, ValueError):
        raise invalid(f"Invalid experiment ID '{value}'. Experiment ID must be a valid integer.") from None


def _experiment_attribute_clause(key: str, comparator: str, lit: _Literal) -> Clause:
    if key in EXPERIMENT_NUMERIC_ATTRIBUTES:
        number = _number_value(lit, f"Expected numeric value type for numeric attribute: {key}. Found {lit.text}")
        if comparator not in COMPARISON_OPS:
            raise invalid(f"Invalid comparator for numeric attribute: {comparator}")
        if isinstance(number, float):
            raise invalid(f"Invalid value for numeric attribute '{key}': {lit.text!r}")
        return Clause(ATTRIBUTE, key, comparator, number)
    if lit.kind == "list":
        if key != "experiment_id":
            raise invalid("Only ['experiment_id'] attributes support comparison with a list of quoted string values.")
        value: Value = tuple(lit.value)
    else:
        value = _string_value(lit, "attributes")
    if key == "experiment_id":
        if comparator not in _ID_OPS or (comparator in LIST_OPS) != isinstance(value, tuple):
            raise invalid(f"Invalid comparator for experiment_id: {comparator}")
        value = tuple(parse_experiment_id(v) for v in value) if isinstance(value, tuple) else parse_experiment_id(str(value))
        return Clause(ATTRIBUTE, key, comparator, value)
    if comparator not in STRING_OPS:
        raise invalid(f"Invalid comparator for string attribute: {comparator}")
    return Clause(ATTRIBUTE, key, comparator, value)


def _experiment_clause(comp: _Comparison) -> Clause:
    kind, key = _experiment_identifier(comp.identifier, EXPERIMENT_ATTRIBUTES)
    if comp.comparator in NULL_OPS:
        if kind != TAG:
            raise invalid(f"IS NULL / IS NOT NULL is only supported for tags, not for attribute '{key}'")
        return Clause(TAG, key, comp.comparator, None)
    assert comp.value is not None
    if kind == ATTRIBUTE:
        return _experiment_attribute_clause(key, comp.comparator, comp.value)
    if comp.value.kind in ("number", "list"):
        raise invalid(f"Expected a quoted string value for tag (e.g. 'my-value'). Got value {comp.value.text}")
    value = _string_value(comp.value, "tag (e.g. 'my-value')")
    if comp.comparator not in STRING_OPS:
        raise invalid(f"Invalid comparator for tag: {comp.comparator}")
    return Clause(TAG, key, comp.comparator, value)


def parse_experiment_filter(text: str | None) -> list[Clause]:
    """`experiments/search` filter -> typed clauses (AND-ed)."""
    return [_experiment_clause(c) for c in _parse_comparisons(text or "")]


def parse_experiment_order_by(order_by: list[str] | None) -> list[OrderTerm]:
    terms: list[OrderTerm] = []
    for text in order_by or []:
        identifier, ascending = _parse_order_by(text)
        kind, key = _experiment_identifier(identifier, EXPERIMENT_ATTRIBUTES)
        if kind != ATTRIBUTE:
            raise invalid(f"Invalid order_by entity: {kind}")
        terms.append(OrderTerm(kind, key, ascending))
    return terms


# --- logged models -----------------------------------------------------------------------------
#
# `mlflow/utils/search_logged_model_utils.py` (what the SQL store parses with): entity prefixes are
# exactly `attributes.`, `metrics.`, `params.`, `tags.`; a bare identifier is an attribute, with
# the store's aliases; metrics and timestamp attributes are numeric, everything else a string.

MODEL_ENTITIES = {"attributes": ATTRIBUTE, "metrics": METRIC, "params": PARAM, "tags": TAG}
MODEL_ATTRIBUTE_ALIASES = {
    "creation_time": "creation_timestamp_ms", "creation_timestamp": "creation_timestamp_ms",
    "last_updated_time": "last_updated_timestamp_ms", "last_updated_timestamp": "last_updated_timestamp_ms",
}
MODEL_NUMERIC_ATTRIBUTES = frozenset({"creation_timestamp_ms", "last_updated_timestamp_ms"})
MODEL_FILTER_ATTRIBUTES = frozenset({"name", "model_id", "model_type", "status", "source_run_id"}) | MODEL_NUMERIC_ATTRIBUTES
# order_by takes any column of the SQL store's logged_models table
MODEL_ORDER_ATTRIBUTES = MODEL_FILTER_ATTRIBUTES | {"experiment_id", "artifact_location", "lifecycle_stage",
                                                    "status_message"}
_MODEL_NUMERIC_OPS = ("<", "<=", ">", ">=", "=", "!=")
_MODEL_STRING_OPS = ("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN")
_MODEL_ENTITY_LABELS = {METRIC: "metrics", PARAM: "params", TAG: "tags"}


@dataclass(frozen=True)
class ModelOrderTerm:
    """One `order_by` entry of logged-models/search: an attribute (alias resolved) or a metric key,
    whose latest value is taken among the entries on the given dataset (if any)."""

    kind: str  # ATTRIBUTE | METRIC
    key: str
    ascending: bool
    dataset_name: str | None = None
    dataset_digest: str | None = None


def _model_attribute(key: str, valid: frozenset[str]) -> str:
    key = MODEL_ATTRIBUTE_ALIASES.get(key, key)
    if key not in valid:
        shown = valid | {k for k, v in MODEL_ATTRIBUTE_ALIASES.items() if v in valid}
        raise invalid(f"Invalid attribute key '{key}' specified. Valid keys are '{_set_repr(shown)}'")
    return key


def _model_identifier(raw: str) -> tuple[str, str]:
    entity_text, dot, key = raw.partition(".")
    if dot and re.fullmatch("[a-z]+", entity_text):
        entity = MODEL_ENTITIES.get(entity_text)
        if entity is None:
            raise invalid(f"Invalid entity type: {entity_text!r}. Expected one of {list(MODEL_ENTITIES)}.")
    else:
        entity, key = ATTRIBUTE, raw
    key = _trim_backticks(_strip_quotes(key))
    if entity == ATTRIBUTE:
        return entity, _model_attribute(key, MODEL_FILTER_ATTRIBUTES)
    return entity, _check_key(key)


def _model_clause(comp: _Comparison) -> Clause:
    kind, key = _model_identifier(comp.identifier)
    numeric = kind == METRIC or key in MODEL_NUMERIC_ATTRIBUTES
    ops = _MODEL_NUMERIC_OPS if numeric else _MODEL_STRING_OPS
    label = key if kind == ATTRIBUTE else f"{_MODEL_ENTITY_LABELS[kind]}.{key}"
    if comp.comparator not in ops:
        raise invalid(f"Invalid comparison operator for {label}: {comp.comparator!r}. Expected one of {ops}.")
    assert comp.value is not None  # IS [NOT] NULL is in neither operator list
    lit = comp.value
    if numeric:
        number = _number_value(lit, f"Expected a numeric value for {label}. Found {lit.text}")
        return Clause(kind, key, comp.comparator, float(number) if kind == METRIC else number)
    if comp.comparator in LIST_OPS:
        if lit.kind != "list":
            raise invalid(f"Expected a parenthesised list of quoted strings after {comp.comparator} for {label}."
                          f" Got value {lit.text}")
        return Clause(kind, key, comp.comparator, tuple(lit.value))
    if lit.kind == "list":
        raise invalid(f"A list of values goes with IN or NOT IN, not {comp.comparator} (for {label}).")
    return Clause(kind, key, comp.comparator, _string_value(lit, label))


def parse_model_filter(text: str | None) -> list[Clause]:
    """`logged-models/search` filter -> typed clauses (AND-ed). Raises INVALID_PARAMETER_VALUE."""
    return [_model_clause(c) for c in _parse_comparisons(text or "")]


def parse_model_order_by(items: Sequence[LoggedModelOrderBy]) -> list[ModelOrderTerm]:
    """`order_by` objects -> terms. Like the SQL store: a name without a dot is an attribute column,
    `metrics.<key>` a metric (the key taken verbatim: it is a structured field, not a grammar), any
    other entity an error. A repeated field cannot change the order, so it is dropped."""
    terms: list[ModelOrderTerm] = []
    seen: set[tuple[str, str, str | None, str | None]] = set()
    for item in items:
        field_name = item.field_name
        if "." not in field_name:
            key = MODEL_ATTRIBUTE_ALIASES.get(field_name, field_name)
            if key not in MODEL_ORDER_ATTRIBUTES:
                raise invalid(f"Invalid order by field name: {field_name}")
            term = ModelOrderTerm(ATTRIBUTE, key, item.ascending)
        else:
            entity, key = field_name.split(".", 1)
            if entity != "metrics":
                raise invalid(f"Invalid order by field name: {field_name}. Only metrics are supported.")
            term = ModelOrderTerm(METRIC, _check_key(key), item.ascending, item.dataset_name or None,
                                  item.dataset_digest or None)
        ident = (term.kind, term.key, term.dataset_name, term.dataset_digest)
        if ident not in seen:
            seen.add(ident)
            terms.append(term)
    return terms
