"""The trace planning rules and shared trace functions, without servers: spans in any order and
more than once, start_trace before or after its spans, bucket and part sizes, rendering."""

from __future__ import annotations

import json

import pytest

from common import events as ev
from common import traces as tr
from common.errors import MlflowError
from query.traces import trace_filter, trace_sort
from writer.traces_plan import TracePlanner, TraceState

TRACE = "tr-" + "ab" * 16
MS = 1_000_000


def _span(span_id: str, parent: str | None = None, start: int = 0, end: int = 10, status: str = "OK",
          content: str | None = None, **kw) -> ev.SpanRecord:
    return ev.SpanRecord(span_id=span_id, name=f"s-{span_id}", start_ns=start * MS, end_ns=end * MS, status=status,
                         content=content or json.dumps({"span_id": span_id, "start_time_unix_nano": start * MS}),
                         parent_id=parent, **kw)


def _logged(*spans: ev.SpanRecord) -> ev.SpansLogged:
    return ev.SpansLogged(TRACE, "1", "mlflow-artifacts:/1/traces/x/artifacts", list(spans))


def _stored(planner: TracePlanner) -> tuple[dict, list[dict]]:
    """Apply the plan's writes to an in-memory 'database': (trace document, buckets)."""
    doc: dict = {}
    buckets: dict[str, dict] = {}
    for w in planner.writes():
        if w.collection == "trace_spans":
            bucket = buckets.setdefault(w.filter["_id"], {"s": {}})
            for path, value in w.update["$set"].items():
                if path.startswith("s."):
                    bucket["s"][path[2:]] = value
                else:
                    bucket[path] = value
        elif w.collection == "traces":
            for path, value in w.update.get("$set", {}).items():
                head, _, tail = path.partition(".")
                if tail:
                    doc.setdefault(head, {})[tail] = value
                else:
                    doc[head] = value
            for path, values in w.update.get("$addToSet", {}).items():
                head, _, tail = path.partition(".")
                target = doc.setdefault(head, {}).setdefault(tail, [])
                target.extend(x for x in values["$each"] if x not in target)
    return doc, list(buckets.values())


def _replan(doc: dict, *events: ev.Event, stored: list[dict] = ()) -> TracePlanner:
    """A planner over `doc` (and the span ids of the `stored` buckets), with `events` applied."""
    ids = {k.partition("~")[0] for b in stored for k in b["s"]}
    state = TraceState({TRACE: {"_id": TRACE, **doc}} if doc else {}, {TRACE: ids} if ids else {})
    planner = TracePlanner(state)
    for e in events:
        planner.apply(e, "e")
    return planner


def test_children_before_their_root_leave_the_trace_in_progress_then_complete() -> None:
    planner = _replan({}, _logged(_span("02", parent="01", start=5, end=8)))
    doc, buckets = _stored(planner)
    assert doc["state"] == "IN_PROGRESS" and doc["request_time"] == 5
    planner = _replan(doc, _logged(_span("01", start=1, end=20, inputs='{"q": 1}', outputs='"a"')), stored=buckets)
    doc2, _ = _stored(planner)
    merged = {**doc, **doc2, "sp": {**doc["sp"], **doc2["sp"]}}
    assert merged["state"] == "OK" and merged["request_time"] == 1 and merged["execution_duration"] == 19
    assert merged["request_preview"] == '{"q": 1}' and merged["response_preview"] == '"a"'


def test_duplicate_spans_in_one_batch_and_across_batches_are_dropped() -> None:
    planner = _replan({}, _logged(_span("01"), _span("02", parent="01")), _logged(_span("02", parent="01")))
    assert (planner.spans_written, planner.spans_dropped) == (2, 1)
    doc, buckets = _stored(planner)
    again = _replan(doc, _logged(_span("01"), _span("02", parent="01")), stored=buckets)
    assert (again.spans_written, again.spans_dropped) == (0, 2)
    assert not [w for w in again.writes() if w.collection == "trace_spans"]


def test_start_trace_fields_win_over_what_later_spans_imply() -> None:
    started = ev.TraceStarted(TRACE, "1", "loc", request_time=100, state="ERROR", execution_duration=50,
                              request_preview="req", tags=[ev.Tag("mlflow.traceName", "agent")],
                              metadata=[ev.Tag("mlflow.user", "me")])
    planner = _replan({}, started, _logged(_span("01", start=1, end=500, inputs='"other"')))
    doc, _ = _stored(planner)
    assert (doc["state"], doc["request_time"], doc["execution_duration"], doc["request_preview"]) == (
        "ERROR", 100, 50, "req")
    info = tr.trace_info({**doc, "_id": TRACE})
    assert info["trace_metadata"] == {"mlflow.user": "me", "mlflow.trace.infoFinalized": "true"}
    assert info["tags"]["mlflow.traceName"] == "agent"
    assert info["request_time"] == "1970-01-01T00:00:00.100Z" and info["execution_duration"] == "0.050s"


def test_buckets_close_before_a_document_could_grow_too_large() -> None:
    big = "x" * (3 * 1024 * 1024)
    spans = [_span(f"{i:02x}", parent="00" if i else None, content=json.dumps({"v": big, "span_id": i}))
             for i in range(8)]
    planner = _replan({}, _logged(*spans))
    _, buckets = _stored(planner)
    assert len(buckets) >= 3
    assert max(sum(len(c) for c in b["s"].values()) for b in buckets) <= tr.BUCKET_BYTES
    assert len(tr.span_entries(buckets)) == 8


def test_a_span_larger_than_a_part_is_split_and_joined_back() -> None:
    content = json.dumps({"span_id": "01", "start_time_unix_nano": 1, "v": "é" * (3 * 1024 * 1024)})
    planner = _replan({}, _logged(_span("01", content=content)))
    _, buckets = _stored(planner)
    keys = [k for b in buckets for k in b["s"]]
    assert len(keys) > 1 and all(k.startswith("01~") for k in keys)
    assert all(len(piece.encode()) <= tr.PART_BYTES for b in buckets for piece in b["s"].values())
    assert tr.span_entries(buckets) == [json.loads(content)]


def test_deleted_traces_drop_pending_writes_of_the_batch() -> None:
    planner = _replan({}, _logged(_span("01")), ev.TracesDeleted("1", [TRACE]))
    writes = planner.writes()
    assert [w.delete for w in writes] == [True, True]


def test_tag_delete_of_a_missing_key_and_tags_of_a_missing_trace_are_refused() -> None:
    with pytest.raises(MlflowError, match="not found"):
        _replan({}, ev.TraceTagSet(TRACE, "k", "v"))
    doc, _ = _stored(_replan({}, _logged(_span("01"))))
    with pytest.raises(MlflowError, match="No trace tag"):
        _replan(doc, ev.TraceTagDeleted(TRACE, "nope"))


def test_span_json_renders_attributes_as_otel_any_values() -> None:
    span = {"trace_id": "q83vEjRWeJA=", "span_id": "AAAAAAAAAAE=", "parent_span_id": None, "name": "n",
            "start_time_unix_nano": 5, "end_time_unix_nano": 9,
            "attributes": {"i": "3", "f": "0.5", "b": "true", "s": '"x"', "d": '{"k": [1, "a"]}', "e": "{}"},
            "events": [], "status": {"code": "STATUS_CODE_ERROR", "message": "boom"}}
    out = tr.span_json(span)
    assert out["attributes"] == [
        {"key": "i", "value": {"int_value": 3}}, {"key": "f", "value": {"double_value": 0.5}},
        {"key": "b", "value": {"bool_value": True}}, {"key": "s", "value": {"string_value": "x"}},
        {"key": "d", "value": {"kvlist_value": {"values": [{"key": "k", "value": {"array_value": {"values": [
            {"int_value": 1}, {"string_value": "a"}]}}}]}}},
        {"key": "e", "value": {"kvlist_value": {}}}]
    assert out["status"] == {"message": "boom", "code": "STATUS_CODE_ERROR"}
    assert "parent_span_id" not in out


@pytest.mark.parametrize("text", ["status = 'OK' OR status = 'ERROR'", "span.nope = 'x'", "timestamp_ms > 'abc'",
                                  "tags.k > 'x'", "feedback.q ~ 'x'", "status IN 'OK'", "attributes.x = 1",
                                  "tags.k RLIKE '(('"])
def test_bad_filters_are_400s_not_queries(text: str) -> None:
    with pytest.raises(MlflowError) as info:
        trace_filter(["1"], text)
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"


def test_filters_and_orders_become_typed_queries() -> None:
    query = trace_filter(["1"], "status = 'ok' AND tags.`a.b` LIKE 'x%' AND span.name IN ('p', 'q') "
                                "AND timestamp_ms >= 5 AND metadata.m IS NULL")
    assert query["$and"][1] == {"state": {"$eq": "OK"}}
    assert query["$and"][2]["tags.a%2Eb"]["$regex"].startswith("^x")
    assert query["$and"][3] == {"sp.names": {"$in": ["p", "q"]}}
    assert query["$and"][4] == {"request_time": {"$gte": 5}}
    assert query["$and"][5] == {"metadata.m": None}
    assert trace_sort(["execution_time_ms DESC"]) == [("execution_duration", -1), ("request_time", -1), ("_id", 1)]


def test_a_replay_after_a_crash_between_document_and_buckets_stores_the_spans() -> None:
    events = [_logged(_span("01"), _span("02", parent="01"))]
    first = _replan({}, *events)
    doc, _ = _stored(first)  # the trace document was written, the buckets were not
    assert "ids" not in doc["sp"] and doc["sp"]["n"] == 2
    replay = _replan(doc, *events)  # nothing stored: the store finds no span ids
    assert (replay.spans_written, replay.spans_dropped) == (2, 0)
    _, buckets = _stored(replay)
    assert len(tr.span_entries(buckets)) == 2
