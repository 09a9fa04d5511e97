"""The Genesis-Flow being migrated to, over HTTP: the admin import endpoints, the ordinary write
endpoints (log-batch in the enqueued ack mode) and the artifact proxy. Thread-safe: one
`requests` session per thread. Overload (429) and outages (5xx) are retried with backoff, as the
stock client does."""

from __future__ import annotations

import hashlib
import os
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import requests

ACK_HEADER = "X-Genesis-Flow-Ack"  # ingest/bus.py; the tool does not import a tier
IMPORT = "/api/2.0/genesis-flow/import"
MLFLOW = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
BLOCK = 1024 * 1024
RETRY_STATUSES = (429, 500, 502, 503, 504)
_json = msgspec.json.Encoder()


class TargetError(Exception):
    """The target refused a request; `code` is its MLflow error code."""

    def __init__(self, message: str, code: str = "", status: int = 0):
        super().__init__(message)
        self.code = code
        self.status = status


class Target:
    def __init__(self, uri: str, *, retries: int = 8, timeout_s: float = 300.0):
        self.uri = uri.rstrip("/")
        self.retries = retries
        self.timeout_s = timeout_s
        self._local = threading.local()

    @property
    def session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
            _authenticate(s)
        return s

    def request(self, method: str, path: str, *, json: Any = None, params: Any = None,
                headers: dict[str, str] | None = None, data: Any = None, stream: bool = False,
                ok_404: bool = False, retries: int | None = None) -> requests.Response:
        delay = 0.5
        retries = self.retries if retries is None else retries
        for attempt in range(retries + 1):
            if callable(data):
                body = data()  # a fresh stream per attempt
            else:
                body = data
            try:
                resp = self.session.request(method, self.uri + path, json=json, params=params, headers=headers,
                                            data=body, stream=stream, timeout=self.timeout_s)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt == retries:
                    raise TargetError(f"{method} {path}: {exc}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 10)
                continue
            if resp.status_code in RETRY_STATUSES and attempt < retries:
                wait = float(resp.headers.get("Retry-After") or delay)
                resp.close()
                time.sleep(min(wait, 30))
                delay = min(delay * 2, 10)
                continue
            if resp.status_code == 404 and ok_404:
                return resp
            if resp.status_code >= 400:
                try:
                    err = resp.json()
                except ValueError:
                    err = {"message": resp.text[:300]}
                raise TargetError(f"{method} {path}: {resp.status_code} {err.get('error_code', '')} "
                                  f"{err.get('message', '')}".strip(), err.get("error_code", ""), resp.status_code)
            return resp
        raise AssertionError("unreachable")

    def post(self, path: str, body: dict[str, Any], *, ack: str | None = None) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if ack:
            headers[ACK_HEADER] = ack
        resp = self.request("POST", path, data=_json.encode(body), headers=headers)  # msgspec: the hot path
        return resp.json() if resp.content else {}

    def check(self) -> None:
        """Fail fast, with a clear message, on a target that is down or is not Genesis-Flow."""
        try:
            resp = self.request("POST", f"{IMPORT}/run-state", json={"run_id": "0" * 32}, ok_404=True, retries=2)
        except TargetError as exc:
            raise TargetError(f"the target {self.uri} does not answer: {exc}") from exc
        if resp.status_code == 404:
            raise TargetError(f"{self.uri} has no Genesis-Flow import endpoints ({IMPORT}/…): is it Genesis-Flow?")

    # --- imports -------------------------------------------------------------------------------

    def import_experiment(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.post(f"{IMPORT}/experiment", body)

    def import_run(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.post(f"{IMPORT}/run", body)

    def run_state(self, run_id: str) -> dict[str, Any]:
        return self.post(f"{IMPORT}/run-state", {"run_id": run_id})

    def import_logged_model(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.post(f"{IMPORT}/logged-model", body)

    # --- ordinary writes -----------------------------------------------------------------------

    def log_batch(self, run_id: str, *, metrics: list[dict[str, Any]] = (), params: list[dict[str, str]] = (),
                  tags: list[dict[str, str]] = (), ack: str = "enqueued") -> None:
        self.post(f"{MLFLOW}/runs/log-batch", {"run_id": run_id, "metrics": list(metrics), "params": list(params),
                                               "tags": list(tags)}, ack=ack)

    def log_inputs(self, run_id: str, datasets: list[dict[str, Any]], models: list[dict[str, str]]) -> None:
        self.post(f"{MLFLOW}/runs/log-inputs", {"run_id": run_id, "datasets": datasets, "models": models})

    def log_outputs(self, run_id: str, models: list[dict[str, Any]]) -> None:
        self.post(f"{MLFLOW}/runs/outputs", {"run_id": run_id, "models": models})

    # --- artifacts -----------------------------------------------------------------------------

    def artifact_listing(self, root: str) -> dict[str, int]:
        """{path relative to `root`: size} of every file under the proxied directory `root`."""
        out: dict[str, int] = {}
        stack = [""]
        while stack:
            rel = stack.pop()
            full = f"{root}/{rel}" if rel else root
            resp = self.request("GET", ARTIFACTS, params={"path": full}, ok_404=True)
            if resp.status_code == 404:
                continue
            for f in (resp.json() or {}).get("files", []):
                child = f"{rel}/{f['path']}" if rel else f["path"]
                if f.get("is_dir"):
                    stack.append(child)
                else:
                    out[child] = int(f.get("file_size") or 0)
        return out

    def upload(self, path: str, local: Path) -> tuple[int, str]:
        """Stream `local` to the proxied `path`; (bytes, sha256) of what was sent."""
        digest: dict[str, Any] = {}

        def body() -> Iterator[bytes]:
            h = hashlib.sha256()
            size = 0
            with open(local, "rb") as f:
                while chunk := f.read(BLOCK):
                    h.update(chunk)
                    size += len(chunk)
                    yield chunk
            digest.update(size=size, sha256=h.hexdigest())

        self.request("PUT", f"{ARTIFACTS}/{quote_path(path)}", data=body,
                     headers={"Content-Type": "application/octet-stream"})
        return digest["size"], digest["sha256"]

    def artifact_sha256(self, path: str) -> tuple[int, str]:
        resp = self.request("GET", f"{ARTIFACTS}/{quote_path(path)}", stream=True)
        h = hashlib.sha256()
        size = 0
        with resp:
            for chunk in resp.iter_content(BLOCK):
                h.update(chunk)
                size += len(chunk)
        return size, h.hexdigest()


def _authenticate(session: requests.Session) -> None:
    """The stock client's credentials (MLFLOW_TRACKING_USERNAME / _PASSWORD, or _TOKEN): the import
    endpoints are an admin's."""
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if user and password:
        session.auth = (user, password)
    elif token:
        session.headers["Authorization"] = f"Bearer {token}"


def quote_path(path: str) -> str:
    return urllib.parse.quote(path, safe="/")


def proxied_root(artifact_uri: str) -> str:
    """`mlflow-artifacts:/1/<run>/artifacts` -> `1/<run>/artifacts`."""
    parsed = urllib.parse.urlparse(artifact_uri)
    if parsed.scheme != "mlflow-artifacts":
        raise TargetError(f"target artifact location {artifact_uri!r} is not behind the artifact proxy")
    return parsed.path.strip("/")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(BLOCK):
            h.update(chunk)
    return h.hexdigest()
