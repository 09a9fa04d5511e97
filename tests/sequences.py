"""REST request sequences run side by side: the generalised form of the registry's machinery.

tests/registry/sequence.py runs JSON requests only (GET parameters, JSON bodies) and compares JSON
bodies. The web UI's routes also need raw request bodies (artifact uploads), query parameters on
POST, request headers (the UI sends `Content-Type: application/json` on every request), non-JSON
responses (artifact files, HTML error pages, plain text) and a few response headers
(`Content-Type`, `Content-Disposition` of downloads). This module is that machinery, with the
normalisation rules passed in by the sequence instead of fixed module-wide; the leaf helpers
(set-repr sorting, field diff, clipping) come from the registry module unchanged.

A sequence is a `Sequence`: steps, what each step's response captures into placeholders,
placeholders derived from captured values, and the values of one execution that a comparison
must not see (`tokens`). `run_sequence` sends it, `compare` lists the differences between two
executions, `format_transcript` writes one out readably; `reference_server` runs a stock
`mlflow server` to send it to.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence as Seq
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.registry.sequence import _SET_REPR, _clip_long_strings, _diff, _error_fields, _short, _sorted_set_repr
from tests.services import free_port

Query = Mapping[str, Any] | Seq[tuple[str, Any]]


@dataclass(frozen=True)
class Step:
    """One request. `query` goes into the URL (a list value repeats the parameter); `json` is
    sent as a JSON body, `data` as a raw body (str or bytes) instead. `headers` are added to the
    sequence's default headers (a None value removes a default one). `check_headers` names response
    headers that `compare` compares for this step (lower case)."""
    name: str
    method: str
    path: str
    query: Query | None = None
    json: Any = None
    data: str | bytes | None = None
    headers: Mapping[str, str | None] | None = None
    check_headers: tuple[str, ...] = ()


@dataclass
class Result:
    name: str
    method: str
    path: str
    query: list[tuple[str, str]]
    request: Any  # the JSON body, or the raw body as text, or None
    request_headers: dict[str, str]  # what the step added to or removed from the defaults
    status: int
    body: Any  # parsed JSON, the text when not JSON, a digest line when not UTF-8
    headers: dict[str, str]  # response headers, names in lower case
    check_headers: tuple[str, ...] = ()
    tokens: dict[str, str] = field(default_factory=dict, repr=False)


@dataclass
class Normaliser:
    """What two servers may legitimately disagree on, as data.

    `timestamp_keys`: values under these keys become `<timestamp>`. `key_tokens`: a non-empty
    string under the key becomes the token. `id_keys`: under these keys (a string or a list of
    strings) a value that is one of this execution's tokens is replaced whole (short experiment ids
    must not be replaced inside other strings). `sorted_lists`: lists compared as sets; an entry is
    a key (`"tags"`) or a (parent key, key) pair (`("data", "metrics")`: the run's latest metrics,
    not a history). `text_subs`: (regex, replacement) applied to every string (values that differ
    on every execution but are not captured, e.g. a creation time printed inside a tag value)."""
    timestamp_keys: Collection[str] = ()
    key_tokens: Mapping[str, str] = field(default_factory=dict)
    id_keys: Collection[str] = ()
    sorted_lists: Collection[str | tuple[str, str]] = ()
    text_subs: Seq[tuple[re.Pattern[str], str]] = ()

    def __call__(self, body: Any, tokens: Mapping[str, str] | None = None) -> Any:
        return self._norm(body, tokens or {}, None, None)

    def _norm(self, body: Any, tokens: Mapping[str, str], key: str | None, parent: str | None) -> Any:
        if key in self.timestamp_keys and isinstance(body, int | str) and not isinstance(body, bool):
            return "<timestamp>"
        if key in self.key_tokens and isinstance(body, str) and body:
            return self.key_tokens[key]
        if key in self.id_keys and isinstance(body, str) and body in tokens:
            return tokens[body]
        if isinstance(body, dict):
            return {k: self._norm(v, tokens, k, key) for k, v in body.items()}
        if isinstance(body, list):
            if key in self.id_keys:
                items = [tokens.get(v, v) if isinstance(v, str) else v for v in body]
            else:
                items = [self._norm(v, tokens, None, key) for v in body]
            if key in self.sorted_lists or (parent, key) in self.sorted_lists:
                items.sort(key=lambda item: json.dumps(item, sort_keys=True))
            return items
        if isinstance(body, float) and math.isnan(body):
            # A bare NaN token in the JSON text (Python's json reads it; a browser's JSON.parse
            # does not); "NaN" as a string stays a string.
            return "<bare NaN>"
        if isinstance(body, str):
            return self.sub_strings(body, tokens)
        return body

    def sub_strings(self, text: str, tokens: Mapping[str, str]) -> str:
        # Short values (experiment ids like "1") are replaced only under `id_keys`: elsewhere the
        # same text is a version number or a parameter value.
        if text in tokens and len(text) >= 8:
            return tokens[text]
        text = _SET_REPR.sub(_sorted_set_repr, text)
        for pattern, replacement in self.text_subs:
            text = pattern.sub(replacement, text)
        # Longest first, so an id is not half-replaced by a shorter value it contains.
        for value in sorted(tokens, key=len, reverse=True):
            if len(value) >= 8:
                text = text.replace(value, tokens[value])
        return text


@dataclass
class Sequence:
    steps: list[Step]
    # step name -> {placeholder: path into that step's JSON response}
    captures: Mapping[str, Mapping[str, tuple[str, ...]]]
    normalise: Normaliser
    # ctx -> this execution's values and their stand-ins (see Normaliser)
    tokens: Callable[[Mapping[str, str]], dict[str, str]]
    # ctx -> placeholders computed from captured ones (e.g. an artifact path from an artifact URI)
    derive: Callable[[Mapping[str, str]], dict[str, str]] = lambda ctx: {}
    derived_placeholders: Collection[str] = ()
    default_headers: Mapping[str, str] = field(default_factory=dict)
    # step name -> (body, tokens) -> body, applied to a successful response before `normalise`
    # when comparing: for what only that step's contract fixes (e.g. an order that follows ids
    # which differ between the two servers).
    prepare: Mapping[str, Callable[[Any, Mapping[str, str]], Any]] = field(default_factory=dict)

    @property
    def placeholders(self) -> set[str]:
        return {"u"} | {p for caps in self.captures.values() for p in caps} | set(self.derived_placeholders)


_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def fill(value: Any, ctx: Mapping[str, str], known: Collection[str]) -> Any:
    """Replace {placeholder}s in every string of `value` (dict keys too). Only `known` names are
    touched; one whose source step failed becomes "MISSING-<name>" and the request still goes out
    (the diff shows why)."""
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            key = m.group(1)
            if key not in known:
                return m.group(0)
            return ctx.get(key, f"MISSING-{key}")
        return _PLACEHOLDER.sub(sub, value)
    if isinstance(value, list | tuple):
        return type(value)(fill(v, ctx, known) for v in value)
    if isinstance(value, dict):
        return {fill(k, ctx, known): fill(v, ctx, known) for k, v in value.items()}
    return value


def _dig(body: Any, path: tuple[str, ...]) -> str | None:
    for key in path:
        if isinstance(body, list) and isinstance(key, int) and -len(body) <= key < len(body):
            body = body[key]
            continue
        if not isinstance(body, dict) or key not in body:
            return None
        body = body[key]
    return body if isinstance(body, str) else None


def _query_items(query: Query | None) -> list[tuple[str, str]]:
    if not query:
        return []
    items = query.items() if isinstance(query, Mapping) else query
    out = []
    for k, v in items:
        for one in v if isinstance(v, list | tuple) else [v]:
            out.append((k, one if isinstance(one, str) else json.dumps(one)))
    return out


def _decode(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(raw)} bytes, not UTF-8, sha256 {hashlib.sha256(raw).hexdigest()[:16]}>"
    try:
        return json.loads(text)
    except ValueError:
        return text


def _send(session: requests.Session, base_url: str, seq: Sequence, step: Step, ctx: Mapping[str, str]) -> Result:
    known = seq.placeholders
    path = fill(step.path, ctx, known)
    query = _query_items(fill(step.query, ctx, known))
    body = fill(step.json, ctx, known)
    data = fill(step.data, ctx, known) if isinstance(step.data, str) else step.data
    headers = dict(seq.default_headers)
    for k, v in (step.headers or {}).items():
        if v is None:
            headers.pop(k, None)
        else:
            headers[k] = v
    url = base_url.rstrip("/") + path
    if query:
        url += "?" + urllib.parse.urlencode(query)
    if data is not None:
        payload = data.encode() if isinstance(data, str) else data
        request_repr: Any = data if isinstance(data, str) else _decode(data)
    elif body is not None:
        payload = json.dumps(body).encode()
        request_repr = body
    else:
        payload = None
        request_repr = None
    resp = session.request(step.method, url, data=payload, headers=headers, timeout=60, allow_redirects=False)
    added = {k: v for k, v in (step.headers or {}).items() if v is not None}
    added.update({k: "(not sent)" for k, v in (step.headers or {}).items() if v is None})
    return Result(step.name, step.method, path, query, request_repr, added, resp.status_code, _decode(resp.content),
                  {k.lower(): v for k, v in resp.headers.items()}, step.check_headers)


def run_sequence(base_url: str, seq: Sequence, u: str | None = None) -> list[Result]:
    """Send every step in order; later steps see values captured from earlier responses."""
    ctx: dict[str, str] = {"u": u or uuid.uuid4().hex[:10]}
    tokens: dict[str, str] = {}
    results = []
    with requests.Session() as session:
        for step in seq.steps:
            result = _send(session, base_url, seq, step, ctx)
            for placeholder, path in seq.captures.get(step.name, {}).items():
                value = _dig(result.body, path)
                if value is not None:
                    ctx[placeholder] = value
            ctx.update(seq.derive(ctx))
            tokens.update(seq.tokens(ctx))
            result.tokens = tokens  # shared: ids captured later still normalise earlier results
            results.append(result)
    return results


def compare(seq: Sequence, ref: list[Result], ours: list[Result], skip: Collection[str] = ()) -> list[str]:
    """Human-readable differences, one line each, prefixed by the step name. Status codes always
    count; error responses compare only error_code and message (an HTML or empty error body has
    neither, so a JSON error where the reference has none shows); successful ones compare the whole
    normalised body (JSON or text) and the step's `check_headers`."""
    norm = seq.normalise
    out: list[str] = []
    ours_by_name = {r.name: r for r in ours}
    for r in ref:
        if r.name in skip:
            continue
        o = ours_by_name.get(r.name)
        if o is None:
            out.append(f"{r.name}: step missing from our results")
            continue
        if r.status != o.status:
            out.append(f"{r.name}: status {o.status}, reference has {r.status}"
                       f" (ours: {_short(norm(o.body, o.tokens))})")
            continue
        if r.status >= 400:
            ref_body, our_body = _error_fields(r.body), _error_fields(o.body)
        elif r.name in seq.prepare:
            ref_body, our_body = seq.prepare[r.name](r.body, r.tokens), seq.prepare[r.name](o.body, o.tokens)
        else:
            ref_body, our_body = r.body, o.body
        for line in _diff(norm(ref_body, r.tokens), norm(our_body, o.tokens), ""):
            out.append(f"{r.name}: {line}")
        for name in r.check_headers:
            ref_h, our_h = r.headers.get(name), o.headers.get(name)
            if ref_h is not None:
                ref_h = norm.sub_strings(ref_h, r.tokens)
            if our_h is not None:
                our_h = norm.sub_strings(our_h, o.tokens)
            if ref_h != our_h:
                out.append(f"{r.name}: header {name}: {our_h!r}, reference has {ref_h!r}")
    return out


def _pretty(value: Any, indent: int = 0, width: int = 130) -> str:
    """JSON, indented, with every object or list that fits in `width` on one line."""
    flat = json.dumps(value)
    if not isinstance(value, dict | list) or len(flat) + indent <= width or not value:
        return flat
    pad = " " * (indent + 2)
    if isinstance(value, dict):
        items = [f"{pad}{json.dumps(k)}: {_pretty(v, indent + 2, width)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    items = [pad + _pretty(v, indent + 2, width) for v in value]
    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"


def format_transcript(results: list[Result], clip: int = 300) -> str:
    """One block per step: the request as sent and the response as received (long strings clipped)."""
    blocks = []
    if results:
        legend = "\n".join(f"  {tok} = {val}" for val, tok in results[-1].tokens.items())
        blocks.append(f"Values of this execution (and their tokens after normalisation):\n{legend}\n")
    for i, r in enumerate(results, 1):
        target = r.path + ("?" + urllib.parse.urlencode(r.query) if r.query else "")
        target = target if len(target) <= 600 else target[:560] + f"...<{len(target)} chars in all>"
        lines = [f"=== {i:03d} {r.name}", f"{r.method} {target}"]
        for k, v in r.request_headers.items():
            lines.append(f"{k}: {v}")
        if r.request is not None:
            text = r.request if isinstance(r.request, str) else _pretty(_clip_long_strings(r.request, clip))
            lines.append("body: " + (text if len(text) <= 3000 else text[:3000] + f"...<{len(text)} chars in all>"))
        shown = ["content-type", *(h for h in r.check_headers if h != "content-type")]
        head = "; ".join(f"{h}: {r.headers[h]}" for h in shown if h in r.headers)
        lines.append(f"-> {r.status}" + (f"  [{head}]" if head else ""))
        if isinstance(r.body, str):
            body = r.body if len(r.body) <= 1500 else r.body[:1500] + f"...<{len(r.body)} chars in all>"
        else:
            body = _pretty(_clip_long_strings(r.body, clip))
        lines.append(body if body != "" else "(empty body)")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


# ---- a reference server ------------------------------------------------------------------------
# (the registry's side-by-side test starts its own; these are the same steps with the command line
# and environment left to the caller)

REFERENCE_START_TIMEOUT = 120.0


def _tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else "(no log)"


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"reference mlflow server exited with {proc.returncode}:\n{_tail(log)}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url + "/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        time.sleep(0.5)
    raise RuntimeError(f"reference mlflow server not healthy after {timeout}s:\n{_tail(log)}")


def _stop(proc: subprocess.Popen) -> None:
    """Stop the CLI and everything it spawned (uvicorn and its worker): they share the process
    group the CLI was started in, and only that group is signalled."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # whatever of that group ignored SIGTERM
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


@contextlib.contextmanager
def reference_server(workdir: Path, args: Seq[str] = (), env: Mapping[str, str] | None = None,
                     timeout: float = REFERENCE_START_TIMEOUT) -> Iterator[str]:
    """A stock `mlflow server` (the installed mlflow) on SQLite in `workdir`, one worker, with
    `args` added to its command line and `env` to its environment; yields its URL. Its log stays in
    workdir/server.log."""
    (workdir / "tmp").mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "server",
           "--backend-store-uri", f"sqlite:///{workdir}/mlflow.db",
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1", *args]
    full_env = {
        **os.environ,
        # MLflow's db-init lock file goes to TMPDIR: keep it in our directory.
        "TMPDIR": str(workdir / "tmp"),
        # No background jobs: no huey consumers, no storage directory left behind in /dev/shm.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        **(env or {}),
    }
    log = workdir / "server.log"
    with open(log, "ab") as out:
        # Own session, so _stop can signal the CLI and its uvicorn children as one group.
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=full_env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log, timeout)
        yield url
    finally:
        _stop(proc)
