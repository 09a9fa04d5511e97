"""The GraphQL schema the MLflow web UI queries at `/graphql`: MLflow 3.17's graphene schema, as SDL.

The SDL below is `print(mlflow.server.graphql.graphql_schema_extensions.schema)` of MLflow 3.17.2,
verbatim: type, field and enum names, descriptions and the `@component` directive are the
reference's, so `__typename`s, introspection and validation messages are the same. Keep it in sync
with the installed mlflow (tests/ui/test_graphql.py compares the two).

MLflow's resolvers return protobuf messages, and graphene reads their fields as attributes: an
unset field reads as the proto default ("" for strings, "0" for int64, [] for lists, an empty
message, the enum's first value), never as null. Our reads return the REST JSON shapes, which
leave unset fields out, so every field that has no resolver of its own reads its snake_case key
and falls back to that proto default (`_proto_field`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLFieldResolver,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    GraphQLSchema,
    IntValueNode,
    ValueNode,
    build_schema,
)

SDL = r'''
directive @component(name: String!) on QUERY | MUTATION

type Query {
  mlflowGetExperiment(input: MlflowGetExperimentInput): MlflowGetExperimentResponse
  mlflowGetMetricHistoryBulkInterval(input: MlflowGetMetricHistoryBulkIntervalInput): MlflowGetMetricHistoryBulkIntervalResponse
  mlflowGetRun(input: MlflowGetRunInput): MlflowGetRunResponse
  mlflowListArtifacts(input: MlflowListArtifactsInput): MlflowListArtifactsResponse
  mlflowSearchModelVersions(input: MlflowSearchModelVersionsInput): MlflowSearchModelVersionsResponse

  """Simple echoing field"""
  test(inputString: String): Test
  mlflowSearchRuns(input: MlflowSearchRunsInput): MlflowSearchRunsResponse
}

type MlflowGetExperimentResponse {
  experiment: MlflowExperiment
  apiError: ApiError
}

type MlflowExperiment {
  experimentId: String
  name: String
  artifactLocation: String
  lifecycleStage: String
  lastUpdateTime: LongString
  creationTime: LongString
  tags: [MlflowExperimentTag!]
  effectiveTraceArchivalRetention: String
  workspace: String
}

"""
LongString Scalar type to prevent truncation to max integer in JavaScript.
"""
scalar LongString

type MlflowExperimentTag {
  key: String
  value: String
}

type ApiError {
  code: String
  message: String
  helpUrl: String
  traceId: String
  errorDetails: [ErrorDetail]
}

type ErrorDetail {
  field: String
  message: String
}

input MlflowGetExperimentInput {
  experimentId: String
}

type MlflowGetMetricHistoryBulkIntervalResponse {
  metrics: [MlflowMetricWithRunId!]
  apiError: ApiError
}

type MlflowMetricWithRunId {
  key: String
  value: Float
  timestamp: LongString
  step: LongString
  runId: String
}

input MlflowGetMetricHistoryBulkIntervalInput {
  runIds: [String]
  metricKey: String
  startStep: Int
  endStep: Int
  maxResults: Int
}

type MlflowGetRunResponse {
  run: MlflowRunExtension
  apiError: ApiError
}

type MlflowRunExtension {
  info: MlflowRunInfo
  data: MlflowRunData
  inputs: MlflowRunInputs
  outputs: MlflowRunOutputs
  experiment: MlflowExperiment
  modelVersions: [MlflowModelVersion!]
}

type MlflowRunInfo {
  runId: String
  runUuid: String
  runName: String
  experimentId: String
  userId: String
  status: MlflowRunStatus
  startTime: LongString
  endTime: LongString
  artifactUri: String
  lifecycleStage: String
}

enum MlflowRunStatus {
  RUNNING
  SCHEDULED
  FINISHED
  FAILED
  KILLED
}

type MlflowRunData {
  metrics: [MlflowMetricExtension!]
  params: [MlflowParam!]
  tags: [MlflowRunTag!]
}

type MlflowMetricExtension {
  key: String
  value: Float
  timestamp: LongString
  step: LongString
  datasetName: String
  datasetDigest: String
  modelId: String
  runId: String
}

type MlflowParam {
  key: String
  value: String
}

type MlflowRunTag {
  key: String
  value: String
}

type MlflowRunInputs {
  datasetInputs: [MlflowDatasetInput!]
  modelInputs: [MlflowModelInput!]
}

type MlflowDatasetInput {
  tags: [MlflowInputTag!]
  dataset: MlflowDataset
}

type MlflowInputTag {
  key: String
  value: String
}

type MlflowDataset {
  name: String
  digest: String
  sourceType: String
  source: String
  schema: String
  profile: String
}

type MlflowModelInput {
  modelId: String
}

type MlflowRunOutputs {
  modelOutputs: [MlflowModelOutput!]
}

type MlflowModelOutput {
  modelId: String
  step: LongString
}

type MlflowModelVersion {
  name: String
  version: String
  creationTimestamp: LongString
  lastUpdatedTimestamp: LongString
  userId: String
  currentStage: String
  description: String
  source: String
  runId: String
  status: MlflowModelVersionStatus
  statusMessage: String
  tags: [MlflowModelVersionTag!]
  runLink: String
  aliases: [String]
  modelId: String
  modelParams: [MlflowModelParam!]
  modelMetrics: [MlflowModelMetric!]
  deploymentJobState: MlflowModelVersionDeploymentJobState
}

enum MlflowModelVersionStatus {
  PENDING_REGISTRATION
  FAILED_REGISTRATION
  READY
}

type MlflowModelVersionTag {
  key: String
  value: String
}

type MlflowModelParam {
  name: String
  value: String
}

type MlflowModelMetric {
  key: String
  value: Float
  timestamp: LongString
  step: LongString
  datasetName: String
  datasetDigest: String
  modelId: String
  runId: String
}

type MlflowModelVersionDeploymentJobState {
  jobId: String
  runId: String
  jobState: MlflowDeploymentJobConnectionState
  runState: MlflowModelVersionDeploymentJobStateDeploymentJobRunState
  currentTaskName: String
}

enum MlflowDeploymentJobConnectionState {
  DEPLOYMENT_JOB_CONNECTION_STATE_UNSPECIFIED
  NOT_SET_UP
  CONNECTED
  NOT_FOUND
  REQUIRED_PARAMETERS_CHANGED
}

enum MlflowModelVersionDeploymentJobStateDeploymentJobRunState {
  DEPLOYMENT_JOB_RUN_STATE_UNSPECIFIED
  NO_VALID_DEPLOYMENT_JOB_FOUND
  RUNNING
  SUCCEEDED
  FAILED
  PENDING
  APPROVAL
}

input MlflowGetRunInput {
  runId: String
  runUuid: String
}

type MlflowListArtifactsResponse {
  rootUri: String
  files: [MlflowFileInfo!]
  nextPageToken: String
  apiError: ApiError
}

type MlflowFileInfo {
  path: String
  isDir: Boolean
  fileSize: LongString
}

input MlflowListArtifactsInput {
  runId: String
  runUuid: String
  path: String
  pageToken: String
}

type MlflowSearchModelVersionsResponse {
  modelVersions: [MlflowModelVersion!]
  nextPageToken: String
  apiError: ApiError
}

input MlflowSearchModelVersionsInput {
  filter: String
  maxResults: LongString
  orderBy: [String]
  pageToken: String
}

type Test {
  """Echoes the input string"""
  output: String
}

type MlflowSearchRunsResponse {
  runs: [MlflowRunExtension!]
  nextPageToken: String
  apiError: ApiError
}

input MlflowSearchRunsInput {
  experimentIds: [String]
  filter: String
  runViewType: MlflowViewType = null
  maxResults: Int
  orderBy: [String]
  pageToken: String
}

enum MlflowViewType {
  ACTIVE_ONLY
  DELETED_ONLY
  ALL
}

type Mutation {
  mlflowSearchDatasets(input: MlflowSearchDatasetsInput): MlflowSearchDatasetsResponse
  mlflowSearchRuns(input: MlflowSearchRunsInput): MlflowSearchRunsResponse

  """Simple echoing field"""
  testMutation(inputString: String): TestMutation
}

type MlflowSearchDatasetsResponse {
  datasetSummaries: [MlflowDatasetSummary!]
  apiError: ApiError
}

type MlflowDatasetSummary {
  experimentId: String
  name: String
  digest: String
  context: String
}

input MlflowSearchDatasetsInput {
  experimentIds: [String]
}

type TestMutation {
  """Echoes the input string"""
  output: String
}
'''

# The reference's extension resolvers (graphql_schema_extensions.py) and the fields graphene reads
# without resolvers, where the proto default does not apply.
#
# MlflowMetricExtension.value: NaN would fail Float serialization, so the reference answers null.
# (MlflowMetricWithRunId.value has no such rule: a NaN point there is null *and* an error.)
NAN_AS_NULL = {("MlflowMetricExtension", "value")}
# Enums whose proto default (0) is not a value of graphene's enum: reading one is an error
# ("Enum '...' cannot represent value: 0") and null, as on the reference (OSS MLflow never sets them).
ZERO_ENUM_FIELDS = {("MlflowModelVersionDeploymentJobState", "jobState"),
                    ("MlflowModelVersionDeploymentJobState", "runState")}
# Not proto fields: graphene finds no such attribute on the message and answers null.
NULL_FIELDS = {"apiError"}
# Plain objects, not protos: the value as is, null included.
PLAIN_TYPES = {"Test", "TestMutation"}

_SCALAR_DEFAULTS: dict[str, Any] = {"String": "", "LongString": 0, "Int": 0, "Float": 0.0, "Boolean": False}


# --- LongString (graphql_custom_scalars.py): int64 as a string, so JavaScript does not round it --


def _long_serialize(value: Any) -> str:
    return str(value)


def _long_parse_value(value: Any) -> int:
    return int(value)  # its ValueError text is part of the reference's message for a bad variable


def _long_parse_literal(node: ValueNode, _variables: dict[str, Any] | None = None) -> int | None:
    # Any literal but an integer reads as null, not as an error, as in the reference.
    return int(node.value) if isinstance(node, IntValueNode) else None


# --- field resolvers -----------------------------------------------------------------------------


def snake_case(name: str) -> str:
    """`runUuid` -> `run_uuid`: graphene's camelCase field name back to the proto (and REST) name."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _proto_default(type_: GraphQLOutputType) -> Any:
    if isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    if isinstance(type_, GraphQLList):
        return []
    if isinstance(type_, GraphQLObjectType):
        return {}
    if isinstance(type_, GraphQLEnumType):
        return next(iter(type_.values))  # proto2's default: the first value
    assert isinstance(type_, GraphQLScalarType)
    return _SCALAR_DEFAULTS[type_.name]


def _proto_field(key: str, default: Any, *, floats: bool, nan_as_null: bool) -> GraphQLFieldResolver:
    """Reads `key` of a REST-shaped dict the way graphene reads a proto attribute."""

    def resolve(parent: Any, _info: GraphQLResolveInfo, **_args: Any) -> Any:
        value = parent.get(key) if isinstance(parent, dict) else None
        if value is None:
            return default
        if floats and isinstance(value, str):
            value = float(value)  # REST JSON spells NaN and the infinities as strings
        if nan_as_null and value != value:
            return None
        return value

    return resolve


def _plain_field(key: str) -> GraphQLFieldResolver:
    def resolve(parent: Any, _info: GraphQLResolveInfo, **_args: Any) -> Any:
        return parent.get(key) if isinstance(parent, dict) else None
    return resolve


def _default_resolver(type_name: str, field_name: str, field: GraphQLField) -> GraphQLFieldResolver:
    key = snake_case(field_name)
    if type_name in PLAIN_TYPES:
        return _plain_field(key)
    if field_name in NULL_FIELDS:
        return _plain_field(field_name)
    default = 0 if (type_name, field_name) in ZERO_ENUM_FIELDS else _proto_default(field.type)
    named = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
    floats = isinstance(named, GraphQLScalarType) and named.name == "Float"
    return _proto_field(key, default, floats=floats, nan_as_null=(type_name, field_name) in NAN_AS_NULL)


Resolvers = dict[tuple[str, str], Callable[..., Any]]


def build_mlflow_schema(resolvers: Resolvers) -> GraphQLSchema:
    """The schema with `resolvers` ((type, field) -> resolver: the root fields and the fields that
    read more data) and proto-default reads for every other field."""
    built = build_schema(SDL)
    # graphene's schema has the directives it was given and no others: @component, not the
    # specified ones (@include, @skip, @deprecated, @specifiedBy), so a query using them is invalid.
    # Built from its root types, the type map is in graphene's order (introspection lists it).
    component = built.get_directive("component")
    assert component is not None
    schema = GraphQLSchema(query=built.query_type, mutation=built.mutation_type, directives=[component])
    long_string = schema.type_map["LongString"]
    assert isinstance(long_string, GraphQLScalarType)
    long_string.serialize = _long_serialize  # type: ignore[method-assign]
    long_string.parse_value = _long_parse_value  # type: ignore[method-assign]
    long_string.parse_literal = _long_parse_literal  # type: ignore[method-assign]
    known: set[tuple[str, str]] = set()
    for type_ in schema.type_map.values():
        if not isinstance(type_, GraphQLObjectType) or type_.name.startswith("__"):
            continue
        for name, field in type_.fields.items():
            known.add((type_.name, name))
            field.resolve = resolvers.get((type_.name, name)) or _default_resolver(type_.name, name, field)
    unknown = set(resolvers) - known
    assert not unknown, f"resolvers for fields the schema does not have: {sorted(unknown)}"
    for root in ("Query", "Mutation"):
        missing = [f for f in schema.type_map[root].fields if (root, f) not in resolvers]  # type: ignore[union-attr]
        assert not missing, f"{root} fields without a resolver: {missing}"
    return schema
