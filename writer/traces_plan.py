"""Planning rules for trace events. Pure: no I/O (the store loaded the trace documents).

A batch's spans are grouped per trace: each trace gets one update of its document and one update
per span bucket it fills, however many spans and events the batch holds.

* Duplicates are ignored: a span id already stored (the ``ids`` of the trace's buckets, which the
  store loads) or already seen in the batch is dropped. The trace document is written before the
  buckets, so a crash in between leaves spans unstored and unlisted: the replay stores them (the
  document's updates are idempotent). Buckets store spans under their id (``s.<span id>``), and a
  read keeps one copy per span id (`span_entries`), whatever a replay did.
* Any arrival order: spans before or after start_trace, children before their root. Until
  start_trace arrives (``finalized``), the trace info is what the spans imply (earliest start,
  latest end, the root span's status and previews); after it, start_trace's fields stand and
  spans only add to the span bookkeeping.
* Documents stay small: a bucket closes at `BUCKET_BYTES` of span content, a batch opens a new one
  rather than rewrite a stored bucket past `SEAL_BYTES`, and a huge span is stored in parts of
  `PART_BYTES` (`common/traces.py`).

Every write is an upsert of named fields (never a replacement), so links to runs, which arrive
through the run's partition, are never overwritten by a trace's own writes.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from common import events as ev
from common import traces as tr
from common.errors import MlflowError
from common.keys import encode_key
from common.mongo import TRACE_SPANS, TRACES
from writer.writes import Write


@dataclass
class TraceState:
    """What the store loaded for a batch's trace events."""

    traces: dict[str, dict[str, Any]] = field(default_factory=dict)  # trace id -> document
    span_ids: dict[str, set[str]] = field(default_factory=dict)  # trace id -> ids its buckets hold


@dataclass
class _TraceWork:
    doc: dict[str, Any]
    ids: set[str]
    sets: dict[str, Any] = field(default_factory=dict)
    unsets: set[str] = field(default_factory=set)
    add_to_set: dict[str, list[str]] = field(default_factory=dict)
    buckets: dict[int, dict[str, str]] = field(default_factory=dict)  # seq -> field -> content
    created: bool = False  # new in this batch: its maps are written whole, in insertion order
    placed: bool = False  # spans placed in this batch already (the open bucket was judged)

    def set(self, path: str, value: Any) -> None:
        self.sets[path] = value
        self.unsets.discard(path)

    def unset(self, path: str) -> None:
        self.sets.pop(path, None)
        self.unsets.add(path)

    def add(self, path: str, value: str) -> None:
        values = self.add_to_set.setdefault(path, [])
        if value not in values:
            values.append(value)


def _new_trace(trace_id: str, experiment_id: str, artifact_location: str, request_time: int) -> dict[str, Any]:
    return {
        "_id": trace_id, "experiment_id": experiment_id, "request_time": request_time, "state": "IN_PROGRESS",
        "tags": {encode_key(tr.ARTIFACT_LOCATION_TAG): artifact_location,
                 encode_key(tr.SPANS_LOCATION_TAG): tr.SPANS_LOCATION_TRACKING_STORE},
        "metadata": {}, "assessments": {}, "finalized": False,
        "sp": {"names": [], "types": [], "statuses": [], "seq": 0, "bytes": 0, "n": 0},
    }


class TracePlanner:
    def __init__(self, state: TraceState):
        self.state = state
        self.work: dict[str, _TraceWork] = {}
        self.event_writes: list[Write] = []  # deletes and links: alone, in event order
        self.spans_written = 0
        self.spans_dropped = 0

    # --- lookups ---------------------------------------------------------------------------

    def _existing(self, trace_id: str) -> _TraceWork | None:
        work = self.work.get(trace_id)
        if work is None:
            doc = self.state.traces.get(trace_id)
            if doc is None:
                return None
            work = _TraceWork(doc=copy.deepcopy(doc), ids=set(self.state.span_ids.get(trace_id, ())))
            self.work[trace_id] = work
        return work

    def _trace(self, trace_id: str) -> _TraceWork:
        work = self._existing(trace_id)
        if work is None:
            raise tr.trace_not_found(trace_id)
        return work

    def _create(self, trace_id: str, experiment_id: str, artifact_location: str, request_time: int,
                *, system_tags: bool = True) -> _TraceWork:
        doc = _new_trace(trace_id, experiment_id, artifact_location, request_time)
        if not system_tags:  # the event names every tag itself
            doc["tags"] = {}
        work = _TraceWork(doc=doc, ids=set(), created=True)
        for path in ("experiment_id", "request_time", "state", "finalized"):
            work.set(path, doc[path])
        for key, value in doc["tags"].items():
            work.set(f"tags.{key}", value)
        for key in ("seq", "bytes", "n"):
            work.set(f"sp.{key}", 0)
        self.work[trace_id] = work
        return work

    def _assign(self, work: _TraceWork, path: str, value: Any) -> None:
        head, _, tail = path.partition(".")
        if tail:
            work.doc.setdefault(head, {})[tail] = value
        else:
            work.doc[head] = value
        work.set(path, value)

    # --- events ----------------------------------------------------------------------------

    def apply(self, e: ev.TraceEvent, event_id: str) -> None:
        getattr(self, "_" + type(e).__name__)(e, event_id)

    def _SpansLogged(self, e: ev.SpansLogged, _: str) -> None:
        work = self._existing(e.trace_id)
        if work is None:
            start = min((s.start_ns for s in e.spans), default=0) // 1_000_000
            work = self._create(e.trace_id, e.experiment_id, e.artifact_location, start)
        sp = work.doc["sp"]
        location_key = encode_key(tr.SPANS_LOCATION_TAG)
        if e.spans and (work.doc.get("tags") or {}).get(location_key) != tr.SPANS_LOCATION_TRACKING_STORE:
            self._assign(work, f"tags.{location_key}", tr.SPANS_LOCATION_TRACKING_STORE)
        for span in e.spans:
            if span.span_id in work.ids:
                self.spans_dropped += 1
                continue
            work.ids.add(span.span_id)
            self.spans_written += 1
            self._place(work, span)
            for path, value in (("sp.names", span.name), ("sp.types", span.span_type), ("sp.statuses", span.status)):
                if value is not None and value not in sp.setdefault(path[3:], []):
                    sp[path[3:]].append(value)
                    work.add(path, value)
            start_ms, end_ms = span.start_ns // 1_000_000, span.end_ns // 1_000_000 if span.end_ns else None
            if sp.get("start_ms") is None or start_ms < sp["start_ms"]:
                self._assign(work, "sp.start_ms", start_ms)
            if end_ms is not None and (sp.get("end_ms") is None or end_ms > sp["end_ms"]):
                self._assign(work, "sp.end_ms", end_ms)
            if span.parent_id is None:
                self._root(work, span)
        self._assign(work, "sp.n", len(work.ids))
        if not work.doc.get("finalized"):
            self._infer_info(work)

    def _place(self, work: _TraceWork, span: ev.SpanRecord) -> None:
        sp = work.doc["sp"]
        if not work.placed:
            work.placed = True
            if sp.get("bytes", 0) >= tr.SEAL_BYTES:  # a stored bucket this full: start a new one
                self._assign(work, "sp.seq", sp.get("seq", 0) + 1)
                self._assign(work, "sp.bytes", 0)
        pieces = tr.split_content(span.content)
        for k, piece in enumerate(pieces):
            size = len(piece.encode()) + 64
            if sp.get("bytes", 0) and sp["bytes"] + size > tr.BUCKET_BYTES:
                self._assign(work, "sp.seq", sp.get("seq", 0) + 1)
                self._assign(work, "sp.bytes", 0)
            key = span.span_id if len(pieces) == 1 else f"{span.span_id}~{k}"
            work.buckets.setdefault(sp.get("seq", 0), {})[key] = piece
            self._assign(work, "sp.bytes", sp.get("bytes", 0) + size)

    def _root(self, work: _TraceWork, span: ev.SpanRecord) -> None:
        root = {"status": span.status, "end_ms": span.end_ns // 1_000_000 if span.end_ns else None}
        self._assign(work, "sp.root", root)
        if work.doc.get("finalized"):
            return
        if span.inputs is not None and work.doc.get("request_preview") is None:
            self._assign(work, "request_preview", span.inputs)
        if span.outputs is not None and work.doc.get("response_preview") is None:
            self._assign(work, "response_preview", span.outputs)
        for tag in span.trace_tags:
            self._assign(work, f"tags.{encode_key(tag.key)}", tag.value)

    def _infer_info(self, work: _TraceWork) -> None:
        """The trace info the spans imply, until start_trace says otherwise."""
        sp = work.doc["sp"]
        if sp.get("start_ms") is not None and sp["start_ms"] != work.doc.get("request_time"):
            self._assign(work, "request_time", sp["start_ms"])
        root = sp.get("root")
        state = tr.state_from_root_status(root["status"]) if root else "IN_PROGRESS"
        if state != work.doc.get("state"):
            self._assign(work, "state", state)
        if sp.get("end_ms") is not None and sp.get("start_ms") is not None:
            duration = sp["end_ms"] - sp["start_ms"]
            if duration != work.doc.get("execution_duration"):
                self._assign(work, "execution_duration", duration)

    def _TraceStarted(self, e: ev.TraceStarted, _: str) -> None:
        work = self._existing(e.trace_id) or self._create(e.trace_id, e.experiment_id, e.artifact_location,
                                                          e.request_time, system_tags=False)
        for path, value in (("experiment_id", e.experiment_id), ("request_time", e.request_time),
                            ("state", e.state), ("finalized", True)):
            self._assign(work, path, value)
        for path, value in (("execution_duration", e.execution_duration), ("client_request_id", e.client_request_id),
                            ("request_preview", e.request_preview), ("response_preview", e.response_preview)):
            if value is not None:
                self._assign(work, path, value)
        for tag in e.tags:
            self._assign(work, f"tags.{encode_key(tag.key)}", tag.value)
        metadata = {item.key: item.value for item in e.metadata}
        if e.mark_finalized:
            metadata[tr.INFO_FINALIZED_METADATA] = "true"
        for key in sorted(metadata):  # the reference writes metadata rows in key order
            self._assign(work, f"metadata.{encode_key(key)}", metadata[key])
        for text in e.assessments:
            assessment = json.loads(text)
            self._assign(work, f"assessments.{assessment['assessment_id']}", assessment)
        if e.assessments:
            self._index_assessments(work)

    def _index_assessments(self, work: _TraceWork) -> None:
        self._assign(work, "as", tr.assessment_index(work.doc.get("assessments") or {}))

    def _TraceTagSet(self, e: ev.TraceTagSet, _: str) -> None:
        self._assign(self._trace(e.trace_id), f"tags.{encode_key(e.key)}", e.value)

    def _TraceTagDeleted(self, e: ev.TraceTagDeleted, _: str) -> None:
        work = self._trace(e.trace_id)
        enc = encode_key(e.key)
        if enc not in (work.doc.get("tags") or {}):
            raise MlflowError.not_found(f"No trace tag with key '{e.key}'")
        del work.doc["tags"][enc]
        work.unset(f"tags.{enc}")

    def _TracePromptsLinked(self, e: ev.TracePromptsLinked, _: str) -> None:
        work = self._trace(e.trace_id)
        for prompt in e.prompts:
            if prompt not in work.doc.setdefault("prompts", []):
                work.doc["prompts"].append(prompt)
                work.add("prompts", prompt)

    def _AssessmentSet(self, e: ev.AssessmentSet, _: str) -> None:
        work = self._trace(e.trace_id)
        self._assign(work, f"assessments.{e.assessment_id}", json.loads(e.assessment))
        self._index_assessments(work)

    def _AssessmentDeleted(self, e: ev.AssessmentDeleted, _: str) -> None:
        work = self._trace(e.trace_id)
        if e.assessment_id in (work.doc.get("assessments") or {}):
            del work.doc["assessments"][e.assessment_id]
            work.unset(f"assessments.{e.assessment_id}")
            self._index_assessments(work)

    def _TracesDeleted(self, e: ev.TracesDeleted, event_id: str) -> None:
        for trace_id in e.trace_ids:
            self.work.pop(trace_id, None)
            self.state.traces.pop(trace_id, None)
        # Spans first: a crash in between leaves the trace, and the replay deletes both.
        self.event_writes.append(Write(TRACE_SPANS, {"trace_id": {"$in": e.trace_ids}}, delete=True, many=True,
                                       event_id=event_id))
        self.event_writes.append(Write(TRACES, {"_id": {"$in": e.trace_ids}}, delete=True, many=True,
                                       event_id=event_id))

    def _TracesLinkedToRun(self, e: ev.TracesLinkedToRun, event_id: str) -> None:
        self.event_writes.append(Write(TRACES, {"_id": {"$in": e.trace_ids}}, many=True, event_id=event_id,
                                       update={"$addToSet": {"runs": e.run_id}}))

    # --- output ----------------------------------------------------------------------------

    def writes(self) -> list[Write]:
        """Trace documents first, then the buckets (see the module docstring: replays)."""
        buckets: list[Write] = []
        docs: list[Write] = []
        for trace_id, work in self.work.items():
            for seq, spans in work.buckets.items():
                ids = list(dict.fromkeys(k.partition("~")[0] for k in spans))
                buckets.append(Write(TRACE_SPANS, {"_id": f"{trace_id}:{seq}", "trace_id": trace_id}, upsert=True,
                                     update={"$set": {"seq": seq, **{f"s.{k}": c for k, c in spans.items()}},
                                             "$addToSet": {"ids": {"$each": ids}}}))
            sets, unsets = work.sets, work.unsets
            if work.created:
                # MongoDB applies `$set` paths in lexicographic order: a new document's tags and
                # metadata are set as whole maps, so they keep the order the client gave them.
                sets = {k: val for k, val in work.doc.items() if k not in ("_id", "sp")}
                sets.update({p: val for p, val in work.sets.items() if p.startswith("sp.")})
                unsets = {p for p in work.unsets if p.startswith("sp.")}
            update: dict[str, Any] = {}
            if sets:
                update["$set"] = sets
            if unsets:
                update["$unset"] = {p: "" for p in unsets}
            add = dict(work.add_to_set)
            if add:
                update["$addToSet"] = {p: {"$each": values} for p, values in add.items()}
            if update:
                docs.append(Write(TRACES, {"_id": trace_id}, update=update, upsert=True))
        return [*self.event_writes, *docs, *buckets]
