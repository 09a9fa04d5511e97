"""`/graphql`: the endpoint the MLflow web UI queries (MLflow's `_graphql` in mlflow/server/handlers.py),
on graphql-core with the reference's schema (query/graphql_schema.py).

As on the reference server:
* GET and POST `/graphql` both read a JSON body `{"query", "variables", "operationName"}` (a GET's
  query string is not a GraphQL request); a POST needs `Content-Type: application/json`.
* A parsed query is scanned before validation (mlflow/server/graphql/graphql_no_batching.py): depth
  at most 10, at most 1000 selections, at most MLFLOW_SERVER_GRAPHQL_MAX_ROOT_FIELDS root fields
  and MLFLOW_SERVER_GRAPHQL_MAX_ALIASES aliases on one level (both 10 by default).
* The answer is HTTP 200 `{"data": ..., "errors": [message, ...] | null}`; errors are plain strings.
  A read's MLflow error becomes its message and its field null, never `apiError`.
* Resolvers call the reads the REST endpoints call (MLflow's call the `*_impl` handler functions),
  with those functions' behaviour where it differs from the REST handlers: no required fields, an
  empty experiment id is the Default experiment, bulk-interval sampling reads `max_results`,
  `start_step` and `end_step` from the /graphql URL's query string and ignores the input's (the
  UI's `maxResults: 320` is not honoured: 2500 points per run), and any `runViewType` fails.

Deliberately different: where the reference answers a bare 500, this endpoint answers 400
INVALID_PARAMETER_VALUE for a body that is not a GraphQL request (not a JSON object, e.g. a batch
array; no `query` string; `variables` not an object) and 200 with the syntax error in `errors` for a
query that does not parse (what graphene answers when the handler's own parse does not raise first).
A document of more than MAX_TOKENS tokens is refused while parsing, a `max_results` below 1 in the
URL is refused, and a MongoDB outage is a 503 (which the UI's client retries), not an error string.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from inspect import isawaitable
from typing import Any

import msgspec
from aiohttp import web
from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLResolveInfo,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    execute,
    parse,
    validate,
)
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, ExecutionTimeout

from common.artifacts import ArtifactStore, safe_relative_path
from common.errors import MlflowError
from common.validation import run_not_found_message, validate_run_id
from common.web import json_response, require_json_content_type
from query import experiments, history, registry, runs
from query import requests as rq
from query.artifacts import list_run_artifacts
from query.graphql_schema import build_mlflow_schema, snake_case
from query.ui_api import SearchDatasets, search_datasets

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT_ID = "0"
MAX_DEPTH = 10
MAX_SELECTIONS = 1000
# Parsing runs on the event loop at about 15 µs a token: a 1 MB document (~300,000 tokens) would
# stall every request of this process for seconds. The UI's documents have ~150 tokens and MLflow's
# own limits allow 1000 selections, so a larger document is refused with graphql-core's message
# (the reference parses it, then refuses most such documents for their size anyway).
MAX_TOKENS = 20_000
# MLflow's own settings, under their MLflow names (like MLFLOW_SERVER_ALLOWED_HOSTS).
MAX_ROOT_FIELDS_ENV = "MLFLOW_SERVER_GRAPHQL_MAX_ROOT_FIELDS"
MAX_ALIASES_ENV = "MLFLOW_SERVER_GRAPHQL_MAX_ALIASES"
DEFAULT_LIMIT = 10

# graphene hands protobuf's ParseDict the enum class instead of the value, whatever the value.
RUN_VIEW_TYPE_ERROR = ("Failed to parse run_view_type field: int() argument must be a string, a bytes-like "
                       "object or a real number, not 'EnumMeta'.")
VARIABLES_NOT_AN_OBJECT = ("Variable values must be provided as a dictionary with variable names as keys. "
                           "Perhaps look to see if an unparsed JSON string was provided.")

_json = msgspec.json.Decoder()


@dataclass(frozen=True)
class Limits:
    max_root_fields: int = DEFAULT_LIMIT
    max_aliases: int = DEFAULT_LIMIT


def limits_from_env(environ: Mapping[str, str]) -> Limits:
    return Limits(max_root_fields=int(environ.get(MAX_ROOT_FIELDS_ENV, DEFAULT_LIMIT)),
                  max_aliases=int(environ.get(MAX_ALIASES_ENV, DEFAULT_LIMIT)))


@dataclass
class Context:
    """What resolvers read from, for one request."""

    db: AsyncDatabase
    store: ArtifactStore
    url_args: Mapping[str, str]  # the /graphql URL's query string (see the bulk-interval resolver)
    _experiments: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)

    async def experiment(self, experiment_id: str) -> dict[str, Any]:
        """One read per experiment and request, however many runs of a search name it."""
        if experiment_id not in self._experiments:
            self._experiments[experiment_id] = asyncio.ensure_future(
                experiments.get_experiment(self.db, experiment_id))
        return (await self._experiments[experiment_id])["experiment"]


# --- the query scan (graphql_no_batching.py) -----------------------------------------------------


def _level(selection_set: SelectionSetNode,
           fragments: Mapping[str, FragmentDefinitionNode]) -> tuple[list[FieldNode], int]:
    """The fields of one level, fragments merged in, and how many of them carry an alias (spread
    over sibling fragments or not: they all count against one limit)."""
    fields: list[FieldNode] = []
    aliases = 0
    pending = deque(selection_set.selections)
    seen: set[str] = set()
    while pending:
        selection = pending.popleft()
        if isinstance(selection, FieldNode):
            fields.append(selection)
            aliases += selection.alias is not None
        elif isinstance(selection, InlineFragmentNode):
            if selection.selection_set:
                pending.extend(selection.selection_set.selections)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if name not in seen and fragment is not None and fragment.selection_set:
                pending.extend(fragment.selection_set.selections)
            seen.add(name)
    return fields, aliases


def scan_query(document: DocumentNode) -> tuple[int, int]:
    """(root fields of all operations, most aliases on one level); raises on depth or size, in the
    reference's traversal order so the same query hits the same limit first."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    root_fields = max_aliases = selections = 0
    for definition in document.definitions:
        if not isinstance(definition, OperationDefinitionNode) or not definition.selection_set:
            continue
        stack = [(definition.selection_set, 1)]
        while stack:
            selection_set, depth = stack.pop()
            if depth > MAX_DEPTH:
                raise GraphQLError(f"Query exceeds maximum depth of {MAX_DEPTH}")
            fields, aliases = _level(selection_set, fragments)
            for node in fields:
                root_fields += depth == 1
                if node.selection_set:
                    stack.append((node.selection_set, depth + 1))
                selections += 1
                if selections > MAX_SELECTIONS:
                    raise GraphQLError(f"Query exceeds maximum total selections of {MAX_SELECTIONS}")
            max_aliases = max(max_aliases, aliases)
    return root_fields, max_aliases


def refusal(document: DocumentNode, limits: Limits) -> GraphQLError | None:
    try:
        root_fields, aliases = scan_query(document)
    except GraphQLError as err:
        return err
    for what, value, limit, env in (("root fields", root_fields, limits.max_root_fields, MAX_ROOT_FIELDS_ENV),
                                    ("aliases", aliases, limits.max_aliases, MAX_ALIASES_ENV)):
        if value > limit:
            return GraphQLError(f"GraphQL queries should have at most {limit} {what}, got {value} {what}. "
                                f"To increase the limit, set the {env} environment variable.")
    return None


# --- resolvers -----------------------------------------------------------------------------------


def _input(args: Mapping[str, Any], owner: str, field_name: str) -> Mapping[str, Any]:
    """The `input` argument; its absence and an explicit null fail with graphene's words."""
    if "input" not in args:
        method = f"{owner}.resolve_{snake_case(field_name)}()"
        raise GraphQLError(f"{method} missing 1 required positional argument: 'input'")
    if args["input"] is None:
        raise GraphQLError("vars() argument must have __dict__ attribute")
    return args["input"]


Call = Callable[[Context, Mapping[str, Any]], Awaitable[Any]]


def _root(owner: str, call: Call) -> Callable[..., Awaitable[Any]]:
    """A root field: `call(context, input)`; `owner` is the graphene class that defines it."""
    async def resolve(_root: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
        return await call(info.context, _input(args, owner, info.field_name))
    return resolve


async def get_experiment(ctx: Context, data: Mapping[str, Any]) -> dict[str, Any]:
    # The store reads an empty id as the Default experiment (only the REST handler requires one).
    return await experiments.get_experiment(ctx.db, data.get("experimentId") or DEFAULT_EXPERIMENT_ID)


async def get_run(ctx: Context, data: Mapping[str, Any]) -> dict[str, Any]:
    return await runs.get_run(ctx.db, data.get("runId") or data.get("runUuid") or "")


async def search_runs(ctx: Context, data: Mapping[str, Any]) -> dict[str, Any]:
    if data.get("runViewType") is not None:
        raise GraphQLError(RUN_VIEW_TYPE_ERROR)
    return await runs.search_runs(ctx.db, rq.SearchRuns(
        experiment_ids=list(data.get("experimentIds") or []), filter=data.get("filter"),
        max_results=data.get("maxResults"), order_by=list(data.get("orderBy") or []),
        page_token=data.get("pageToken") or None))


def _int_arg(value: str | int) -> int:
    try:
        return int(value)
    except ValueError as exc:  # MLflow's answer is Python's message
        raise MlflowError.invalid(str(exc)) from None


def url_window(args: Mapping[str, str]) -> tuple[int, int | None, int | None]:
    """(max_results, start_step, end_step) from the /graphql URL's query string, checked as
    MLflow's `get_metric_history_bulk_interval_impl` checks them."""
    max_results = _int_arg(args.get("max_results", rq.MAX_RESULTS_PER_RUN))
    raw_start, raw_end = args.get("start_step"), args.get("end_step")
    if (raw_start is None) != (raw_end is None):
        raise MlflowError.invalid("If either start step or end step are specified, both must be specified.")
    start = None if raw_start is None else _int_arg(raw_start)
    end = None if raw_end is None else _int_arg(raw_end)
    if start is not None and end is not None and start > end:
        raise MlflowError.invalid(
            f"end_step must be greater than start_step. Found start_step={start} and end_step={end}.")
    if max_results < 1:  # the SQL store answers the last point; a sample of none is refused here
        raise MlflowError.invalid(f"max_results must be between 1 and {rq.MAX_RESULTS_PER_RUN}.")
    return max_results, start, end


async def bulk_interval(ctx: Context, data: Mapping[str, Any]) -> dict[str, Any]:
    """MLflow's impl reads the window from the request's query string, which for /graphql is the
    URL's, not the input's; nor does it limit the number of runs as the REST handler does."""
    max_results, start, end = url_window(ctx.url_args)
    run_ids = [r for r in data.get("runIds") or [] if r is not None]
    key = data.get("metricKey") or ""
    return {"metrics": await history.sampled_histories(ctx.db, run_ids, key, max_results, start, end)}


async def list_artifacts(ctx: Context, data: Mapping[str, Any]) -> dict[str, Any]:
    path = data.get("path")
    safe_relative_path(path or "")  # the path is checked first, as MLflow does
    run_id = data.get("runId") or data.get("runUuid") or ""
    try:
        validate_run_id(run_id)
    except MlflowError:  # the store just finds no such run
        raise MlflowError.not_found(run_not_found_message(run_id)) from None
    return await list_run_artifacts(ctx.db, ctx.store, run_id, path)


async def search_model_versions(ctx: Context, data: Mapping[str, Any]) -> dict[str, Any]:
    return await registry.search_versions(ctx.db, registry.SearchModelVersions(
        filter=data.get("filter"), max_results=data.get("maxResults"),
        order_by=list(data.get("orderBy") or []), page_token=data.get("pageToken") or None))


async def search_dataset_summaries(ctx: Context, data: Mapping[str, Any]) -> dict[str, Any]:
    return await search_datasets(ctx.db, SearchDatasets(list(data.get("experimentIds") or [])))


async def run_experiment(run: dict[str, Any], info: GraphQLResolveInfo) -> dict[str, Any]:
    return await info.context.experiment(run["info"]["experiment_id"])


async def run_model_versions(run: dict[str, Any], info: GraphQLResolveInfo) -> list[dict[str, Any]]:
    """The versions registered from this run, found as MLflow does: a version search by run id."""
    run_id = run["info"]["run_id"]
    query = registry.SearchModelVersions(filter=f"run_id='{run_id}'")
    found = await registry.search_versions(info.context.db, query)
    return found.get("model_versions", [])


def echo(_root: Any, _info: GraphQLResolveInfo, **args: Any) -> dict[str, Any]:
    if "inputString" not in args:
        raise GraphQLError("Query.resolve_test() missing 1 required positional argument: 'input_string'")
    return {"output": args["inputString"]}


def nothing(_root: Any, _info: GraphQLResolveInfo, **_args: Any) -> None:
    """`testMutation`: graphene looks for `resolve_testMutation`, finds none, and answers null."""
    return None


def build_schema() -> GraphQLSchema:
    return build_mlflow_schema({
        ("Query", "mlflowGetExperiment"): _root("QueryType", get_experiment),
        ("Query", "mlflowGetMetricHistoryBulkInterval"): _root("QueryType", bulk_interval),
        ("Query", "mlflowGetRun"): _root("QueryType", get_run),
        ("Query", "mlflowListArtifacts"): _root("QueryType", list_artifacts),
        ("Query", "mlflowSearchModelVersions"): _root("QueryType", search_model_versions),
        ("Query", "mlflowSearchRuns"): _root("Query", search_runs),
        ("Query", "test"): echo,
        ("Mutation", "mlflowSearchDatasets"): _root("MutationType", search_dataset_summaries),
        ("Mutation", "mlflowSearchRuns"): _root("MutationType", search_runs),
        ("Mutation", "testMutation"): nothing,
        ("MlflowRunExtension", "experiment"): run_experiment,
        ("MlflowRunExtension", "modelVersions"): run_model_versions,
    })


# --- the request ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GraphQLRequest:
    query: str
    variables: dict[str, Any] | None
    operation_name: Any  # compared and printed as is, like the reference does


def parse_request(raw: bytes) -> GraphQLRequest:
    try:
        body = _json.decode(raw) if raw.strip() else None
    except (msgspec.DecodeError, RecursionError):
        body = None
    if not isinstance(body, dict):
        raise MlflowError.invalid("A GraphQL request is a JSON object with a 'query' string (one operation per "
                                  "request; batches are not supported).")
    if not isinstance(body.get("query"), str):
        raise MlflowError.invalid("A GraphQL request needs a 'query' string.")
    variables = body.get("variables")
    if variables is not None and not isinstance(variables, dict):
        raise MlflowError.invalid(VARIABLES_NOT_AN_OBJECT)
    return GraphQLRequest(body["query"], variables, body.get("operationName"))


def _answer(data: Any, errors: list[GraphQLError] | None) -> dict[str, Any]:
    return {"data": data, "errors": [e.message for e in errors] if errors else None}


def _check_errors(errors: list[GraphQLError] | None) -> None:
    """A MongoDB outage fails the request (503, which clients retry) instead of reading as an
    error string; other unexpected exceptions are logged, their message answered as MLflow does."""
    for err in errors or ():
        cause = err.original_error
        if isinstance(cause, (ConnectionFailure, ExecutionTimeout)):
            raise cause
        if cause is not None and not isinstance(cause, (MlflowError, GraphQLError)):
            log.warning("graphql field %s failed", ".".join(map(str, err.path or ())), exc_info=cause)


async def run_request(schema: GraphQLSchema, req: GraphQLRequest, context: Context, limits: Limits) -> dict[str, Any]:
    """parse -> scan -> validate -> execute, each failure answered as the reference answers it."""
    try:
        document = parse(req.query, max_tokens=MAX_TOKENS)
    except GraphQLError as err:
        return _answer(None, [err])
    refused = refusal(document, limits)
    if refused is not None:
        return _answer(None, [refused])
    invalid = validate(schema, document)
    if invalid:
        return _answer(None, invalid)
    result = execute(schema, document, context_value=context, variable_values=req.variables,
                     operation_name=req.operation_name)
    if isawaitable(result):
        result = await result
    assert isinstance(result, ExecutionResult)
    _check_errors(result.errors)
    return _answer(result.data, result.errors)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def graphql_routes(db: AsyncDatabase, store: ArtifactStore) -> list[tuple[str, str, Handler]]:
    """(method, absolute path, handler): `/graphql`, GET and POST, as the reference serves it."""
    schema = build_schema()
    limits = limits_from_env(os.environ)

    async def handler(request: web.Request) -> web.Response:
        require_json_content_type(request)  # POST only, MLflow's messages
        req = parse_request(await request.read())
        return json_response(await run_request(schema, req, Context(db, store, request.query), limits))

    return [("GET", "/graphql", handler), ("POST", "/graphql", handler)]
