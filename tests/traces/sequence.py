"""The traces REST sequence run side by side against a stock `mlflow server` and Genesis-Flow.

Spans are sent as OTLP protobuf with fixed ids and times, so both servers receive byte-identical
exports and every answer can be compared field by field. Values that differ by nature (the
experiment id and what embeds it, assessment ids and their clock times) are normalised.

`python -m tests.traces.sequence <url>` prints the transcript of one server's answers.
"""

from __future__ import annotations

import json
import re
import sys
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tests.registry.sequence import _SET_REPR, _diff, _error_fields, _sorted_set_repr

V2, V3 = "/api/2.0/mlflow", "/api/3.0/mlflow"
T0 = 1_760_000_000_000  # ms: every span time is T0 + a fixed offset


@dataclass
class Result:
    name: str
    status: int
    body: Any


def _attr(key: str, value: Any) -> KeyValue:
    kv = KeyValue(key=key)
    if isinstance(value, bool):
        kv.value.bool_value = value
    elif isinstance(value, int):
        kv.value.int_value = value
    elif isinstance(value, float):
        kv.value.double_value = value
    elif isinstance(value, list):
        kv.value.array_value.values.extend(AnyValue(string_value=str(v)) for v in value)
    else:
        kv.value.string_value = str(value)
    return kv


def _span(trace_hex: str, span_hex: str, name: str, start_ms: int, end_ms: int | None, parent: str | None = None,
          status: int = Status.STATUS_CODE_UNSET, message: str = "", **attributes: Any) -> Span:
    span = Span(trace_id=bytes.fromhex(trace_hex), span_id=bytes.fromhex(span_hex), name=name,
                start_time_unix_nano=(T0 + start_ms) * 1_000_000)
    if end_ms is not None:
        span.end_time_unix_nano = (T0 + end_ms) * 1_000_000
    if parent:
        span.parent_span_id = bytes.fromhex(parent)
    span.status.code = status
    if message:
        span.status.message = message
    span.attributes.extend(_attr(k.replace("__", "."), v) for k, v in attributes.items())
    return span


def _export(*spans: Span) -> bytes:
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.extend(spans)
    return request.SerializeToString()


class Sequence:
    def __init__(self, base_url: str, u: str):
        self.base = base_url.rstrip("/")
        self.http = requests.Session()
        self.results: list[Result] = []
        self.experiment_id = ""
        # the same ids on both servers (each has a database of its own)
        self.a, self.b, self.c, self.d = (f"{i}{u}"[:32].ljust(32, "0") for i in "abcd")
        self.u = u
        self.tokens: dict[str, str] = {}  # values that differ between servers -> placeholders

    def call(self, name: str, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        if method == "GET":
            response = self.http.get(self.base + path, params=body, **kwargs)
        else:
            response = self.http.request(method, self.base + path, json=body, **kwargs)
        try:
            payload = response.json() if response.content else {}
        except ValueError:
            payload = {"raw": response.content[:200].hex()}
        self.results.append(Result(name, response.status_code, payload))
        return payload

    def otlp(self, name: str, *spans: Span, experiment_id: str | None = None) -> None:
        response = self.http.post(self.base + "/v1/traces", data=_export(*spans), headers={
            "Content-Type": "application/x-protobuf", "x-mlflow-experiment-id": experiment_id or self.experiment_id})
        self.results.append(Result(name, response.status_code, {"body_hex": response.content.hex()}))

    def run(self) -> list[Result]:
        a, b, c = self.a, self.b, self.c
        self.experiment_id = self.call("setup.experiment", "POST", f"{V2}/experiments/create",
                                       {"name": f"traces-{self.u}"})["experiment_id"]
        self.tokens[self.experiment_id] = "<experiment_id>"
        # trace A: a root, a failing child with an exception event, and a tool span
        root = _span(a, "0000000000000a01", "agent", 0, 120, status=Status.STATUS_CODE_OK,
                     mlflow__spanType='"AGENT"', mlflow__spanInputs='{"question": "why?"}',
                     mlflow__spanOutputs='"because"', team="search", retries=2, ratio=0.5, flag=True,
                     labels=["x", "y"])
        failed = _span(a, "0000000000000a02", "lookup", 10, 20, parent="0000000000000a01",
                       status=Status.STATUS_CODE_ERROR, message="ValueError: bad", mlflow__spanType='"TOOL"')
        event = failed.events.add(name="exception", time_unix_nano=(T0 + 15) * 1_000_000)
        event.attributes.extend([_attr("exception.type", "ValueError"), _attr("exception.message", "bad")])
        tool = _span(a, "0000000000000a03", "search", 30, 90, parent="0000000000000a01",
                     mlflow__spanType='"RETRIEVER"', mlflow__spanInputs='{"q": 1}')
        self.otlp("otlp.children_first", failed, tool)
        self.call("info.before_root", "GET", f"{V3}/traces/tr-{a}")
        self.otlp("otlp.root", root)
        self.otlp("otlp.duplicate", root, tool)
        self.call("info.from_spans", "GET", f"{V3}/traces/tr-{a}")
        self.call("get.with_spans", "GET", f"{V3}/traces/get", {"trace_id": f"tr-{a}"})
        self.call("start_trace", "POST", f"{V3}/traces", {"trace": {"trace_info": {
            "trace_id": f"tr-{a}", "trace_location": {"type": "MLFLOW_EXPERIMENT",
                                                      "mlflow_experiment": {"experiment_id": self.experiment_id}},
            "request_time": "2025-10-09T08:53:20Z", "execution_duration": "0.120s", "state": "OK",
            "trace_metadata": {"mlflow.user": "tester", "mlflow.traceInputs": '{"question": "why?"}'},
            "tags": {"mlflow.traceName": "agent", "team": "search"},
            "request_preview": '{"question": "why?"}', "response_preview": '"because"'}}})
        self.call("info.after_start", "GET", f"{V3}/traces/tr-{a}")
        # trace B: a root that never says OK; trace C: children only (still in progress)
        self.otlp("otlp.b", _span(b, "0000000000000b01", "solo", 200, 260))
        self.otlp("otlp.c", _span(c, "0000000000000c02", "orphan", 300, 310, parent="0000000000000c01"))
        self.call("info.b", "GET", f"{V3}/traces/tr-{b}")
        self.call("info.c_in_progress", "GET", f"{V3}/traces/tr-{c}")
        self.call("info.missing", "GET", f"{V3}/traces/tr-{'f' * 32}")
        self.call("get.missing", "GET", f"{V3}/traces/get", {"trace_id": f"tr-{'f' * 32}"})
        self.call("batch_get", "GET", f"{V3}/traces/batchGet", {"trace_ids": [f"tr-{a}", f"tr-{b}"]})
        self.call("batch_get_infos", "POST", f"{V3}/traces/batchGetInfos", {"trace_ids": [f"tr-{b}", f"tr-{a}"]})
        self.call("ui.trace_artifact", "GET", "/ajax-api/2.0/mlflow/get-trace-artifact", {"request_id": f"tr-{a}"})
        self.call("ui.trace_artifact_in_progress", "GET", "/ajax-api/3.0/mlflow/get-trace-artifact",
                  {"request_id": f"tr-{c}"})
        self._partial_steps()
        self._search_steps()
        self._link_steps()
        self._metric_steps()
        self._tag_steps()
        self._assessment_steps()
        self._v2_steps()
        self._delete_steps()
        return self.results

    def _v2_steps(self) -> None:
        """The API MLflow 2.x clients use (their spans go to the artifact store)."""
        started = self.call("v2.start", "POST", f"{V2}/traces", {
            "experiment_id": self.experiment_id, "timestamp_ms": T0 + 500,
            "request_metadata": [{"key": "m", "value": "1"}], "tags": [{"key": "t", "value": "2"}]})
        request_id = (started.get("trace_info") or {}).get("request_id", "none")
        self.tokens[request_id] = "<v2_request_id>"
        self.call("v2.end", "PATCH", f"{V2}/traces/{request_id}", {
            "timestamp_ms": T0 + 750, "status": "OK", "request_metadata": [{"key": "m2", "value": "x"}],
            "tags": [{"key": "t2", "value": "y"}]})
        self.call("v2.info", "GET", f"{V2}/traces/{request_id}/info")
        self.call("v2.info_missing", "GET", f"{V2}/traces/{'f' * 32}/info")
        self.call("v2.search", "GET", f"{V2}/traces", {"experiment_ids": [self.experiment_id],
                                                      "filter": "status = 'OK'", "max_results": 2})
        self.call("v2.search_ordered", "GET", f"{V2}/traces", {"experiment_ids": [self.experiment_id],
                                                              "order_by": ["timestamp_ms ASC"]})

    def _partial_steps(self) -> None:
        """A trace whose start_trace announced more spans than have arrived."""
        d = self.d
        self.call("partial.start_trace", "POST", f"{V3}/traces", {"trace": {"trace_info": {
            "trace_id": f"tr-{d}", "trace_location": {"type": "MLFLOW_EXPERIMENT",
                                                      "mlflow_experiment": {"experiment_id": self.experiment_id}},
            "request_time": "2025-10-09T08:53:21.500Z", "execution_duration": "2s", "state": "OK",
            "trace_metadata": {"mlflow.trace.sizeStats": '{"total_size_bytes": 10, "num_spans": 2}'}}}})
        self.call("partial.get_incomplete", "GET", f"{V3}/traces/get", {"trace_id": f"tr-{d}"})
        self.call("partial.get_allow_partial", "GET", f"{V3}/traces/get",
                  {"trace_id": f"tr-{d}", "allow_partial": "true"})
        self.otlp("partial.first_span", _span(d, "0000000000000d01", "root", 1500, 3500))
        self.call("partial.still_incomplete", "GET", f"{V3}/traces/get", {"trace_id": f"tr-{d}"})
        self.otlp("partial.second_span", _span(d, "0000000000000d02", "child", 1600, 1700, parent="0000000000000d01"))
        self.call("partial.complete", "GET", f"{V3}/traces/get", {"trace_id": f"tr-{d}"})

    def _metric_steps(self) -> None:
        """QueryTraceMetrics, as the UI's traces and overview pages call it."""
        def metrics(name: str, metric: str, view: str = "TRACES", **extra: Any) -> None:
            self.call(name, "POST", f"{V3}/traces/metrics", {
                "experiment_ids": [self.experiment_id], "view_type": view, "metric_name": metric,
                "aggregations": extra.pop("aggregations", [{"aggregation_type": "COUNT"}]), **extra})

        metrics("metrics.trace_count", "trace_count", start_time_ms=T0 - 1000, end_time_ms=T0 + 10_000)
        metrics("metrics.by_status", "trace_count", dimensions=["trace_status"])
        metrics("metrics.latency_no_window", "latency", time_interval_seconds=60,
                aggregations=[{"aggregation_type": "AVG"}])
        metrics("metrics.latency", "latency", dimensions=["trace_name"], time_interval_seconds=60,
                start_time_ms=T0 - 60_000, end_time_ms=T0 + 3_600_000, aggregations=[
            {"aggregation_type": "AVG"}, {"aggregation_type": "PERCENTILE", "percentile_value": 95},
            {"aggregation_type": "MAX"}])
        metrics("metrics.latency_all", "latency", aggregations=[
            {"aggregation_type": "MIN"}, {"aggregation_type": "PERCENTILE", "percentile_value": 50},
            {"aggregation_type": "AVG"}])
        metrics("metrics.bad_aggregation", "latency", aggregations=[{"aggregation_type": "SUM"}])
        metrics("metrics.filtered", "trace_count", filters=["trace.status = 'OK'"])
        metrics("metrics.span_count", "span_count", view="SPANS")
        metrics("metrics.tokens", "input_tokens", aggregations=[{"aggregation_type": "SUM"}])
        metrics("metrics.empty_window", "trace_count", start_time_ms=1, end_time_ms=2)

    def _link_steps(self) -> None:
        run = self.call("link.run", "POST", f"{V2}/runs/create", {"experiment_id": self.experiment_id,
                                                                  "start_time": T0, "run_name": "linked"})
        run_id = ((run.get("run") or {}).get("info") or {}).get("run_id", "none")
        self.tokens[run_id] = "<run_id>"
        self.call("link.to_run", "POST", f"{V2}/traces/link-to-run",
                  {"trace_ids": [f"tr-{self.b}", f"tr-{self.c}"], "run_id": run_id})
        self._search("link.search_run_id", f"run_id = '{run_id}'")
        self._search("link.search_other_run", "attributes.run_id = 'nope'")
        self.call("link.no_run_id", "POST", f"{V2}/traces/link-to-run", {"trace_ids": [f"tr-{self.b}"]})
        self.call("link.prompts", "POST", f"{V2}/traces/link-prompts",
                  {"trace_id": f"tr-{self.a}", "prompt_versions": [{"name": "qa-prompt", "version": "1"}]})
        self.call("link.prompts_missing_trace", "POST", f"{V2}/traces/link-prompts",
                  {"trace_id": f"tr-{'f' * 32}", "prompt_versions": [{"name": "qa-prompt", "version": "1"}]})

    def _search(self, name: str, filter: str | None = None, **extra: Any) -> Any:
        body: dict[str, Any] = {"locations": [{"type": "MLFLOW_EXPERIMENT",
                                               "mlflow_experiment": {"experiment_id": self.experiment_id}}]}
        if filter is not None:
            body["filter"] = filter
        body.update(extra)
        return self.call(name, "POST", f"{V3}/traces/search", body)

    def _search_steps(self) -> None:
        a = self.a
        self._search("search.all")
        self._search("search.status_ok", "status = 'OK'")
        self._search("search.trace_status_in_progress", "trace.status = 'IN_PROGRESS'")
        self._search("search.status_in", "attributes.status IN ('OK', 'ERROR')")
        self._search("search.span_name", "span.name = 'search'")
        self._search("search.span_name_like", "span.name LIKE 'orph%'")
        self._search("search.tag", "tags.team = 'search'")
        self._search("search.metadata", "metadata.`mlflow.user` = 'tester'")
        self._search("search.timestamp", f"timestamp_ms > {T0 + 100}")
        self._search("search.timestamp_and_status", f"timestamp_ms >= {T0} AND status = 'OK'")
        self._search("search.execution_time", "execution_time_ms > 100")
        self._search("search.request_id", f"request_id = 'tr-{a}'")
        self._search("search.name", "name = 'agent'")
        self._search("search.order_asc", order_by=["timestamp_ms ASC"])
        self._search("search.order_execution_time", order_by=["execution_time_ms DESC"])
        first = self._search("search.page_1", max_results=2, order_by=["timestamp_ms ASC"])
        self._search("search.page_2", max_results=2, order_by=["timestamp_ms ASC"],
                     page_token=first.get("next_page_token", ""))
        self._search("search.bad_entity", "nonsense.key = 'x'")
        self._search("search.bad_attribute", "attributes.nonsense = 'x'")
        self._search("search.max_results_too_many", max_results=501)

    def _tag_steps(self) -> None:
        a = self.a
        self.call("tag.set", "PATCH", f"{V2}/traces/tr-{a}/tags", {"key": "color", "value": "red"})
        self.call("tag.after_set", "GET", f"{V3}/traces/tr-{a}")
        self.call("tag.delete", "DELETE", f"{V2}/traces/tr-{a}/tags", {"key": "color"})
        self.call("tag.delete_missing", "DELETE", f"{V2}/traces/tr-{a}/tags", {"key": "color"})
        self.call("tag.set_protected", "PATCH", f"{V2}/traces/tr-{a}/tags",
                  {"key": "mlflow.trace.spansLocation", "value": "x"})
        self.call("tag.set_missing_trace", "PATCH", f"{V2}/traces/tr-{'f' * 32}/tags", {"key": "k", "value": "v"})
        self.call("tag.set_no_key", "PATCH", f"{V2}/traces/tr-{a}/tags", {"value": "v"})

    def _assessment_steps(self) -> None:
        a = self.a
        base = f"{V3}/traces/tr-{a}/assessments"
        created = self.call("assessment.feedback", "POST", base, {"assessment": {
            "assessment_name": "quality", "trace_id": f"tr-{a}", "source": {"source_type": "HUMAN", "source_id": "bob"},
            "create_time": "2025-10-09T09:00:00Z", "last_update_time": "2025-10-09T09:00:00Z",
            "feedback": {"value": 0.8}, "rationale": "fine", "valid": True}})
        expected = self.call("assessment.expectation", "POST", base, {"assessment": {
            "assessment_name": "expected", "trace_id": f"tr-{a}",
            "source": {"source_type": "HUMAN", "source_id": "default"},
            "create_time": "2025-10-09T09:00:01Z", "last_update_time": "2025-10-09T09:00:01Z",
            "expectation": {"serialized_value": {"serialization_format": "JSON_FORMAT", "value": '{"a": 1}'}}}})
        fid = (created.get("assessment") or {}).get("assessment_id", "none")
        eid = (expected.get("assessment") or {}).get("assessment_id", "none")
        self.call("assessment.get", "GET", f"{base}/{fid}")
        self.call("assessment.update", "PATCH", f"{base}/{fid}", {"assessment": {
            "assessment_id": fid, "assessment_name": "quality", "trace_id": f"tr-{a}", "feedback": {"value": 0.9}},
            "update_mask": "assessmentName,feedback"})
        self.call("assessment.in_trace_info", "GET", f"{V3}/traces/tr-{a}")
        self._search("assessment.search_equal", "feedback.quality = '0.9'")
        self._search("assessment.search_greater", "feedback.quality > 0.5")
        self._search("assessment.search_not_greater", "feedback.quality > 0.95")
        self._search("assessment.search_exists", "expectation.expected IS NOT NULL")
        self._search("assessment.search_missing", "feedback.quality IS NULL")
        self._search("assessment.search_rlike", "tags.team RLIKE '^sea'")
        self.call("assessment.delete", "DELETE", f"{base}/{eid}")
        self._search("assessment.search_deleted", "expectation.expected IS NOT NULL")
        self.call("assessment.get_deleted", "GET", f"{base}/{eid}")
        self.call("assessment.on_missing_trace", "POST", f"{V3}/traces/tr-{'f' * 32}/assessments", {"assessment": {
            "assessment_name": "q", "trace_id": f"tr-{'f' * 32}", "source": {"source_type": "HUMAN", "source_id": "b"},
            "feedback": {"value": 1}}})

    def _delete_steps(self) -> None:
        exp = self.experiment_id
        self.call("delete.neither", "POST", f"{V2}/traces/delete-traces", {"experiment_id": exp})
        self.call("delete.both", "POST", f"{V2}/traces/delete-traces",
                  {"experiment_id": exp, "request_ids": [f"tr-{self.b}"], "max_timestamp_millis": 1})
        self.call("delete.by_id", "POST", f"{V2}/traces/delete-traces",
                  {"experiment_id": exp, "request_ids": [f"tr-{self.b}", f"tr-{'f' * 32}"]})
        self.call("delete.info_gone", "GET", f"{V3}/traces/tr-{self.b}")
        self.call("delete.by_age", "POST", f"{V2}/traces/delete-traces",
                  {"experiment_id": exp, "max_timestamp_millis": T0 + 1000, "max_traces": 1})
        self._search("delete.remaining")


# --- comparison --------------------------------------------------------------------------------

_ASSESSMENT_ID = re.compile(r"^a-[0-9a-f]{32}$")


_ID_KEYS = {"experiment_id", "request_id", "trace_id"}


def normalise(value: Any, tokens: dict[str, str], key: str = "") -> Any:
    """Ids whole only under id keys (a short experiment id like "2" is also an ordinary value)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in ("create_time", "last_update_time") and isinstance(v, str):
                v = "<time>"
            elif k == "assessment_id":
                v = "<assessment_id>"
            out[k] = normalise(v, tokens, k)
        return out
    if isinstance(value, list):
        return [normalise(v, tokens, key) for v in value]
    if isinstance(value, str):
        if key in _ID_KEYS and value in tokens:
            return tokens[value]
        for token, placeholder in tokens.items():
            if placeholder == "<experiment_id>":
                value = value.replace(f"mlflow-artifacts:/{token}/", f"mlflow-artifacts:/{placeholder}/")
            elif len(token) >= 8:
                value = value.replace(token, placeholder)
        value = re.sub(r"a-[0-9a-f]{32}", "<assessment_id>", value)
        value = _SET_REPR.sub(_sorted_set_repr, value)
    return value


def run_sequence(base_url: str, u: str) -> tuple[list[Result], dict[str, str]]:
    seq = Sequence(base_url, u)
    return seq.run(), seq.tokens


def compare(ref: tuple[list[Result], dict[str, str]], ours: tuple[list[Result], dict[str, str]],
            skip: Collection[str] = ()) -> list[str]:
    out: list[str] = []
    (ref_results, ref_exp), (our_results, our_exp) = ref, ours
    by_name = {r.name: r for r in our_results}
    for r in ref_results:
        if r.name in skip:
            continue
        o = by_name.get(r.name)
        if o is None:
            out.append(f"{r.name}: step missing from our results")
            continue
        if r.status != o.status:
            out.append(f"{r.name}: status {o.status}, reference has {r.status} "
                       f"(ours: {json.dumps(o.body)[:300]}, reference: {json.dumps(r.body)[:300]})")
            continue
        if r.status >= 400:
            ref_body, our_body = _error_fields(r.body), _error_fields(o.body)
        else:
            ref_body, our_body = r.body, o.body
        for line in _diff(normalise(ref_body, ref_exp), normalise(our_body, our_exp), ""):
            out.append(f"{r.name}: {line}")
    return out


if __name__ == "__main__":
    results, _ = run_sequence(sys.argv[1], uuid.uuid4().hex[:8])
    for result in results:
        print(f"### {result.name} -> {result.status}\n{json.dumps(result.body, indent=1)[:3000]}\n")
