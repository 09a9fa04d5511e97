"""Hostile input at every door: each request of the corpus gets a 4xx with MLflow's error JSON,
never a 500, and changes nothing (MongoDB collection counts, the artifact tree, the events
published, no file anywhere under the stack's directory or at the traversal targets).

The corpus is a table: MongoDB operator injection into every JSON field of the write and search
endpoints and into search filters, order_by and page tokens; path traversal on every artifact
route (plain, percent-encoded, double-encoded, backslash, NUL, absolute, Unicode look-alikes);
oversized and deeply nested bodies; wrong types; invalid UTF-8; huge headers and request lines.
Requests go out through `http.client` so paths reach the server exactly as written (requests
and urllib3 would normalise `..` away). The whole corpus runs twice: against a standalone server as
shipped, and with GENESIS_FLOW_AUTH=basic as the resources' (non-admin) owner, so the
authorization layer, which reads the same parameters first, is attacked too.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

import pytest
import requests
from pymongo import MongoClient

from tests.security.conftest import ADMIN, ADMIN_PASSWORD, AUTH_ENV
from tests.services import Services
from tests.stack import Stack, make_stack

pytestmark = pytest.mark.integration

API = "/api/2.0/mlflow"
ART = "/api/2.0/mlflow-artifacts"
MARK = "gfpwn"  # every traversal target's file name carries it; none may ever exist


class Case(NamedTuple):
    id: str
    method: str
    path: str  # may hold <exp>, <run>, <model>: replaced by the fixture's ids
    body: Any = None  # dict/list (JSON), bytes (raw), or None
    headers: dict[str, str] | None = None
    json_error: bool = True  # False only where the HTTP parser answers before the app


# --- MongoDB operator injection into JSON fields -------------------------------------------------

OPERATORS: list[tuple[str, Any]] = [
    ("ne", {"$ne": None}),
    ("where", {"$where": "sleep(1000) || true"}),
    ("regex", {"$regex": "^(a+)+$"}),
    ("gt", {"$gt": ""}),
]

WRITE_BODIES: dict[str, dict[str, Any]] = {
    "/experiments/create": {"name": "inj-<uid>"},
    "/experiments/update": {"experiment_id": "<exp>", "new_name": "renamed-<uid>"},
    "/experiments/set-experiment-tag": {"experiment_id": "<exp>", "key": "k", "value": "v"},
    "/experiments/delete-experiment-tag": {"experiment_id": "<exp>", "key": "k"},
    "/experiments/delete": {"experiment_id": "<exp>"},
    "/runs/create": {"experiment_id": "<exp>", "run_name": "r", "start_time": 1},
    "/runs/update": {"run_id": "<run>", "status": "FINISHED", "end_time": 2},
    "/runs/delete": {"run_id": "<run>"},
    "/runs/log-metric": {"run_id": "<run>", "key": "m", "value": 1.0, "timestamp": 1, "step": 0},
    "/runs/log-parameter": {"run_id": "<run>", "key": "p-<uid>", "value": "v"},
    "/runs/set-tag": {"run_id": "<run>", "key": "t", "value": "v"},
    "/runs/delete-tag": {"run_id": "<run>", "key": "t"},
    "/runs/log-batch": {"run_id": "<run>", "metrics": [{"key": "m", "value": 1.0, "timestamp": 1, "step": 0}]},
    "/registered-models/create": {"name": "rm-<uid>", "description": "d"},
    "/logged-models": {"experiment_id": "<exp>", "name": "lm"},
}
# the whole-body field names whose injection must be rejected (every field of each body above,
# and the nested fields of log-batch)
NESTED: list[tuple[str, str, Any]] = [
    ("/runs/log-batch", "metrics[0].key", lambda op: {"run_id": "<run>", "metrics": [
        {"key": op, "value": 1.0, "timestamp": 1, "step": 0}]}),
    ("/runs/log-batch", "metrics[0].value", lambda op: {"run_id": "<run>", "metrics": [
        {"key": "m", "value": op, "timestamp": 1, "step": 0}]}),
    ("/runs/log-batch", "params[0].value", lambda op: {"run_id": "<run>", "params": [{"key": "p", "value": op}]}),
    ("/runs/log-batch", "tags[0].key", lambda op: {"run_id": "<run>", "tags": [{"key": op, "value": "v"}]}),
    ("/runs/create", "tags[0].value", lambda op: {"experiment_id": "<exp>", "tags": [{"key": "k", "value": op}]}),
    ("/experiments/create", "tags[0].key", lambda op: {"name": "x-<uid>", "tags": [{"key": op, "value": "v"}]}),
]

SEARCH_BODIES: dict[str, dict[str, Any]] = {
    "/runs/search": {"experiment_ids": ["<exp>"], "filter": "", "max_results": 10, "order_by": [],
                     "page_token": "", "run_view_type": "ACTIVE_ONLY"},
    "/experiments/search": {"filter": "", "max_results": 10, "order_by": [], "page_token": "",
                            "view_type": "ACTIVE_ONLY"},
    "/logged-models/search": {"experiment_ids": ["<exp>"], "filter": "", "max_results": 10, "page_token": ""},
}


def _operator_cases() -> list[Case]:
    cases = []
    for path, body in WRITE_BODIES.items():
        for field in body:
            for name, op in OPERATORS[:2]:
                cases.append(Case(f"inject-{name}{path.replace('/', '-')}-{field}", "POST", API + path,
                                  {**body, field: op}))
    for path, field, make in NESTED:
        for name, op in OPERATORS[:2]:
            cases.append(Case(f"inject-{name}{path.replace('/', '-')}-{field}", "POST", API + path, make(op)))
    for path, body in SEARCH_BODIES.items():
        for field in body:
            for name, op in OPERATORS:
                cases.append(Case(f"inject-{name}{path.replace('/', '-')}-{field}", "POST", API + path,
                                  {**body, field: op}))
    return cases


# --- search filters, order_by and page tokens ------------------------------------------------------

RUN_FILTERS = [
    "params.a = 'x' OR 1=1",
    "' OR '1'='1",
    "1=1",
    "metrics.m = {\"$gt\": 0}",
    "params.a = 'x') || (1==1",
    "params.a = 'x'; db.runs.drop()",
    "params.a = 'x' UNION SELECT * FROM runs",
    "metrics.m > 0 AND sleep(5)",
    "$where: 'sleep(1000)'",
    "params.a REGEXP '.*'",
    "tags.x LIKE",
    "attributes.start_time > 'yesterday'",
    "params.a IN ('x')",
    "params.a = 'x' AND",
    "AND params.a = 'x'",
    "foo.bar = 'x'",
    "metrics.m = 'abc'",
    "params.a = \"x\" -- comment",
    "attributes.run_id IN ('a') OR attributes.run_id IN ('b')",
    "metrics.m >< 1",
]
EXPERIMENT_FILTERS = [
    "name = 'x' OR 1=1",
    "name LIKE '%' ; db.dropDatabase()",
    "' OR ''='",
    "name = {\"$ne\": null}",
    "tags.k = 'v' OR tags.k != 'v'",
    "creation_time > 'now'",
    "$where = 1",
    "name REGEXP '.*'",
]
REGISTRY_FILTERS = [
    "name = 'x' OR 1=1",
    "name LIKE '%'; db.dropDatabase()",
    "name = {\"$ne\": null}",
    "$where = 1",
    "version_number > 'x'",
]
ORDER_BYS = ["metrics.m DESC; db.runs.drop()", "$natural", "{\"$where\": 1}", "params.a SIDEWAYS",
             "start_time DESC, $where"]
PAGE_TOKENS = ["eyIkd2hlcmUiOiAiMSJ9",  # {"$where": "1"}
               "eyJvZmZzZXQiOiB7IiRndCI6IDB9fQ==",  # {"offset": {"$gt": 0}}
               "!!!not-base64!!!", "A" * 5000, "e30="]


def _filter_cases() -> list[Case]:
    cases = [Case(f"runs-filter-{i}", "POST", API + "/runs/search", {"experiment_ids": ["<exp>"], "filter": f})
             for i, f in enumerate(RUN_FILTERS)]
    cases += [Case(f"experiments-filter-{i}", "POST", API + "/experiments/search", {"filter": f})
              for i, f in enumerate(EXPERIMENT_FILTERS)]
    cases += [Case(f"registered-models-filter-{i}", "GET", API + "/registered-models/search?filter=" + quote(f))
              for i, f in enumerate(REGISTRY_FILTERS)]
    cases += [Case(f"model-versions-filter-{i}", "GET", API + "/model-versions/search?filter=" + quote(f))
              for i, f in enumerate(REGISTRY_FILTERS)]
    cases += [Case(f"runs-order-by-{i}", "POST", API + "/runs/search",
                   {"experiment_ids": ["<exp>"], "order_by": [o]}) for i, o in enumerate(ORDER_BYS)]
    cases += [Case(f"runs-page-token-{i}", "POST", API + "/runs/search",
                   {"experiment_ids": ["<exp>"], "page_token": t}) for i, t in enumerate(PAGE_TOKENS)]
    cases += [Case(f"experiments-page-token-{i}", "GET", API + "/experiments/search?page_token=" + quote(t))
              for i, t in enumerate(PAGE_TOKENS)]
    cases += [
        Case("get-history-operator-in-query", "GET", API + "/metrics/get-history?run_id[$ne]=1&metric_key=m"),
        Case("experiments-get-operator-in-query", "GET", API + "/experiments/get?experiment_id[$ne]=1"),
        Case("runs-get-json-in-query", "GET", API + "/runs/get?run_id=" + quote('{"$ne": null}')),
        Case("experiments-get-json-in-query", "GET", API + "/experiments/get?experiment_id=" + quote('{"$gt": ""}')),
        Case("get-by-name-regex", "GET", API + "/experiments/get-by-name?experiment_name=" + quote("^(a+)+$")),
        Case("search-max-results-negative", "GET", API + "/experiments/search?max_results=-1"),
        Case("search-max-results-huge", "POST", API + "/runs/search", {"experiment_ids": ["<exp>"],
                                                                       "max_results": 10**12}),
        Case("search-experiment-ids-operator", "POST", API + "/runs/search", {"experiment_ids": {"$ne": None}}),
    ]
    return cases


# --- path traversal on every artifact route --------------------------------------------------------

TRAVERSALS: list[tuple[str, str]] = [
    ("dotdot", f"../../../../tmp/{MARK}"),
    ("inner-dotdot", f"<exp>/<run>/artifacts/../../../../../tmp/{MARK}"),
    ("encoded", f"..%2F..%2F..%2Ftmp%2F{MARK}"),
    ("encoded-dots", f"%2e%2e/%2e%2e/%2e%2e/tmp/{MARK}"),
    ("double-encoded", f"%252e%252e%252f%252e%252e%252ftmp%252f{MARK}"),
    ("backslash", f"..\\..\\..\\tmp\\{MARK}"),
    ("encoded-backslash", f"<exp>/<run>/artifacts/..%5C..%5C..%5C{MARK}"),
    ("nul", f"<exp>/<run>/artifacts/{MARK}%00.txt"),
    ("absolute", f"/tmp/{MARK}"),
    ("encoded-absolute", f"%2Ftmp%2F{MARK}"),
    ("fullwidth-dots", f"%EF%BC%8E%EF%BC%8E/%EF%BC%8E%EF%BC%8E/tmp/{MARK}"),
    ("two-dot-leader", f"%E2%80%A5/%E2%80%A5/tmp/{MARK}"),
    ("overlong-utf8", f"%c0%ae%c0%ae/%c0%ae%c0%ae/tmp/{MARK}"),
    ("drive-letter", f"C:%5CWindows%5C{MARK}"),
    ("file-scheme", f"file:///tmp/{MARK}"),
]


def _traversal_cases() -> list[Case]:
    routes: list[tuple[str, str, str, Any]] = [
        ("download", "GET", ART + "/artifacts/{p}", None),
        ("upload", "PUT", ART + "/artifacts/{p}", b"payload"),
        ("delete", "DELETE", ART + "/artifacts/{p}", None),
        ("list", "GET", ART + "/artifacts?path={p}", None),
        ("mpu-create", "POST", ART + "/mpu/create/{p}", {"path": f"{MARK}.bin", "num_parts": 1}),
        ("mpu-upload", "PUT", ART + "/mpu/upload/{p}?upload_id=u&part_number=1", b"payload"),
        ("mpu-complete", "POST", ART + "/mpu/complete/{p}", {"path": f"{MARK}.bin", "upload_id": "u", "parts": []}),
        ("mpu-abort", "POST", ART + "/mpu/abort/{p}", {"path": f"{MARK}.bin", "upload_id": "u"}),
        ("get-artifact", "GET", "/get-artifact?run_id=<run>&path={p}", None),
        ("ajax-get-artifact", "GET", "/ajax-api/2.0/mlflow/get-artifact?run_uuid=<run>&path={p}", None),
        ("artifacts-list", "GET", API + "/artifacts/list?run_id=<run>&path={p}", None),
        ("ui-upload", "POST", "/ajax-api/2.0/mlflow/upload-artifact?run_uuid=<run>&path={p}", b"payload"),
        ("model-directories", "GET", API + "/logged-models/<model>/artifacts/directories?artifact_directory_path={p}",
         None),
    ]
    cases = []
    for route, method, template, body in routes:
        for name, payload in TRAVERSALS:
            in_query = "{p}" in template.split("?", 1)[-1] and "?" in template
            value = quote(payload, safe="%<>") if in_query else payload
            cases.append(Case(f"traversal-{route}-{name}", method, template.replace("{p}", value), body))
    return cases


# --- sizes, nesting, types, encodings, headers ---------------------------------------------------

def _deep(depth: int) -> bytes:
    return b'{"name": ' + b"[" * depth + b"]" * depth + b"}"


def _misc_cases() -> list[Case]:
    big_tag = {"run_id": "<run>", "tags": [{"key": "big", "value": "x" * 1_100_000}]}
    cases = [
        Case("deep-array-experiments-create", "POST", API + "/experiments/create", _deep(100_000)),
        Case("deep-object-runs-search", "POST", API + "/runs/search",
             b'{"experiment_ids": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_000 + b"}"),
        Case("deep-array-log-batch", "POST", API + "/runs/log-batch", b'{"run_id": "<run>", "metrics": '
             + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        Case("deep-graphql", "POST", "/graphql", b'{"query": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        Case("graphql-variables-operator", "POST", "/graphql", {"query": "{ __typename }", "variables": [{"$ne": 1}]}),
        Case("body-over-limit", "POST", API + "/runs/log-batch", b"a" * (17 * 1024 * 1024)),
        Case("batch-over-1mb", "POST", API + "/runs/log-batch", big_tag),
        Case("batch-10k-metrics", "POST", API + "/runs/log-batch", {"run_id": "<run>", "metrics": [
            {"key": f"m{i}", "value": 1.0, "timestamp": 1, "step": 0} for i in range(10_000)]}),
        Case("invalid-utf8-create", "POST", API + "/experiments/create", b'{"name": "a\xff\xfeb"}'),
        Case("invalid-utf8-log-param", "POST", API + "/runs/log-parameter",
             b'{"run_id": "<run>", "key": "k\xc3\x28", "value": "v"}'),
        Case("invalid-utf8-log-batch", "POST", API + "/runs/log-batch", b'{"run_id": "<run>\xed\xa0\x80"}'),
        Case("invalid-utf8-update", "POST", API + "/experiments/update", b'{"experiment_id": "\xff"}'),
        Case("invalid-utf8-model", "POST", API + "/registered-models/create", b'{"name": "\xc0\xaf"}'),
        Case("utf16-body", "POST", API + "/experiments/create", '{"name": "utf16"}'.encode("utf-16")),
        Case("bom-and-garbage", "POST", API + "/runs/log-metric", b"\xef\xbb\xbf\x00\x01\x02"),
        Case("json-array-body", "POST", API + "/runs/set-tag", b"[1, 2, 3]"),
        Case("json-string-body", "POST", API + "/runs/set-tag", b'"{\\"run_id\\": 1}"'),
        Case("json-number-body", "POST", API + "/experiments/delete", b"12345"),
        Case("wrong-content-type", "POST", API + "/runs/log-metric", b"run_id=x&key=m",
             {"Content-Type": "application/x-www-form-urlencoded"}),
        Case("huge-header", "GET", API + "/experiments/search", None, {"X-Big": "a" * 100_000}, json_error=False),
        Case("many-headers", "GET", API + "/experiments/search", None,
             {f"X-H{i}": "v" * 200 for i in range(200)}, json_error=False),
        Case("huge-request-line", "GET", API + "/experiments/get?experiment_id=" + "1" * 100_000, None,
             json_error=False),
        Case("header-crlf-injection-ack", "POST", API + "/runs/log-metric",
             {"run_id": "<run>", "key": "m", "value": 1, "timestamp": 1}, {"X-Genesis-Flow-Ack": "x\tEvil: 1"}),
    ]
    wrong_types: list[tuple[str, dict[str, Any]]] = [
        ("/runs/log-metric", {"run_id": ["<run>"], "key": "m", "value": 1, "timestamp": 1}),
        ("/runs/log-metric", {"run_id": "<run>", "key": 5, "value": 1, "timestamp": 1}),
        ("/runs/log-metric", {"run_id": "<run>", "key": "m", "value": [1], "timestamp": 1}),
        ("/runs/log-metric", {"run_id": "<run>", "key": "m", "value": 1, "timestamp": "yesterday"}),
        ("/runs/log-metric", {"run_id": "<run>", "key": "m", "value": 1, "timestamp": 1, "step": 1.5e300}),
        ("/runs/log-metric", {"run_id": "<run>", "key": "m", "value": 1, "timestamp": 10**30}),
        ("/runs/log-metric", {"run_id": True, "key": "m", "value": 1, "timestamp": 1}),
        ("/runs/log-parameter", {"run_id": "<run>", "key": "p", "value": {"nested": 1}}),
        ("/runs/log-parameter", {"run_id": "<run>", "key": None, "value": "v"}),
        ("/runs/set-tag", {"run_id": "<run>", "key": ["k"], "value": "v"}),
        ("/runs/log-batch", {"run_id": "<run>", "metrics": ["not-a-metric"]}),
        ("/runs/log-batch", {"run_id": "<run>", "params": [{"key": {"k": "p"}, "value": "v"}]}),
        ("/runs/log-batch", {"run_id": "<run>", "tags": {"k": "v"}}),
        ("/runs/log-batch", {"run_id": "<run>", "metrics": [{"key": "m", "value": "NaNx", "timestamp": 1}]}),
        ("/runs/update", {"run_id": "<run>", "status": 3}),
        ("/runs/update", {"run_id": "<run>", "end_time": "tomorrow"}),
        ("/runs/create", {"experiment_id": ["<exp>"]}),
        ("/runs/create", {"experiment_id": "<exp>", "start_time": "now"}),
        ("/runs/create", {"experiment_id": "<exp>", "tags": [["k", "v"]]}),
        ("/experiments/create", {"name": ["a", "b"]}),
        ("/experiments/create", {"name": "x-<uid>", "artifact_location": 42}),
        ("/experiments/create", {"name": "x-<uid>", "artifact_location": ["file:///etc"]}),
        ("/experiments/update", {"experiment_id": "<exp>", "new_name": None}),
        ("/experiments/delete", {"experiment_id": 0}),
        ("/registered-models/create", {"name": {"first": "x"}}),
        ("/registered-models/create", {"name": "rm-<uid>", "tags": "t"}),
        ("/logged-models", {"experiment_id": "<exp>", "params": "p"}),
        ("/logged-models", {"experiment_id": {"$in": ["<exp>"]}}),
        ("/runs/search", {"experiment_ids": "<exp>", "max_results": "ten"}),
        ("/runs/search", {"experiment_ids": ["<exp>"], "order_by": "start_time"}),
    ]
    cases += [Case(f"wrong-type-{i}{path.replace('/', '-')}", "POST", API + path, body)
              for i, (path, body) in enumerate(wrong_types)]
    cases += [Case(f"patch-logged-model-{name}", "PATCH", API + "/logged-models/<model>", body)
              for name, body in (("status-operator", {"status": {"$ne": None}}), ("status-number", {"status": 7}))]
    cases += [Case(f"logged-model-tags-{name}", "PATCH", API + "/logged-models/<model>/tags", body)
              for name, body in (("operator", {"tags": [{"key": {"$ne": None}, "value": "v"}]}),
                                 ("not-a-list", {"tags": {"$set": {"k": "v"}}}))]
    cases += [Case(f"logged-model-id-{name}", "GET", API + "/logged-models/" + mid)
              for name, mid in (("traversal", "..%2F..%2Fetc"), ("operator", quote('{"$ne":null}')),
                                ("nul", "m-%00"))]
    return cases


CASES = _operator_cases() + _filter_cases() + _traversal_cases() + _misc_cases()


def test_the_corpus_has_at_least_200_cases() -> None:
    assert len(CASES) >= 200
    assert len({c.id for c in CASES}) == len(CASES)


# --- the stack and the checks ---------------------------------------------------------------------

class Target(NamedTuple):
    stack: Stack
    ids: dict[str, str]
    headers: dict[str, str]


@pytest.fixture(scope="module", params=["open", "auth"])
def target(request, services: Services) -> Iterator[Target]:
    """A standalone server (artifacts in files, so the tree can be compared) with an experiment, a
    run with an artifact, and a logged model to aim at: `open` as shipped (no auth), `auth` with
    GENESIS_FLOW_AUTH=basic and every request from the (non-admin) owner of those resources, so
    the authorization layer sees the hostile input first."""
    stack = make_stack(services, "hostile", **(AUTH_ENV if request.param == "auth" else {}))
    try:
        stack.start("standalone")
        uri = stack.url("standalone")
        session = requests.Session()
        if request.param == "auth":
            owner = (f"owner-{uuid.uuid4().hex[:6]}", "owner-password-01")
            requests.post(uri + API + "/users/create", json={"username": owner[0], "password": owner[1]},
                          auth=(ADMIN, ADMIN_PASSWORD), timeout=10).raise_for_status()
            session.auth = owner
        exp = session.post(uri + API + "/experiments/create", json={"name": f"hostile-{uuid.uuid4().hex[:6]}"},
                           timeout=10).json()["experiment_id"]
        run = session.post(uri + API + "/runs/create", json={"experiment_id": exp}, timeout=10).json()
        run_id = run["run"]["info"]["run_id"]
        session.post(uri + API + "/runs/log-parameter", json={"run_id": run_id, "key": "fixed", "value": "1"},
                     timeout=10).raise_for_status()
        session.put(f"{uri}{ART}/artifacts/{exp}/{run_id}/artifacts/ok.txt", data=b"ok", timeout=10).raise_for_status()
        model = session.post(uri + API + "/logged-models", json={"experiment_id": exp, "name": "m"}, timeout=10)
        model.raise_for_status()
        ids = {"exp": exp, "run": run_id, "model": model.json()["model"]["info"]["model_id"]}
        headers = {}
        if session.auth:
            headers["Authorization"] = "Basic " + base64.b64encode(":".join(session.auth).encode()).decode()
        yield Target(stack, ids, headers)
    finally:
        stack.stop()


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        for name, real in ids.items():
            value = value.replace(f"<{name}>", real)
        return value
    if isinstance(value, bytes):
        return _fill(value.decode("latin-1"), ids).encode("latin-1")
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    if isinstance(value, dict):
        return {_fill(k, ids): _fill(v, ids) for k, v in value.items()}
    return value


def _send(port: int, method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, bytes]:
    """Exactly these bytes on the wire: no client-side path normalisation."""
    if isinstance(body, (dict, list)):
        data: bytes | None = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **headers}
    else:
        data = body
        if data is not None and method in ("POST", "PATCH"):
            headers = {"Content-Type": "application/json", **headers}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(data or b"")))
        conn.endheaders()
        if data:
            try:
                conn.send(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered early (e.g. 413) and closed
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _snapshot(target: Target) -> dict[str, Any]:
    db = MongoClient(target.stack.services.mongodb_uri)[target.stack.db_name]
    counts = {name: db[name].count_documents({}) for name in sorted(db.list_collection_names())
              if name not in ("writer_status", "writers", "control")}
    tree = sorted(str(p.relative_to(target.stack.workdir)) for p in target.stack.workdir.rglob("*")
                  if "mongodb" not in p.parts and not p.name.endswith(".log"))
    text = requests.get(target.stack.url("standalone") + "/metrics", timeout=10).text
    published = re.findall(r"^genesis_ingest_events_published_total ([0-9.e+]+)$", text, re.M)
    return {"counts": counts, "tree": tree, "published": published,
            "marks": sorted(str(p) for base in (Path("/tmp"), Path("/")) for p in base.glob(f"{MARK}*"))}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_request_is_refused_and_changes_nothing(target: Target, case: Case) -> None:
    ids = {**target.ids, "uid": uuid.uuid4().hex[:8]}
    before = _snapshot(target)
    status, body = _send(target.stack.ports["standalone"], case.method, _fill(case.path, ids),
                         _fill(case.body, ids), {**target.headers, **(case.headers or {})})
    assert 400 <= status < 500, (status, body[:300])
    if case.json_error:
        payload = json.loads(body)
        assert set(payload) >= {"error_code", "message"}, payload
        assert payload["error_code"] != "INTERNAL_ERROR"
    after = _snapshot(target)
    assert after == before
    assert target.stack.procs["standalone"].poll() is None  # still serving
