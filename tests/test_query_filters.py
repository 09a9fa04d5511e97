"""The search grammar and its MongoDB translation, without a database.

MLflow's own parser (`SearchUtils`, a dev dependency) is the oracle for what the grammar accepts
and how it reads it; the translation is checked for SQL-store semantics and for safety: user text
only ever lands in values, never in field paths, operators or regexes.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from mlflow.exceptions import MlflowException
from mlflow.utils.search_utils import SearchExperimentsUtils, SearchUtils

from common.errors import INVALID_PARAMETER_VALUE, MlflowError
from query import requests as rq
from query.experiments import plan_experiment_search
from query.filters import (
    Clause,
    OrderTerm,
    parse_experiment_filter,
    parse_experiment_order_by,
    parse_run_filter,
    parse_run_order_by,
)
from query.paging import after_condition, decode_token, encode_token, fingerprint
from query.runs import plan_run_search
from query.translate import SortKey, like_regex, metrics_present, run_filter, run_sort_plan

# --- grammar: agreement with MLflow's parser -----------------------------------------------------

AGREED_FILTERS = [
    "",
    "metrics.rmse < 1",
    "metric.rmse <= 0.5",
    "metrics.rmse >= -2.5 and params.lr = '0.01'",
    "metrics.acc != 1e3",
    "metrics.`acc top1` > 0.5",
    'metrics."acc.top1" > 0.5',
    "params.optimizer LIKE 'ad%'",
    "param.optimizer ILIKE '%AM'",
    "parameters.x != 'y'",
    "tags.`mlflow.source.type` = 'LOCAL'",
    "tag.team = \"ml\"",
    "tags.team IS NULL",
    "params.x IS NOT NULL",
    "attributes.status = 'FINISHED'",
    "attribute.user_id != 'bob'",
    "attr.run_name LIKE 'r_'",
    "run.artifact_uri ILIKE '%artifacts'",
    "run_name = 'r1'",
    "`Run name` = 'r1'",
    "attributes.start_time > 100",
    "created >= 5",
    "Created < 5",
    "attributes.end_time != 7",
    "attributes.run_id IN ('a', 'b')",
    "attributes.run_id NOT IN ('a')",
    "`attributes`.`run_name` = 'x'",
    "dataset.name = 'train'",
    "datasets.digest != 'abc'",
    "dataset.context IN ('train', 'eval')",
    "params.x = 'it''s'",
    "metrics.a > 1 AND metrics.b < 2 AND params.c = 'd' AND tags.e != 'f'",
    # rejected by both
    "metrics.a > 1 OR metrics.b < 2",
    "foo.a = 1",
    "Metrics.a = 1",
    "attributes.foo = 'x'",
    "attributes.status IN ('x')",
    "metrics.a IS NULL",
    "attributes.end_time IS NULL",
    "metrics.a LIKE '1'",
    "metrics.a = 'x'",
    "params.a = 5",
    "params.a = abc",
    "tags.a > 'x'",
    "attributes.start_time = 'x'",
    "attributes.run_name > 'x'",
    "params.a == 'x'",
    "params.a <> 'x'",
    "params.a NOT LIKE 'x'",
    "params.a = 'x",
    "params.a",
    "params.a =",
    "= 'x'",
    "dataset.foo = 'x'",
    "(metrics.a > 1)",
]


def _ours(text: str) -> list[tuple] | str:
    try:
        return [(c.kind, c.key, c.comparator, c.value) for c in parse_run_filter(text)]
    except MlflowError as err:
        assert err.error_code == INVALID_PARAMETER_VALUE and err.http_status == 400
        return "error"


def _mlflow(text: str) -> list[tuple] | str:
    try:
        parsed = SearchUtils.parse_search_filter(text)
        out = []
        for c in parsed:
            comparator = c["comparator"].upper()
            key = SearchUtils.translate_key_alias(c["key"]) if c["type"] == "attribute" else c["key"]
            # run the same type/comparator checks the SQL store runs after parsing
            if not (SearchUtils.is_metric(c["type"], comparator) or SearchUtils.is_param(c["type"], comparator)
                    or SearchUtils.is_tag(c["type"], comparator) or SearchUtils.is_attribute(c["type"], c["key"], comparator)
                    or SearchUtils.is_dataset(c["type"], comparator)):
                return "error"
            value = c["value"]
            if c["type"] == "metric":
                value = float(value)
            elif isinstance(value, list):
                value = tuple(value)
            out.append((c["type"], key, comparator, value))
        return out
    except MlflowException:
        return "error"


@pytest.mark.parametrize("text", AGREED_FILTERS)
def test_filter_is_read_like_mlflow_reads_it(text: str) -> None:
    assert _ours(text) == _mlflow(text)


def test_blank_filter_is_no_filter() -> None:
    # MLflow answers a whitespace-only filter with "Could not be parsed"; it means "no filter".
    assert parse_run_filter("  \t ") == [] and parse_run_filter(None) == []


def test_missing_and_between_clauses_is_rejected_although_mlflow_ignores_it() -> None:
    # sqlparse silently drops the second clause here; a silently wrong result is worse than a 400.
    assert _mlflow("metrics.a > 1 metrics.b > 2") != "error"
    with pytest.raises(MlflowError, match="expected AND"):
        parse_run_filter("metrics.a > 1 metrics.b > 2")


@pytest.mark.parametrize("text", [
    "name = 'e1'", "name != 'e1'", "name LIKE 'e%'", "attribute.name ILIKE '%E'", "tags.team = 'ml'",
    "tag.`a.b` != 'x'", "tags.team IS NULL", "creation_time > 5", "last_update_time <= 10",
    "name = 'a' AND tags.b LIKE 'c%'",
    "attr.name = 'x'", "creation_time > 1.5", "name IN ('a')", "name IS NULL", "foo = 'x'", "tags.a = 1",
    "name > 'x'", "experiment_id = 'abc'", "creation_time LIKE '1'",
])
def test_experiment_filter_is_read_like_mlflow_reads_it(text: str) -> None:
    try:
        ours: Any = [(c.kind, c.key, c.comparator, c.value) for c in parse_experiment_filter(text)]
    except MlflowError:
        ours = "error"
    try:
        theirs: Any = []
        for c in SearchExperimentsUtils.parse_search_filter(text):
            if c["type"] == "attribute" and c["key"] == "name" and c["comparator"] not in ("=", "!=", "LIKE", "ILIKE"):
                raise MlflowException("string comparator")
            if c["key"] in ("creation_time", "last_update_time"):
                if isinstance(c["value"], float) or c["comparator"] not in ("=", "!=", "<", "<=", ">", ">="):
                    raise MlflowException("numeric")
            theirs.append((c["type"], c["key"], c["comparator"], c["value"]))
    except MlflowException:
        theirs = "error"
    if text == "experiment_id = 'abc'":  # the SQL store rejects it when binding the value
        theirs = "error"
    assert ours == theirs


# --- malformed input: always a 400 with a readable message ------------------------------------------

MALFORMED = [
    ("metrics.a > 1 OR metrics.b > 2", "Only AND is supported"),
    ("foo.bar = 'x'", "Invalid entity type 'foo'"),
    ("attributes.color = 'red'", "Invalid attribute key 'color'"),
    ("metrics.a LIKE 5", "Invalid comparator 'LIKE'"),
    ("metrics.a = 'x'", "Expected numeric value type for metric"),
    ("params.a = 5", "Expected a quoted string value for parameter"),
    ("params.a = abc", "not quoted"),
    ("params.a = 'unterminated", "unterminated"),
    ('tags."unterminated = \'x\'', "unterminated"),
    ("params.a == 'x'", "Invalid comparator '=='"),
    ("metrics.a IS NULL", "IS NULL / IS NOT NULL is only supported for tags and params"),
    ("attributes.status IN ('a')", "Only ['run_id']"),
    ("attributes.run_id IN 'a'", "parenthesised list"),
    ("attributes.run_id IN ('a', 5)", "quoted string"),
    ("attributes.run_id = ('a')", "lists of quoted strings go with IN"),
    ("attributes.start_time > 'yesterday'", "Expected numeric value type for numeric attribute"),
    ("metrics.a >", "expected a value"),
    ("metrics.a", "expected a comparison operator"),
    ("> 1", "expected an identifier"),
    ("(metrics.a > 1)", "expected an identifier"),
    ("metrics.a > 1 AND", "expected an identifier"),
    ("metrics.a > 1 metrics.b > 2", "expected AND"),
    ("metrics. a > 1", "expected an identifier"),
    ('params."" = \'x\'', "must be non-empty"),
    ("params.`a\x00b` = 'x'", "NUL"),
    ("metrics.a > 1; DROP TABLE runs", "expected AND"),
    ("params.a = 'x' AND $where = '1'", "expected an identifier"),
    ("dataset.size = 'x'", "Invalid dataset key"),
    ("params.a IS 'x'", "expected NULL or NOT NULL"),
]


@pytest.mark.parametrize(("text", "fragment"), MALFORMED)
def test_malformed_filter_is_invalid_parameter_value(text: str, fragment: str) -> None:
    with pytest.raises(MlflowError) as info:
        parse_run_filter(text)
    assert info.value.error_code == INVALID_PARAMETER_VALUE
    assert info.value.http_status == 400
    assert fragment in info.value.message


@pytest.mark.parametrize(("order_by", "fragment"), [
    (["metrics.a ASCX"], "Invalid ordering key"),
    (["metrics.a DESC extra"], "Could not be parsed"),
    (["metrics.a, metrics.b"], "Could not be parsed"),
    (["'metrics.a'"], "Could not be parsed"),
    (["foo.a"], "Invalid entity type 'foo'"),
    (["attributes.color"], "Invalid attribute key 'color'"),
    (["dataset.name"], "Invalid identifier type 'dataset'"),
    (["metrics.a", "metric.a DESC"], "duplicate fields"),
    (["created", "start_time DESC"], "duplicate fields"),
])
def test_malformed_order_by_is_invalid_parameter_value(order_by: list[str], fragment: str) -> None:
    with pytest.raises(MlflowError) as info:
        parse_run_order_by(order_by)
    assert info.value.http_status == 400 and fragment in info.value.message


def test_order_by_terms() -> None:
    assert parse_run_order_by(["metrics.rmse DESC", "params.`a b` asc", "created", 'tags."x.y"']) == [
        OrderTerm("metric", "rmse", False), OrderTerm("parameter", "a b", True),
        OrderTerm("attribute", "start_time", True), OrderTerm("tag", "x.y", True),
    ]
    assert parse_experiment_order_by(["name", "creation_time DESC"]) == [
        OrderTerm("attribute", "name", True), OrderTerm("attribute", "creation_time", False)]


# --- translation ---------------------------------------------------------------------------------


def _and(text: str) -> list[dict]:
    return run_filter(["1"], ["active"], parse_run_filter(text))["$and"]


def test_metric_comparisons_exclude_nan_and_missing() -> None:
    assert _and("metrics.rmse <= 2") == [{"metrics.rmse.v": {"$lte": 2.0}, "metrics.rmse.nan": {"$ne": True}}]
    # NaN != anything, but a run without the metric does not match
    assert _and("metrics.rmse != 2") == [
        {"$or": [{"metrics.rmse.v": {"$nin": [2.0, None]}}, {"metrics.rmse.nan": True}]}]


def test_param_and_attribute_translation() -> None:
    assert _and("params.lr = '0.1' AND tags.t != 'x' AND attributes.status = 'FINISHED'") == [
        {"params.lr": {"$eq": "0.1"}}, {"tags.t": {"$nin": ["x", None]}}, {"status": {"$eq": "FINISHED"}}]
    assert _and("attributes.run_id IN ('a', 'b')") == [{"_id": {"$in": ["a", "b"]}}]
    assert _and("attributes.run_id NOT IN ('a')") == [{"_id": {"$nin": ["a", None]}}]
    assert _and("created > 5 AND attributes.end_time <= 9") == [
        {"start_time": {"$gt": 5}}, {"end_time": {"$lte": 9}}]
    assert _and("tags.t IS NULL AND params.p IS NOT NULL") == [
        {"tags.t": {"$exists": False}}, {"params.p": {"$exists": True}}]
    match = run_filter(["3", "1"], ["active", "deleted"], [])
    assert match == {"experiment_id": {"$in": ["3", "1"]}, "lifecycle_stage": {"$in": ["active", "deleted"]}}


OPERATORS = {"$and", "$or", "$eq", "$ne", "$nin", "$in", "$gt", "$gte", "$lt", "$lte", "$exists", "$regex",
             "$options", "$elemMatch"}
ROOTS = {"metrics", "params", "tags", "_id", "run_name", "status", "user_id", "artifact_uri", "start_time",
         "end_time", "dataset_inputs", "experiment_id", "lifecycle_stage"}


def _walk(node: Any, values: list[Any]) -> None:
    """Assert every key is a known operator or a safe field path; collect leaf values."""
    if isinstance(node, dict):
        for key, child in node.items():
            if key.startswith("$"):
                assert key in OPERATORS, key
            else:
                segments = key.split(".")
                assert all(segments), key
                assert segments[0] in ROOTS or key in ("dataset.name", "dataset.digest", "key", "value", "tags"), key
                if segments[0] in ("metrics", "params", "tags") and len(segments) > 1:
                    assert len(segments) == 2 or (segments[0] == "metrics" and segments[2] in ("v", "nan")), key
                    assert "$" not in segments[1]
            if key == "$regex":
                values.append(("regex", child))
            else:
                _walk(child, values)
    elif isinstance(node, list):
        for child in node:
            _walk(child, values)
    else:
        values.append(node)


HOSTILE = ['{"$gt": ""}', "$where", "'); db.runs.drop(); ('", ".*", "a.b$c", "$$ROOT", "%", "_", "a\\b", "\n"]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_user_text_is_only_ever_a_value(hostile: str) -> None:
    quoted = hostile.replace("'", "''")
    text = (f"params.x = '{quoted}' AND tags.`k` != '{quoted}' AND attributes.user_id LIKE '{quoted}'"
            f" AND params.\"{hostile.replace(chr(34), '')}x\" = 'v'")
    query = run_filter(["1"], ["active"], parse_run_filter(text))
    values: list[Any] = []
    _walk(query, values)
    assert quoted in values  # as written between the quotes, like MLflow (no unescaping)


def test_injection_attempt_is_a_literal_string_value() -> None:
    assert _and("""params.x = '{"$gt": ""}'""") == [{"params.x": {"$eq": '{"$gt": ""}'}}]


def test_keys_with_dollar_and_dot_stay_inside_their_map() -> None:
    assert _and('params."$where" = \'1\' AND tags.`a.b` = \'2\' AND metrics."x.$y" > 0') == [
        {"params.%24where": {"$eq": "1"}}, {"tags.a%2Eb": {"$eq": "2"}},
        {"metrics.x%2E%24y.v": {"$gt": 0.0}, "metrics.x%2E%24y.nan": {"$ne": True}},
    ]
    # a key cannot reach another map either
    assert _and("params.`tags.x` = '1'") == [{"params.tags%2Ex": {"$eq": "1"}}]


def _sql_like(pattern: str, text: str, ignore_case: bool = False) -> bool:
    """Reference LIKE, by dynamic programming (no regex involved)."""
    if ignore_case:
        pattern, text = pattern.lower(), text.lower()
    memo: dict[tuple[int, int], bool] = {}

    def match(i: int, j: int) -> bool:
        if (i, j) not in memo:
            if i == len(pattern):
                memo[i, j] = j == len(text)
            elif pattern[i] == "%":
                memo[i, j] = match(i + 1, j) or (j < len(text) and match(i, j + 1))
            else:
                memo[i, j] = j < len(text) and (pattern[i] == "_" or pattern[i] == text[j]) and match(i + 1, j + 1)
        return memo[i, j]

    return match(0, 0)


@pytest.mark.parametrize("pattern", ["abc", "a%", "%c", "%b%", "a_c", "a.c", "a%%c", "%_%", "(a)*[b]+?{c}|^$\\", "%\n", "a%c", "_", "%"])
@pytest.mark.parametrize("text", ["abc", "ABC", "a.c", "axc", "abc\n", "a\nc", "(a)*[b]+?{c}|^$\\", "", "b\n", "ac"])
def test_like_regex_matches_sql_like(pattern: str, text: str) -> None:
    for ignore_case in (False, True):
        spec = like_regex(pattern, ignore_case=ignore_case)
        flags = re.S | (re.I if "i" in spec["$options"] else 0)
        assert bool(re.search(spec["$regex"], text, flags)) == _sql_like(pattern, text, ignore_case), (pattern, text)


def test_like_regex_collapses_repeated_wildcards() -> None:
    assert like_regex("a%%%b", ignore_case=False)["$regex"] == like_regex("a%b", ignore_case=False)["$regex"]


def test_like_regex_escapes_nul_for_bson() -> None:
    assert "\x00" not in like_regex("a\x00b", ignore_case=False)["$regex"]


# --- sorting and paging --------------------------------------------------------------------------


def test_default_order_is_start_time_desc_then_run_id() -> None:
    plan = run_sort_plan([])
    assert plan.computed == {}
    assert plan.mongo_sort() == {"start_time": -1, "_id": 1}


def test_metric_order_flags_nan_and_missing_last() -> None:
    plan = run_sort_plan(parse_run_order_by(["metrics.rmse DESC"]))
    assert set(plan.computed) == {"_o0f", "_o0v"}
    assert plan.mongo_sort() == {"_o0f": 1, "_o0v": -1, "start_time": -1, "_id": 1}
    # user order on start_time replaces the default tie-breaker and uses the stored field
    assert run_sort_plan(parse_run_order_by(["attributes.start_time ASC"])).mongo_sort() == {"start_time": 1, "_id": 1}


def test_metric_order_sorts_the_stored_value_when_the_filter_guarantees_it() -> None:
    clauses = parse_run_filter("metrics.rmse < 0.5 and metrics.mae != 1 and params.model = 'tree'")
    assert metrics_present(clauses) == {"rmse"}  # `!=` matches NaN and keeps runs without a value out
    plan = run_sort_plan(parse_run_order_by(["metrics.rmse DESC", "metrics.mae ASC"]), metrics_present(clauses))
    assert set(plan.computed) == {"_o1f", "_o1v"}  # mae still needs its missing/NaN flag
    assert plan.mongo_sort() == {"metrics.rmse.v": -1, "_o1f": 1, "_o1v": 1, "start_time": -1, "_id": 1}
    plain = run_sort_plan(parse_run_order_by(["metrics.rmse ASC"]), metrics_present(clauses))
    assert plain.computed == {}  # a plain find serves it
    assert plain.mongo_sort() == {"metrics.rmse.v": 1, "start_time": -1, "_id": 1}


def test_page_token_round_trip_and_rejections() -> None:
    search = fingerprint("runs", ["1"], "", [], ["active"])
    token = encode_token(search, [0, 1.5, 123, "abc"])
    assert decode_token(token, search, 4) == [0, 1.5, 123, "abc"]
    assert decode_token(None, search, 4) is None
    bad = [
        ("!!!not base64!!!", "base64"),
        (encode_token("other-search", [0, 1.5, 123, "abc"]), "different search"),
        (encode_token(search, [0, 1.5]), "wrong number"),
        (encode_token(search, [0, {"$gt": ""}, 1, "x"]), "unexpected value type"),
        (encode_token(search, [0, [1], 1, "x"]), "unexpected value type"),
        (encode_token(search, [0, 2**70, 1, "x"]), "out of range"),
        ("eyJvZmZzZXQiOiAyfQ==", "not a token"),  # an MLflow offset token
    ]
    for token, fragment in bad:
        with pytest.raises(MlflowError) as info:
            decode_token(token, search, 4)
        assert info.value.http_status == 400 and fragment in info.value.message, token


def test_after_condition_is_lexicographic() -> None:
    keys = [SortKey("_o0f", True, nullable=False), SortKey("_o0v", False), SortKey("_id", True, nullable=False)]
    assert after_condition(keys, [0, 5.0, "r1"]) == {"$or": [
        {"_o0f": {"$gt": 0}},
        {"$and": [{"_o0f": {"$eq": 0}}, {"$or": [{"_o0v": {"$lt": 5.0}}, {"_o0v": None}]}]},
        {"$and": [{"_o0f": {"$eq": 0}}, {"_o0v": {"$eq": 5.0}}, {"_id": {"$gt": "r1"}}]},
    ]}
    # a null value sorts lowest: nothing comes after it in descending order
    assert after_condition(keys, [2, None, "r1"]) == {"$or": [
        {"_o0f": {"$gt": 2}}, {"$and": [{"_o0f": {"$eq": 2}}, {"_o0v": {"$eq": None}}, {"_id": {"$gt": "r1"}}]}]}


# --- request rules -------------------------------------------------------------------------------


def test_search_runs_max_results_limits() -> None:
    with pytest.raises(MlflowError, match="It must be a positive integer"):
        plan_run_search(rq.SearchRuns(experiment_ids=["1"], max_results=0))
    body = {"experiment_ids": ["1"], "max_results": 50001}
    with pytest.raises(MlflowError) as info:
        rq.decode(body, rq.SearchRuns)
    assert info.value.message == ("Invalid value 50001 for parameter 'max_results' supplied:  Hint: Value was of"
                                  " type 'int'. See the API docs for more information about request parameters.")
    plan = plan_run_search(rq.decode({"experiment_ids": ["1", 2], "max_results": "7"}, rq.SearchRuns))
    assert plan is not None and plan.limit == 7
    assert plan.match["experiment_id"] == {"$in": ["1", "2"]}
    assert plan_run_search(rq.SearchRuns()) is None  # no experiments: nothing to search


def test_search_runs_rejects_non_integer_experiment_ids() -> None:
    with pytest.raises(MlflowError, match="Invalid experiment ID 'abc'. Experiment ID must be a valid integer."):
        plan_run_search(rq.SearchRuns(experiment_ids=["abc"]))


def test_view_types() -> None:
    assert rq.view_stages(None) == ["active"]
    assert rq.view_stages("DELETED_ONLY") == ["deleted"]
    assert rq.view_stages("3") == ["active", "deleted"]
    assert rq.view_stages(3) == ["active", "deleted"]
    assert rq.view_stages("BOGUS") == ["active"]  # the reference server ignores what it cannot parse


def test_search_experiments_defaults() -> None:
    plan = plan_experiment_search(rq.SearchExperiments())
    assert plan.limit == 1000
    assert plan.sort.mongo_sort() == {"creation_time": -1, "_eid": 1, "_id": 1}
    assert plan_experiment_search(rq.SearchExperiments(order_by=["name"])).sort.mongo_sort() == {
        "name": 1, "_eid": -1, "_id": 1}
    with pytest.raises(MlflowError, match="It must be at most 50000"):
        plan_experiment_search(rq.SearchExperiments(max_results=50001))


def test_integers_beyond_int64_become_doubles() -> None:
    (clause,) = parse_run_filter("attributes.start_time > 99999999999999999999999")
    assert clause.value == 1e23 and isinstance(clause.value, float)


def test_clause_dataclass_is_hashable_and_typed() -> None:
    (clause,) = parse_run_filter("metrics.m >= 1")
    assert clause == Clause("metric", "m", ">=", 1.0) and isinstance(clause.value, float)
