"""`/graphql` side by side: the MLflow web UI's GraphQL documents (taken from the installed UI bundle,
with the `__typename`s its Apollo client adds), the rest of MLflow's GraphQL schema and bad input, sent
to a stock `mlflow server` and to Genesis-Flow (both ways of running it) over the same data, answers
compared after normalising ids and timestamps.

The data is made with the stock client on both servers: an experiment with tags, runs with params,
tags, metric histories (NaN and infinity included), dataset and logged-model inputs and outputs,
artifacts, a registered model version from a run, and a deleted run.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from graphql import (
    FieldNode,
    NameNode,
    OperationDefinitionNode,
    SelectionSetNode,
    Visitor,
    parse,
    print_ast,
    visit,
)

from tests.registry.sequence import _diff, _short
from tests.services import free_port
from tests.sequences import reference_server
from tests.stack import Stack

pytestmark = [pytest.mark.integration]

MLFLOW = Path(__import__("mlflow").__file__).parent
UI_BUNDLE = MLFLOW / "server" / "js" / "build" / "static" / "js"
# Every GraphQL operation the UI bundle of MLflow 3.17 sends. A new one in a newer bundle fails
# `test_ui_sends_the_operations_we_know`: add it to CASES below.
UI_OPERATIONS = {"MlflowGetExperimentQuery", "GetRun", "SearchRuns", "GetMetricHistoryBulkInterval"}

REFERENCE_START_TIMEOUT = 120.0
MISSING_RUN = "0123456789abcdef0123456789abcdef"


# --- the UI's documents ----------------------------------------------------------------------------


def ui_documents() -> dict[str, str]:
    """Operation name -> document, for every `gql` template literal of the bundle that queries MLflow."""
    docs: dict[str, str] = {}
    for path in sorted(UI_BUNDLE.glob("*.js")):
        text = path.read_text(encoding="utf-8", errors="replace")
        for m in re.finditer(r"`(\s*(?:query|mutation)\s+([A-Za-z_]\w*)[^`]*)`", text):
            if "mlflow" in m.group(1):
                docs[m.group(2)] = m.group(1)
    return docs


class _AddTypename(Visitor):
    """Apollo's `addTypenameToDocument`: `__typename` in every selection set but the operation's."""

    def enter_selection_set(self, node: SelectionSetNode, _key: Any, parent: Any, *_: Any) -> Any:
        if isinstance(parent, OperationDefinitionNode):
            return None
        if any(isinstance(s, FieldNode) and s.name.value == "__typename" for s in node.selections):
            return None
        typename = FieldNode(name=NameNode(value="__typename"), arguments=(), directives=())
        return SelectionSetNode(selections=(*node.selections, typename))


def as_apollo_sends(document: str) -> str:
    return print_ast(visit(parse(document), _AddTypename()))


# --- data ----------------------------------------------------------------------------------------


def populate(tracking_uri: str, u: str) -> dict[str, str]:
    """The same data on any server; returns the ids it got."""
    from mlflow import MlflowClient
    from mlflow.entities import (Dataset, DatasetInput, InputTag, LoggedModelInput, LoggedModelOutput, Metric,
                                 Param, RunTag)

    client = MlflowClient(tracking_uri)
    # An mlflow-artifacts location, so artifact URIs look the same on both servers.
    exp = client.create_experiment(f"gql-{u}", artifact_location=f"mlflow-artifacts:/gql-{u}",
                                   tags={"team": "ml", "note": "x"})
    run1 = client.create_run(exp, start_time=1700000000000, run_name="first", tags={"mlflow.user": "tester"}).info.run_id
    client.log_batch(run1, params=[Param("lr", "0.01"), Param("opt", "adam")], tags=[RunTag("stage", "dev")],
                     metrics=[Metric("loss", 1.0 / (s + 1), 1700000000000 + s, s) for s in range(50)]
                     + [Metric("acc", 0.5, 1700000000100, 3), Metric("nanm", float("nan"), 1700000000200, 1),
                        Metric("nanm", 2.0, 1700000000201, 0), Metric("infm", float("inf"), 1700000000300, 1)])
    dataset = Dataset(name="train", digest="abc123", source_type="local", source="/data/train.csv",
                      schema='{"a": 1}', profile='{"rows": 5}')
    client.log_inputs(run1, datasets=[DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])])
    model = client.create_logged_model(exp, name="lm", source_run_id=run1)
    client.log_outputs(run1, [LoggedModelOutput(model.model_id, 3)])
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "a.txt").write_text("hello")
        Path(tmp, "sub").mkdir()
        Path(tmp, "sub", "b.txt").write_text("world!")
        client.log_artifacts(run1, tmp)
    client.create_registered_model(f"gqlm-{u}")
    client.create_model_version(f"gqlm-{u}", source=f"mlflow-artifacts:/gql-{u}/{run1}/artifacts/sub", run_id=run1)
    run2 = client.create_run(exp, start_time=1700000001000, run_name="second").info.run_id
    client.log_batch(run2, metrics=[Metric("loss", 2.0 / (s + 1), 1700000000000 + s, s) for s in range(10)])
    client.log_inputs(run2, datasets=[DatasetInput(Dataset(name="eval", digest="def456", source_type="local",
                                                           source="/data/e.csv"))],
                      models=[LoggedModelInput(model.model_id)])
    client.set_terminated(run2, end_time=1700000002000)
    run3 = client.create_run(exp, start_time=1700000003000, run_name="third").info.run_id
    client.delete_run(run3)
    return {"u": u, "experiment_id": exp, "run_id": run1, "run_id_2": run2, "run_id_3": run3,
            "model_id": model.model_id}


# --- requests ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One request to /graphql. Strings in `variables` and `query` may name `{placeholders}`: the
    ids `populate` returned and what earlier cases captured (`capture`: name -> path into data)."""
    name: str
    query: str  # "" for the UI's document named `operation`
    variables: Any = None
    operation: Any = None  # the operationName sent (any JSON value)
    params: Mapping[str, str] | None = None  # the /graphql URL's query string
    capture: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    method: str = "POST"


def _ui(name: str, operation: str, variables: Any, **kw: Any) -> Case:
    return Case(name, "", variables, operation=operation, **kw)


def _fill(value: Any, ctx: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return re.sub(r"\{(\w+)\}", lambda m: ctx.get(m.group(1), m.group(0)), value)
    if isinstance(value, list):
        return [_fill(v, ctx) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, ctx) for k, v in value.items()}
    return value


MV_FIELDS = ("name version creationTimestamp lastUpdatedTimestamp userId currentStage description source runId "
             "status statusMessage tags { key value } runLink aliases modelId modelParams { name value } "
             "modelMetrics { key value step }")
RUN_IN_FULL = ("info { runId runUuid runName experimentId userId status startTime endTime artifactUri lifecycleStage } "
               "data { metrics { key value timestamp step datasetName datasetDigest modelId runId } params { key value } "
               "tags { key value } } inputs { datasetInputs { tags { key value } dataset { name digest sourceType source "
               "schema profile } } modelInputs { modelId } } outputs { modelOutputs { modelId step } } "
               "experiment { experimentId name artifactLocation lifecycleStage lastUpdateTime creationTime "
               "tags { key value } effectiveTraceArchivalRetention workspace } modelVersions { %s }" % MV_FIELDS)
LIST = ("query L($i: MlflowListArtifactsInput) { mlflowListArtifacts(input: $i) { "
        "rootUri files { path isDir fileSize } nextPageToken apiError { code } } }")
VERSIONS = ("query V($i: MlflowSearchModelVersionsInput) { mlflowSearchModelVersions(input: $i) { "
            "modelVersions { %s } nextPageToken } }" % MV_FIELDS)
SEARCH = ("query S($i: MlflowSearchRunsInput) { mlflowSearchRuns(input: $i) { "
          "runs { info { runName status } } nextPageToken apiError { code } } }")
BULK = ("query B($i: MlflowGetMetricHistoryBulkIntervalInput) { mlflowGetMetricHistoryBulkInterval(input: $i) { "
        "metrics { key value step timestamp runId } } }")


def _aliases(n: int) -> str:
    """`n` aliases on one level below the root (at the root they would also be `n` root fields)."""
    return ("{ mlflowGetRun(input: {runId: \"{run_id}\"}) { run { info { "
            + " ".join(f"a{i}: runName" for i in range(n)) + " } } } }")


def _nested(depth: int) -> str:
    """A valid query `depth` selection sets deep (introspection nests deepest)."""
    of_types = depth - 5
    return "{ __schema { types { fields { type { " + "ofType { " * of_types + "name" + " }" * (of_types + 5)


CASES: list[Case] = [
    # What the UI sends, with the variables it sends.
    _ui("ui.experiment", "MlflowGetExperimentQuery", {"input": {"experimentId": "{experiment_id}"}}),
    _ui("ui.experiment.default", "MlflowGetExperimentQuery", {"input": {"experimentId": "0"}}),
    _ui("ui.experiment.missing", "MlflowGetExperimentQuery", {"input": {"experimentId": "999999"}}),
    _ui("ui.experiment.not_a_number", "MlflowGetExperimentQuery", {"input": {"experimentId": "abc"}}),
    _ui("ui.run", "GetRun", {"data": {"runId": "{run_id}"}}),
    _ui("ui.run.finished_with_model_input", "GetRun", {"data": {"runId": "{run_id_2}"}}),
    _ui("ui.run.deleted", "GetRun", {"data": {"runId": "{run_id_3}"}}),
    _ui("ui.run.missing", "GetRun", {"data": {"runId": MISSING_RUN}}),
    _ui("ui.run.no_id", "GetRun", {"data": {}}),
    _ui("ui.search_runs", "SearchRuns",
        {"data": {"filter": 'attributes.run_id = "{run_id}"', "experimentIds": ["{experiment_id}"]}}),
    _ui("ui.search_runs.experiment", "SearchRuns", {"data": {"experimentIds": ["{experiment_id}"]}}),
    _ui("ui.search_runs.bad_filter", "SearchRuns",
        {"data": {"filter": "params.lr = 1", "experimentIds": ["{experiment_id}"]}}),
    _ui("ui.bulk_interval", "GetMetricHistoryBulkInterval",
        {"data": {"runIds": ["{run_id}", "{run_id_2}"], "metricKey": "loss", "startStep": None, "endStep": None,
                  "maxResults": 320}}),
    _ui("ui.bulk_interval.range", "GetMetricHistoryBulkInterval",
        {"data": {"runIds": ["{run_id}"], "metricKey": "loss", "startStep": 2, "endStep": 30, "maxResults": 5}}),
    _ui("ui.bulk_interval.nan", "GetMetricHistoryBulkInterval",
        {"data": {"runIds": ["{run_id}"], "metricKey": "nanm", "startStep": None, "endStep": None, "maxResults": 320}}),
    _ui("ui.bulk_interval.unknown_key", "GetMetricHistoryBulkInterval",
        {"data": {"runIds": ["{run_id}"], "metricKey": "nope", "startStep": None, "endStep": None, "maxResults": 320}}),
    _ui("ui.bulk_interval.url_window", "GetMetricHistoryBulkInterval",
        {"data": {"runIds": ["{run_id}"], "metricKey": "loss", "startStep": None, "endStep": None, "maxResults": 320}},
        params={"max_results": "3", "start_step": "2", "end_step": "30"}),
    _ui("ui.bulk_interval.url_start_only", "GetMetricHistoryBulkInterval",
        {"data": {"runIds": ["{run_id}"], "metricKey": "loss"}}, params={"start_step": "2"}),
    _ui("ui.bulk_interval.url_reversed", "GetMetricHistoryBulkInterval",
        {"data": {"runIds": ["{run_id}"], "metricKey": "loss"}}, params={"start_step": "5", "end_step": "3"}),
    _ui("ui.bulk_interval.many_runs", "GetMetricHistoryBulkInterval",
        {"data": {"runIds": ["{run_id_2}"] * 101 + [MISSING_RUN], "metricKey": "loss"}}),
    # The rest of the schema.
    Case("run.in_full", "query R($i: MlflowGetRunInput) { mlflowGetRun(input: $i) { run { %s } apiError { code } } }"
         % RUN_IN_FULL, {"i": {"runUuid": "{run_id}"}}),
    Case("run.input_missing", "{ mlflowGetRun { run { info { runId } } } }"),
    Case("run.input_null", "{ mlflowGetRun(input: null) { run { info { runId } } } }"),
    Case("experiment.input_empty", "{ mlflowGetExperiment(input: {}) { experiment { experimentId name workspace "
                                   "artifactLocation tags { key } } } }"),
    Case("search_runs.deleted_view", SEARCH, {"i": {"experimentIds": ["{experiment_id}"], "runViewType": "ALL"}}),
    Case("search_runs.view_null", SEARCH, {"i": {"experimentIds": ["{experiment_id}"], "runViewType": None}}),
    Case("search_runs.no_experiments", SEARCH, {"i": {}}),
    Case("search_runs.order_by", SEARCH, {"i": {"experimentIds": ["{experiment_id}"], "orderBy": ["metrics.loss DESC"]}}),
    Case("search_runs.max_results_0", SEARCH, {"i": {"experimentIds": ["{experiment_id}"], "maxResults": 0}}),
    Case("search_runs.max_results_too_big", SEARCH, {"i": {"experimentIds": ["{experiment_id}"], "maxResults": 50001}}),
    Case("search_runs.bad_entity", SEARCH, {"i": {"experimentIds": ["{experiment_id}"], "filter": "foo.x = 'a'"}}),
    Case("search_runs.page_1", SEARCH, {"i": {"experimentIds": ["{experiment_id}"], "maxResults": 1,
                                              "orderBy": ["attributes.start_time ASC"]}},
         capture={"page_2": ("mlflowSearchRuns", "nextPageToken")}),
    Case("search_runs.page_2", SEARCH, {"i": {"experimentIds": ["{experiment_id}"], "maxResults": 1,
                                              "orderBy": ["attributes.start_time ASC"], "pageToken": "{page_2}"}}),
    Case("search_runs.mutation", "mutation M($i: MlflowSearchRunsInput) { mlflowSearchRuns(input: $i) { runs { "
                                 "info { runName } modelVersions { name version } } nextPageToken } }",
         {"i": {"experimentIds": ["{experiment_id}"]}}),
    Case("artifacts.root", LIST, {"i": {"runId": "{run_id}"}}),
    Case("artifacts.dir", LIST, {"i": {"runUuid": "{run_id}", "path": "sub"}}),
    Case("artifacts.file", LIST, {"i": {"runId": "{run_id}", "path": "a.txt"}}),
    Case("artifacts.missing_dir", LIST, {"i": {"runId": "{run_id}", "path": "nope"}}),
    Case("artifacts.run_without_artifacts", LIST, {"i": {"runId": "{run_id_2}"}}),
    Case("artifacts.escaping_path", LIST, {"i": {"runId": "{run_id}", "path": "../x"}}),
    Case("artifacts.absolute_path", LIST, {"i": {"runId": "{run_id}", "path": "/etc"}}),
    Case("artifacts.missing_run", LIST, {"i": {"runId": MISSING_RUN}}),
    Case("artifacts.no_run", LIST, {"i": {}}),
    Case("model_versions.by_name", VERSIONS, {"i": {"filter": "name = 'gqlm-{u}'"}}),
    Case("model_versions.by_run", VERSIONS, {"i": {"filter": "run_id = '{run_id}'", "maxResults": "5"}}),
    Case("model_versions.max_results_0", VERSIONS, {"i": {"maxResults": "0"}}),
    Case("model_versions.max_results_too_big", VERSIONS, {"i": {"maxResults": "200001"}}),
    Case("model_versions.max_results_not_a_number", VERSIONS, {"i": {"maxResults": "abc"}}),
    Case("model_versions.bad_filter", VERSIONS, {"i": {"filter": "foo"}}),
    Case("model_versions.deployment_job_state",
         "query { mlflowSearchModelVersions(input: {filter: \"name = 'gqlm-{u}'\"}) { modelVersions { "
         "deploymentJobState { jobId runId jobState runState currentTaskName } } } }"),
    Case("datasets", "mutation D($i: MlflowSearchDatasetsInput) { mlflowSearchDatasets(input: $i) { "
                     "datasetSummaries { experimentId name digest context } apiError { code } } }",
         {"i": {"experimentIds": ["{experiment_id}"]}}),
    Case("datasets.none", "mutation { mlflowSearchDatasets(input: {experimentIds: []}) { datasetSummaries { name } } }"),
    Case("datasets.too_many", "mutation { mlflowSearchDatasets(input: {experimentIds: [%s]}) { datasetSummaries { name } } }"
         % ", ".join(f'"{i}"' for i in range(21))),
    Case("datasets.not_a_number", "mutation { mlflowSearchDatasets(input: {experimentIds: [\"abc\"]}) { "
                                  "datasetSummaries { name } } }"),
    Case("bulk_interval.no_key", BULK, {"i": {"runIds": ["{run_id}"]}}),
    Case("bulk_interval.input_missing", "{ mlflowGetMetricHistoryBulkInterval { metrics { step } } }"),
    Case("test.echo", '{ test(inputString: "hi") { output } }'),
    Case("test.null", "{ test(inputString: null) { output } }"),
    Case("test.no_argument", "{ test { output } }"),
    Case("test.mutation", 'mutation { testMutation(inputString: "hi") { output } }'),
    Case("typename", "{ __typename }"),
    Case("typename.mutation", "mutation { __typename }"),
    Case("introspection.types", "{ __schema { queryType { name } mutationType { name } subscriptionType { name } "
                                "directives { name locations args { name type { name kind ofType { name } } } } "
                                "types { name kind description fields { name args { name defaultValue } "
                                "type { name kind ofType { name kind ofType { name } } } } inputFields { name "
                                "defaultValue type { name kind ofType { name } } } enumValues { name } } } }"),
    # The depth graphql-core's own introspection query reaches (through fragments): too deep for MLflow.
    Case("introspection.full_is_too_deep", "query IntrospectionQuery { __schema { types { ...T } } } fragment T on "
                                           "__Type { fields { type { ...R } } } fragment R on __Type { ofType { "
                                           "ofType { ofType { ofType { ofType { ofType { ofType { name } } } } } } } }"),
    # Bad input: always a 200 with the error in `errors`.
    Case("bad.unknown_field", "{ nope }"),
    Case("bad.unknown_argument", '{ mlflowGetRun(input: {runId: "x"}, other: 1) { run { info { runId } } } }'),
    Case("bad.wrong_variable_type", "query Q($i: MlflowGetExperimentInput!) { mlflowGetExperiment(input: $i) { "
                                    "experiment { name } } }", {"i": {"experimentId": 5}}),
    Case("bad.variable_not_an_object", "query Q($i: MlflowGetExperimentInput!) { mlflowGetExperiment(input: $i) { "
                                       "experiment { name } } }", {"i": "x"}),
    Case("bad.variable_missing", "query Q($i: MlflowGetExperimentInput!) { mlflowGetExperiment(input: $i) { "
                                 "experiment { name } } }"),
    Case("bad.enum_value", SEARCH, {"i": {"runViewType": "SOME"}}),
    Case("bad.long_string_literal", '{ mlflowSearchModelVersions(input: {maxResults: "1"}) { nextPageToken } }'),
    Case("bad.two_operations", "query A { __typename } query B { __typename }"),
    Case("bad.unknown_operation", "query A { __typename }", operation="Z"),
    Case("bad.operation_name_not_a_string", "query A { __typename }", operation={"a": 1}),
    Case("bad.subscription", "subscription { x }"),
    Case("bad.directive_without_name", "query Q @component { __typename }"),
    Case("bad.too_many_aliases", _aliases(11)),
    Case("ok.ten_aliases", _aliases(10)),
    Case("bad.aliases_across_fragments", "{ mlflowGetRun(input: {}) { run { info { ...A ... on MlflowRunInfo { "
                                         "b1: runId b2: runId b3: runId b4: runId b5: runId } } } } } fragment A on "
                                         "MlflowRunInfo { a1: runId a2: runId a3: runId a4: runId a5: runId a6: runId }"),
    Case("bad.too_many_root_fields_as_aliases", "{ " + " ".join(f"a{i}: __typename" for i in range(11)) + " }"),
    Case("bad.too_many_root_fields", "{ " + " ".join(f't{i}: test(inputString: "x") {{ output }}'
                                                     for i in range(11)) + " }"),
    Case("bad.too_deep", _nested(11)),
    Case("ok.depth_10", _nested(10)),
    Case("bad.too_many_selections", "{ mlflowGetRun(input: {}) { run { info { "
                                    + " ".join(f"r{i}: runId" for i in range(1001)) + " } } } }"),
    Case("bad.fragment_cycle", "{ ...A } fragment A on Query { ...A __typename }"),
    Case("get_with_json_body", "{ __typename }", method="GET"),
]


@dataclass
class Answer:
    name: str
    status: int
    body: Any


def send(base_url: str, case: Case, documents: Mapping[str, str], ctx: dict[str, str]) -> Answer:
    """POST (or GET) the case as the UI's Apollo client sends a request: JSON body, JSON content type."""
    query = _fill(case.query, ctx) if case.query else as_apollo_sends(documents[case.operation])
    body = {"operationName": case.operation, "variables": _fill(case.variables, ctx), "query": query}
    resp = requests.request(case.method, base_url + "/graphql", params=case.params, data=json.dumps(body),
                            headers={"Content-Type": "application/json", "Accept": "*/*"}, timeout=60)
    try:
        parsed: Any = resp.json()
    except ValueError:
        parsed = resp.text
    for name, path in case.capture.items():
        value = parsed.get("data") if isinstance(parsed, dict) else None
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str) and value:
            ctx[name] = value
    return Answer(case.name, resp.status_code, parsed)


def run_cases(base_url: str, ctx: dict[str, str], cases: list[Case] = CASES) -> list[Answer]:
    documents = ui_documents()
    return [send(base_url, case, documents, ctx) for case in cases]


# --- comparison ----------------------------------------------------------------------------------

_TIMESTAMPS = {"creationTime", "lastUpdateTime", "creationTimestamp", "lastUpdatedTimestamp"}
# Lists whose order neither server defines (a run's latest metrics, params and tags come out in
# storage order; dataset summaries are a SQL DISTINCT without ORDER BY).
_UNORDERED = {"params", "tags", "datasetSummaries", "errors"}


def normalise(body: Any, ctx: Mapping[str, str], key: str | None = None, parent: str | None = None) -> Any:
    """Ids of this execution become `<run_id>`, `<experiment_id>`... wherever they appear,
    timestamps the servers chose and page tokens become fixed tokens, unordered lists are sorted."""
    if key in _TIMESTAMPS and isinstance(body, str) and body.isdigit():
        return "<timestamp>"
    if key == "nextPageToken" and isinstance(body, str) and body:
        return "<page_token>"
    if key == "experimentId" and body == ctx.get("experiment_id"):
        return "<experiment_id>"
    if isinstance(body, dict):
        return {k: normalise(v, ctx, k, key) for k, v in body.items()}
    if isinstance(body, list):
        items = [normalise(v, ctx, None, key) for v in body]
        if key in _UNORDERED or (key == "metrics" and parent == "data"):
            items.sort(key=lambda item: json.dumps(item, sort_keys=True))
        return items
    if isinstance(body, str):
        for name in ("run_id", "run_id_2", "run_id_3", "model_id", "u"):
            if ctx.get(name):
                body = body.replace(ctx[name], f"<{name}>")
    return body


def compare(ref: list[Answer], ref_ctx: Mapping[str, str], ours: list[Answer], our_ctx: Mapping[str, str]) -> list[str]:
    out: list[str] = []
    for r, o in zip(ref, ours, strict=True):
        if r.status != o.status:
            out.append(f"{r.name}: status {o.status}, reference has {r.status} (ours: {_short(o.body)})")
            continue
        for line in _diff(normalise(r.body, ref_ctx), normalise(o.body, our_ctx), ""):
            out.append(f"{r.name}: {line}")
    return out


# --- the reference server ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A stock `mlflow server` on SQLite serving artifacts itself (so the Default experiment's
    location is `mlflow-artifacts:/0`, as ours), started once for the module."""
    tmp = tmp_path_factory.mktemp("mlflow-reference")
    with reference_server(tmp, ["--artifacts-destination", str(tmp / "artifacts")]) as url:
        yield url


# --- tests ---------------------------------------------------------------------------------------


def test_ui_sends_the_operations_we_know() -> None:
    assert set(ui_documents()) == UI_OPERATIONS
    assert {c.operation for c in CASES if not c.query} == UI_OPERATIONS


def test_schema_is_mlflows() -> None:
    """The schema we serve prints as MLflow's graphene schema does, and introspects the same (types
    in the same order, the same directives: @component only)."""
    from graphql import get_introspection_query, graphql_sync, print_schema
    from mlflow.server.graphql.graphql_schema_extensions import schema as reference

    from query.graphql_api import build_schema
    ours = build_schema()
    assert print_schema(ours) == str(reference)
    query = get_introspection_query(descriptions=True, specified_by_url=True, directive_is_repeatable=True,
                                    schema_description=True, input_value_deprecation=True)
    expected, got = reference.execute(query), graphql_sync(ours, query)
    assert expected.errors is None and got.errors is None
    assert got.data == expected.data


def test_query_scan_matches_mlflows() -> None:
    from mlflow.server.graphql.graphql_no_batching import scan_query as reference_scan

    from query.graphql_api import scan_query
    documents = [*ui_documents().values(), *(c.query for c in CASES if c.query)]
    for text in documents:
        document = parse(text.replace("{u}", "x"))
        try:
            expected: Any = tuple(reference_scan(document))
        except Exception as exc:  # noqa: BLE001 - the message is what is compared
            expected = str(exc)
        try:
            got: Any = scan_query(document)
        except Exception as exc:  # noqa: BLE001
            got = str(exc)
        assert got == expected, text[:200]


def test_graphql_answers_as_the_reference(reference_url: str, tracking_stack: Stack) -> None:
    u = uuid.uuid4().hex[:10]
    ref_ctx, our_ctx = populate(reference_url, u), populate(tracking_stack.url("uri"), u)
    ref, ours = run_cases(reference_url, ref_ctx), run_cases(tracking_stack.url("uri"), our_ctx)
    diffs = compare(ref, ref_ctx, ours, our_ctx)
    assert diffs == [], f"{len(diffs)} differences from the reference:\n" + "\n".join(diffs)
    answered = {a.name: a for a in ours}
    # The comparison means something only if the UI's reads found the data.
    run = answered["ui.run"].body["data"]["mlflowGetRun"]["run"]
    assert run["info"]["runName"] == "first" and run["modelVersions"][0]["name"] == f"gqlm-{u}"
    assert {m["key"]: m["value"] for m in run["data"]["metrics"]}["nanm"] is None  # NaN reads as null
    assert len(answered["ui.bulk_interval"].body["data"]["mlflowGetMetricHistoryBulkInterval"]["metrics"]) == 60
    # The input's window is ignored (MLflow reads it from the URL): all 50 points, not 5 of steps 2..30.
    assert len(answered["ui.bulk_interval.range"].body["data"]["mlflowGetMetricHistoryBulkInterval"]["metrics"]) == 50


# Where the reference answers a bare 500 (its handler parses before it checks anything), we answer
# as below: (name, method, raw body, our status, our body or our error_code; None: the status only).
NOT_A_500: list[tuple[str, str, bytes, int, Any]] = [
    ("syntax_error", "POST", b'{"query": "query { mlflowGetExperiment("}', 200,
     {"data": None, "errors": ["Syntax Error: Expected Name, found <EOF>."]}),
    ("empty_query", "POST", b'{"query": ""}', 200, {"data": None, "errors": ["Syntax Error: Unexpected <EOF>."]}),
    ("no_query", "POST", b"{}", 400, "INVALID_PARAMETER_VALUE"),
    ("query_not_a_string", "POST", b'{"query": 5}', 400, "INVALID_PARAMETER_VALUE"),
    ("not_json", "POST", b"{x", 400, "INVALID_PARAMETER_VALUE"),
    ("variables_not_an_object", "POST", b'{"query": "{ __typename }", "variables": [1]}', 400, "INVALID_PARAMETER_VALUE"),
    ("variables_a_string", "POST", b'{"query": "{ __typename }", "variables": "{}"}', 400, "INVALID_PARAMETER_VALUE"),
    ("batch", "POST", json.dumps([{"query": "{ __typename }"}] * 2000).encode(), 400, "INVALID_PARAMETER_VALUE"),
    ("get_without_body", "GET", b"", 400, "INVALID_PARAMETER_VALUE"),
    # Larger than the query tier takes (1 MiB): aiohttp's 413 before anything is parsed; standalone
    # takes larger bodies (its ingest's uploads) and refuses it as a batch.
    ("batch_over_a_mebibyte", "POST", json.dumps([{"query": "{ __typename }"}] * 40000).encode(), 413, None),
]


@pytest.mark.parametrize("name, method, raw, status, expected", NOT_A_500, ids=[c[0] for c in NOT_A_500])
def test_bad_requests_are_never_a_500(reference_url: str, tracking_stack: Stack, name: str, method: str, raw: bytes,
                                      status: int, expected: Any) -> None:
    headers = {"Content-Type": "application/json"} if raw else {}
    ref = requests.request(method, reference_url + "/graphql", data=raw, headers=headers, timeout=30)
    assert ref.status_code == 500, "the reference no longer fails here: compare with it instead"
    ours = requests.request(method, tracking_stack.url("uri") + "/graphql", data=raw, headers=headers, timeout=30)
    if expected is None:
        assert ours.status_code in (status, 400), ours.text
        return
    assert ours.status_code == status, ours.text
    if status == 200:
        assert ours.json() == expected
    else:
        assert ours.json()["error_code"] == expected


def test_content_type_is_checked_like_mlflow(reference_url: str, tracking_stack: Stack) -> None:
    body = b'{"query": "{ __typename }"}'
    for headers in ({"Content-Type": "text/plain"}, {}):
        ref = requests.post(reference_url + "/graphql", data=body, headers=headers, timeout=30)
        ours = requests.post(tracking_stack.url("uri") + "/graphql", data=body, headers=headers, timeout=30)
        assert ref.status_code == ours.status_code == 400
        assert ours.json()["message"] == ref.json()["message"]


def test_huge_documents_are_refused_not_executed(tracking_stack: Stack) -> None:
    """Many fields stop at MLflow's scan, before validation or any read; a document too large to
    parse quickly (about a megabyte here) stops while parsing, after 20,000 tokens."""
    def fields(n: int) -> str:
        return "{ " + " ".join(f"f{i}: mlflowGetRun(input: {{}}) {{ run {{ info {{ runId }} }} }}"
                               for i in range(n)) + " }"

    url = tracking_stack.url("uri") + "/graphql"
    resp = requests.post(url, json={"query": fields(300)}, timeout=60)
    assert (resp.status_code, resp.json()) == (200, {"data": None, "errors": [
        "Query exceeds maximum total selections of 1000"]})
    started = time.monotonic()
    resp = requests.post(url, json={"query": fields(17000)}, timeout=60)
    assert (resp.status_code, resp.json()) == (200, {"data": None, "errors": [
        "Syntax Error: Document contains more than 20000 tokens. Parsing aborted."]})
    assert time.monotonic() - started < 5


async def test_database_outage_is_a_503_not_an_error_string() -> None:
    """An unreachable MongoDB fails the request (the middleware answers 503, which clients retry)
    instead of reading as a GraphQL error the UI would show as data."""
    from pymongo import AsyncMongoClient
    from pymongo.errors import ConnectionFailure

    from query.graphql_api import Context, GraphQLRequest, Limits, build_schema, run_request
    client = AsyncMongoClient(f"mongodb://127.0.0.1:{free_port()}/?directConnection=true", serverSelectionTimeoutMS=300)
    request = GraphQLRequest('{ mlflowGetRun(input: {runId: "abc"}) { run { info { runId } } } }', None, None)
    try:
        with pytest.raises(ConnectionFailure):
            await run_request(build_schema(), request, Context(client["x"], None, {}), Limits())  # type: ignore[arg-type]
    finally:
        await client.close()
