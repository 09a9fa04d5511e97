"""Genesis-Flow vs. the reference `mlflow server`, side by side in one run (DESIGN.md section 7).

Prints numbers, never pass/fail. Both servers run on this machine at the same time and receive
identical request streams (same bodies, same order, same concurrency; only the server-assigned
experiment and run ids differ). For every scenario the reference goes first, then Genesis-Flow.

    python bench/compare.py                         # modest sizes (~9 minutes on 2 cores)
    python bench/compare.py --target standalone     # `genesis-flow standalone` instead of the stack
    python bench/compare.py --full                  # the DESIGN.md section 7 sizes (long)
    python bench/compare.py --only log-batch,search --search-runs 2000

Servers (started and stopped by this script):

* reference: `mlflow server --backend-store-uri sqlite:///<tmp>/mlflow.db --default-artifact-root
  <tmp>/art --workers 4 --host 127.0.0.1 --port <free>` (MLflow 3.x runs uvicorn with 4 worker
  processes serving the FastAPI app that wraps the Flask handlers); ready when `/health` answers.
* genesis-flow, `--target distributed` (default): writer, ingest and query processes plus nginx
  with the shipped router config (tests/stack.py), on the local RabbitMQ and MongoDB-wire server
  (tests/services.py); `--target standalone`: one `genesis-flow standalone` process on the same
  MongoDB-wire server. Its own database and queues are dropped on exit (Stack.stop()).

Scenarios (the load uses plain `requests`, one Session per client thread, the JSON the stock
client sends; scenario 5 uses the stock `MlflowClient`):

  1 log-batch   4 clients x N log-batch requests of 1000 metrics   -> metrics/s, p50/p95
  2 log-metric  8 clients x N single log-metric requests           -> req/s, p50/p95
  3 create      4 clients x N runs/create                          -> req/s, p50
  4 search      R runs (runs/create + one log-batch each, seeded by several clients), then
                ~30 x runs/search `metrics.rmse < 0.5 and params.model = 'tree'`, order_by
                `metrics.rmse DESC`, max_results 100                -> p50/p95 (per R in the list)
  5 history     one metric of P points (log-batch, 1000 points per request), read back in full
                with `MlflowClient.get_metric_history` (paged)      -> seconds

Sizes: defaults are modest; `--full` selects the DESIGN.md section 7 sizes (search over 5,000 and
then 100,000 runs, 100,000-point history, longer load phases). Any size flag given explicitly
wins over the preset.

"ratio" is always "how many times better Genesis-Flow is": genesis/reference for throughputs,
reference/genesis for latencies and durations (>1 means Genesis-Flow is faster).

Search data: Genesis-Flow seeds first (the slower one here); if a server cannot seed all R runs
within --seed-timeout, the other server seeds exactly the same runs, so both always search
identical data (the row then says how many runs that was).

Robustness: every phase has a deadline (--scenario-timeout, --seed-timeout, --max-wall for the whole
run); a failing phase is recorded and the run goes on; servers, tmp dirs, the stack's database
and queues are always cleaned up (also on Ctrl-C / SIGTERM). A background monitor checks that the
shared RabbitMQ answers AMQP and that the Genesis-Flow tiers answer /health once a second; misses
are reported as INTERFERENCE for the phase (other users of this machine, e.g. the durability
tests, restart the shared broker). When Genesis-Flow saw errors or interference, its tier logs are
copied next to --out (`<out>-logs/`). The script waits (--wait-quiet) for an idle machine first.

CPU: each phase also records the CPU time of the process groups involved (from /proc), as % of
one core (this machine has `nproc` cores; 100 % = one core busy), and "other" (everything else on
the machine, e.g. other users of the shared MongoDB-wire server). For Genesis-Flow the writer's
/metrics give batches, events per batch (`genesis_writer_batch_events`) and commit time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.profiling import Profiler  # noqa: E402
from bench.report import evaluate, write_results  # noqa: E402

# The stock client (scenario 5) retries 5xx for minutes by default; a benchmark wants to see it.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")

import requests

API = "/api/2.0/mlflow"
JSON_HEADERS = {"Content-Type": "application/json"}
T0 = 1_700_000_000_000  # fixed base timestamp (ms): identical request bodies on both servers
RETRY_STATUSES = {429, 502, 503, 504}
MAX_RETRIES = 5
CLK_TCK = os.sysconf("SC_CLK_TCK")

SCENARIOS = ("log-batch", "log-metric", "log-metric-50", "create", "search", "history", "history-1m")
ENQUEUED = {"X-Genesis-Flow-Ack": "enqueued"}  # Genesis-Flow's ack mode header (DESIGN.md section 4)

DEFAULTS = {  # modest: both servers, all scenarios, well under 10 minutes on 2 cores
    "batch_requests": 20, "batch_clients": 4, "batch_size": 1000, "batch_keys": 10,
    "metric_requests": 60, "metric_clients": 8, "many_clients": 50, "many_requests": 20,
    "create_requests": 60, "create_clients": 4,
    "search_runs": "5000", "search_queries": 30, "seed_clients": 8,
    "history_points": 100_000, "history_reads": 3, "big_history_points": 1_000_000,
    "search_reference_max": 5000,
    "warmup": 2,
    "scenario_timeout": 120, "seed_timeout": 240, "max_wall": 1200,
}
FULL = {  # DESIGN.md section 7
    "batch_requests": 100, "metric_requests": 500, "create_requests": 250,
    "many_requests": 100,
    "search_runs": "5000,50000", "search_queries": 30, "history_points": 100_000, "history_reads": 5,
    "scenario_timeout": 600, "seed_timeout": 4 * 3600, "max_wall": 12 * 3600,
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


# ----------------------------------------------------------------------------- CPU accounting


def _proc_table() -> dict[int, tuple[int, float, str, str]]:
    """pid -> (ppid, cpu seconds (user+system), comm, cmdline) for every process we can read."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        rest = stat[stat.rindex(")") + 2:].split()
        out[int(name)] = (int(rest[1]), (int(rest[11]) + int(rest[12])) / CLK_TCK, comm, cmd)
    return out


def _descendants(table: dict, root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, *_rest) in table.items():
        children.setdefault(ppid, []).append(pid)
    seen, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in table:
            continue
        seen.add(pid)
        todo.extend(children.get(pid, ()))
    return seen


def _machine_busy() -> float:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLK_TCK


def machine_busy_pct(seconds: float) -> float:
    b0 = _machine_busy()
    time.sleep(seconds)
    return 100 * (_machine_busy() - b0) / seconds


class CpuMeter:
    """CPU seconds per named process group between start() and stop()."""

    def __init__(self, groups: Callable[[dict], dict[str, set[int]]]):
        self.groups = groups

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.busy0 = _machine_busy()
        self.table0 = _proc_table()

    def stop(self) -> dict[str, float]:
        wall = max(time.monotonic() - self.t0, 1e-9)
        busy = _machine_busy() - self.busy0
        table1 = _proc_table()
        out: dict[str, float] = {}
        attributed = 0.0
        seen: set[int] = set()
        self.secs: dict[str, float] = {}
        self.peak_rss_mib: dict[str, float] = {}
        for name, pids in self.groups(table1).items():
            pids = pids - seen
            seen |= pids
            secs = sum(table1[p][1] - self.table0.get(p, (0, 0.0))[1] for p in pids if p in table1)
            attributed += secs
            out[name] = round(100 * secs / wall, 1)
            self.secs[name] = round(secs, 2)
            self.peak_rss_mib[name] = round(sum(_peak_rss_kib(p) for p in pids) / 1024, 1)
        out["other"] = round(max(0.0, 100 * (busy - attributed) / wall), 1)
        out["machine"] = round(100 * busy / wall, 1)
        # The busiest processes behind "other" (another user of the machine shows up here).
        rest = sorted(((table1[p][1] - self.table0.get(p, (0, 0.0))[1], p) for p in table1 if p not in seen),
                      reverse=True)[:3]
        self.other_top = [f"{table1[p][2]}[{p}] {100 * secs / wall:.0f}%: {table1[p][3][:90]}"
                          for secs, p in rest if 100 * secs / wall >= 3]
        return out


def _peak_rss_kib(pid: int) -> int:
    """The process's peak resident set (VmHWM) since it started, in KiB (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _shared_service_groups(table: dict, mongo_port: int) -> dict[str, set[int]]:
    mongo, rabbit = set(), set()
    for pid, (_ppid, _cpu, comm, cmd) in table.items():
        if "secantusd" in cmd and f"--port {mongo_port}" in cmd:
            mongo.add(pid)
        elif comm == "beam.smp" and "rabbit" in cmd:
            rabbit.add(pid)
    return {"mongodb-wire": mongo, "rabbitmq": rabbit}


# ----------------------------------------------------------------------------- servers


@dataclass
class Server:
    label: str  # "reference" | "genesis"
    url: str
    cpu_groups: Callable[[dict], dict[str, set[int]]]
    writer_url: str | None = None
    stop: Callable[[], None] = lambda: None
    ready_urls: dict[str, str] = field(default_factory=dict)  # tier -> /ready URL (interference monitor)
    save_logs: Callable[[Path], list[str]] = lambda dest: []
    meta: dict[str, Any] = field(default_factory=dict)
    pids: Callable[[], dict[str, int]] = dict  # Python process per tier (py-spy attaches to these)


def _wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{what} did not answer {url} within {timeout:.0f}s")


def _huey_dirs(root: int) -> set[str]:
    """The job-runner storage dirs the mlflow server told its children about (env of its tree)."""
    out = set()
    table = _proc_table()
    for pid in _descendants(table, root):
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/environ", "rb") as f:
                for item in f.read().split(b"\0"):
                    if item.startswith(b"_MLFLOW_HUEY_STORAGE_PATH="):
                        path = item.split(b"=", 1)[1].decode()
                        if path.startswith(("/dev/shm/", tempfile.gettempdir())):
                            out.add(path)
    return out


def settle(server: Server, timeout: float, threshold: float = 15.0) -> float:
    """Wait until the server's processes are idle (MLflow's job runner spends ~20 s importing
    after /health answers; on 2 cores that would land in the other server's numbers)."""
    deadline = time.monotonic() + timeout
    pct_now = 0.0
    while time.monotonic() < deadline:
        t0 = _proc_table()
        time.sleep(2)
        t1 = _proc_table()
        pids = set().union(*server.cpu_groups(t1).values())
        pct_now = 100 * sum(t1[p][1] - t0.get(p, (0, 0.0))[1] for p in pids if p in t1) / 2
        if pct_now < threshold:
            break
    return pct_now


def start_reference(workers: int, timeout: float) -> Server:
    tmp = Path(tempfile.mkdtemp(prefix="bench-mlflow-"))
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "server",
           "--backend-store-uri", f"sqlite:///{tmp}/mlflow.db",
           "--default-artifact-root", str(tmp / "art"),
           "--workers", str(workers), "--host", "127.0.0.1", "--port", str(port)]
    logf = open(tmp / "server.log", "ab")
    (tmp / "tmp").mkdir()
    # TMPDIR: MLflow's db_init_lock file lands in our tmp dir and goes away with it.
    env = {**os.environ, "TMPDIR": str(tmp / "tmp")}
    # Own session (process group): stop() signals the mlflow CLI, uvicorn and its workers at once.
    proc = subprocess.Popen(cmd, cwd=tmp, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, env=env)
    huey_dirs: set[str] = set()

    def stop() -> None:
        huey_dirs.update(_huey_dirs(proc.pid))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # leftover workers of that group, if any
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        logf.close()
        shutil.rmtree(tmp, ignore_errors=True)
        for d in huey_dirs:  # the job runner's queue dir (MLflow makes it in /dev/shm, never removes it)
            shutil.rmtree(d, ignore_errors=True)

    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(url + "/health", timeout, proc, "mlflow server")
    except BaseException:
        tail = (tmp / "server.log").read_text(errors="replace")[-3000:]
        stop()
        raise RuntimeError(f"reference server failed to start:\n{tail}")
    import mlflow

    def groups(table: dict) -> dict[str, set[int]]:
        return {"mlflow server (all workers)": _descendants(table, proc.pid)}

    return Server("reference", url, groups, stop=stop,
                  meta={"command": " ".join(cmd), "mlflow_version": mlflow.__version__})


def start_genesis(target: str, partitions: int, timeout: float) -> tuple[Server, str]:
    from tests.services import start_services
    from tests.stack import make_stack

    services, services_cleanup = start_services()
    stack = make_stack(services, "cmp", partitions=partitions)
    me = os.getpid()

    def stop() -> None:
        try:
            stack.stop()
        finally:
            shutil.rmtree(stack.workdir, ignore_errors=True)
            services_cleanup()

    try:
        if target == "standalone":
            stack.start("standalone", timeout=timeout)
            url, writer_url = stack.url("standalone"), stack.url("standalone")
        else:
            for tier in ("writer", "ingest", "query"):
                stack.start(tier, timeout=timeout)
            url = stack.start_router()
            writer_url = stack.url("writer")
        _wait_http(url + "/health", timeout, None, "genesis-flow")
    except BaseException:
        tails = "\n".join(f"--- {t}\n{stack.log_tail(t)}" for t in list(stack.procs))
        stop()
        raise RuntimeError(f"genesis-flow ({target}) failed to start:\n{tails}")

    def groups(table: dict) -> dict[str, set[int]]:
        out = {f"gf {tier}": _descendants(table, p.pid) for tier, p in stack.procs.items()}
        nginx = {pid for pid in _descendants(table, me) if table[pid][2] == "nginx"}
        if nginx:
            out["nginx"] = nginx
        return out

    def save_logs(dest: Path) -> list[str]:
        dest.mkdir(parents=True, exist_ok=True)
        saved = []
        for f in stack.workdir.glob("*.log"):
            shutil.copy(f, dest / f.name)
            saved.append(str(dest / f.name))
        return saved

    server = Server("genesis", url, groups, writer_url=writer_url, stop=stop, save_logs=save_logs,
                    pids=lambda: {tier: p.pid for tier, p in stack.procs.items() if p.poll() is None},
                    ready_urls={t: stack.url(t) + "/health" for t in stack.procs},
                    meta={"target": target, "stack": stack.name, "partitions": partitions,
                          "amqp_url": services.amqp_url,
                          "tiers": {t: stack.url(t) for t in stack.ports}})
    return server, services.mongodb_uri


def mongo_build_info(uri: str) -> dict[str, Any]:
    from pymongo import MongoClient

    client = MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        info = client.admin.command("buildInfo")
    finally:
        client.close()
    return {k: v for k, v in info.items() if k in ("version", "secantusVersion", "gitVersion", "versionArray",
                                                  "bits", "debug", "maxBsonObjectSize")}


# ----------------------------------------------------------------------------- writer /metrics


def scrape_writer(url: str | None) -> dict[str, float] | None:
    if not url:
        return None
    try:
        text = requests.get(url + "/metrics", timeout=10).text
    except requests.RequestException:
        return None
    out: dict[str, float] = {}
    for name, labels, value in re.findall(r"^(genesis_writer_[a-z_]+?)(\{[^}]*\})? ([0-9.e+-]+|NaN)$", text, re.MULTILINE):
        if value != "NaN":
            out[name + (labels or "")] = float(value)
    return out


def writer_delta(before: dict | None, after: dict | None) -> dict[str, Any] | None:
    if before is None or after is None:
        return None

    def d(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    batches = d("genesis_writer_batch_events_count")
    events = d("genesis_writer_batch_events_sum")
    commits = d("genesis_writer_commit_seconds_count")
    buckets = []
    prev = 0.0
    les = sorted({float(m.group(1)) for k in after for m in [re.search(r'batch_events_bucket\{le="([0-9.e+]+)"', k)] if m})
    for le in les:
        key = f'genesis_writer_batch_events_bucket{{le="{le}"}}'
        cum = d(key)
        if cum - prev > 0:
            buckets.append((f"<={le:g}", int(cum - prev)))
        prev = cum
    over = batches - prev
    if over > 0:
        buckets.append((">" + f"{les[-1]:g}" if les else "all", int(over)))
    docs = {m.group(1): d(k) for k in after for m in [re.search(r'documents_written_total\{collection="([^"]+)"', k)] if m}
    return {
        "batches": int(batches),
        "events": int(events),
        "events_per_batch_mean": round(events / batches, 2) if batches else None,
        "events_per_batch_hist": buckets,
        "commit_ms_mean": round(1000 * d("genesis_writer_commit_seconds_sum") / commits, 2) if commits else None,
        "documents_written": {k: int(v) for k, v in docs.items()},
        "points_written": int(d("genesis_writer_metric_points_written_total")),
        "store_retries": int(d("genesis_writer_store_retries_total")),
        "dead_letters": int(d("genesis_writer_dead_letters_total")),
    }


# ----------------------------------------------------------------------------- load


class Deadline(Exception):
    pass


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)
    ok: int = 0
    errors: int = 0
    retries: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    timed_out: bool = False
    wall: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def summary(self) -> dict[str, Any]:
        lat = self.latencies
        return {
            "requests_ok": self.ok, "errors": self.errors, "retries": self.retries, "statuses": self.statuses,
            "error_samples": self.error_samples[:3], "timed_out": self.timed_out, "wall_s": round(self.wall, 3),
            "p50_ms": round(1000 * pct(lat, 50), 2) if lat else None,
            "p95_ms": round(1000 * pct(lat, 95), 2) if lat else None,
            "p99_ms": round(1000 * pct(lat, 99), 2) if lat else None,
            "mean_ms": round(1000 * sum(lat) / len(lat), 2) if lat else None,
        }


class Client:
    """One load-generating client: its own requests.Session (keep-alive), like one training job."""

    def __init__(self, base: str, timeout: float, headers: dict[str, str] | None = None):
        self.base = base + API
        self.session = requests.Session()
        self.timeout = timeout
        self.headers = {**JSON_HEADERS, **(headers or {})}

    def close(self) -> None:
        self.session.close()

    def post(self, path: str, body: bytes, outcome: Outcome | None = None, deadline: float | None = None) -> Any:
        """POST with the stock client's habit of retrying 429/5xx-unavailable; returns the JSON."""
        if deadline is not None and time.monotonic() > deadline:
            raise Deadline()
        t0 = time.perf_counter()
        retries = 0
        while True:
            try:
                resp = self.session.post(self.base + path, data=body, headers=self.headers, timeout=self.timeout)
                status = resp.status_code
            except requests.RequestException as exc:
                resp, status = None, type(exc).__name__
            if status in RETRY_STATUSES and retries < MAX_RETRIES:
                retries += 1
                after = resp.headers.get("Retry-After") if resp is not None else None
                time.sleep(min(float(after), 2.0) if after and after.replace(".", "", 1).isdigit() else 0.1 * 2 ** retries)
                continue
            break
        elapsed = time.perf_counter() - t0
        ok = status == 200
        if outcome is not None:
            with outcome.lock:
                outcome.retries += retries
                outcome.statuses[str(status)] = outcome.statuses.get(str(status), 0) + 1
                if ok:
                    outcome.ok += 1
                    outcome.latencies.append(elapsed)
                else:
                    outcome.errors += 1
                    if len(outcome.error_samples) < 3:
                        outcome.error_samples.append(f"{path} -> {status}: {resp.text[:300] if resp is not None else ''}")
        if not ok:
            if outcome is None:
                raise RuntimeError(f"POST {path} -> {status}: {resp.text[:500] if resp is not None else ''}")
            return None
        return resp.json() if resp.content else {}


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def run_phase(server: Server, n_clients: int, streams: list[list[tuple[str, bytes]]], timeout: float,
              warmup: int = 0, request_timeout: float = 120, headers: dict[str, str] | None = None) -> Outcome:
    """Run `streams[c]` (pre-serialized (path, body) requests) on client c, all clients together.

    The first `warmup` requests of each stream are sent before timing starts (not counted)."""
    outcome = Outcome()
    clients = [Client(server.url, request_timeout, headers) for _ in range(n_clients)]
    try:
        for c, stream in enumerate(streams):
            for path, body in stream[:warmup]:
                clients[c].post(path, body, Outcome())
        barrier = threading.Barrier(n_clients + 1)
        deadline_holder: list[float] = []

        def work(c: int) -> None:
            barrier.wait()
            deadline = deadline_holder[0]
            for path, body in streams[c][warmup:]:
                try:
                    clients[c].post(path, body, outcome, deadline)
                except Deadline:
                    outcome.timed_out = True
                    return

        with ThreadPoolExecutor(n_clients) as pool:
            futures = [pool.submit(work, c) for c in range(n_clients)]
            deadline_holder.append(time.monotonic() + timeout)
            t0 = time.perf_counter()
            barrier.wait()
            for f in futures:
                f.result()
            outcome.wall = time.perf_counter() - t0
    finally:
        for c in clients:
            c.close()
    return outcome


# ----------------------------------------------------------------------------- scenario data


def create_experiment(server: Server, name: str, headers: dict[str, str] | None = None) -> str:
    c = Client(server.url, 60, headers)
    try:
        return c.post("/experiments/create", dumps({"name": name}))["experiment_id"]
    finally:
        c.close()


def create_run_body(exp: str, name: str, start: int) -> bytes:
    # What MlflowClient.create_run / mlflow.start_run send (context tags included).
    return dumps({"experiment_id": exp, "user_id": "bench", "run_name": name, "start_time": start,
                  "tags": [{"key": "mlflow.user", "value": "bench"},
                           {"key": "mlflow.source.name", "value": "bench/compare.py"},
                           {"key": "mlflow.source.type", "value": "LOCAL"},
                           {"key": "mlflow.runName", "value": name}]})


def create_runs(server: Server, exp: str, names: list[str], headers: dict[str, str] | None = None) -> list[str]:
    c = Client(server.url, 60, headers)
    try:
        return [c.post("/runs/create", create_run_body(exp, n, T0))["run"]["info"]["run_id"] for n in names]
    finally:
        c.close()


def log_batch_bodies(run_id: str, client: int, n: int, size: int, keys: int) -> list[tuple[str, bytes]]:
    rng = random.Random(1000 + client)
    per_key = max(1, size // keys)
    out = []
    for i in range(n):
        metrics = [{"key": f"m{j % keys}", "value": round(rng.random(), 6), "timestamp": T0 + i * size + j,
                    "step": i * per_key + j // keys} for j in range(size)]
        out.append(("/runs/log-batch", dumps({"run_id": run_id, "metrics": metrics})))
    return out


def raw_history_reads(base: str, run_id: str, key: str, reads: int) -> dict[str, Any]:
    """Time full get-history reads as bytes: follow page tokens, decode nothing else."""
    session = requests.Session()
    times, sizes = [], []
    try:
        for _ in range(reads):
            t0 = time.perf_counter()
            token, size = None, 0
            while True:
                params = {"run_id": run_id, "metric_key": key, **({"page_token": token} if token else {})}
                resp = session.get(base + API + "/metrics/get-history", params=params, timeout=600)
                resp.raise_for_status()
                size += len(resp.content)
                tail = resp.content[-2000:]
                if b'"next_page_token"' not in tail:
                    break
                token = resp.json().get("next_page_token")
                if not token:
                    break
            times.append(time.perf_counter() - t0)
            sizes.append(size)
    finally:
        session.close()
    return {"read_s": [round(t, 3) for t in times], "median_s": round(pct(times, 50), 3) if times else None,
            "bytes": sizes}


def search_run_data(i: int) -> tuple[list[dict], list[dict]]:
    rng = random.Random(i)
    metrics = [{"key": "rmse", "value": round(rng.random(), 6), "timestamp": T0 + i, "step": 0},
               {"key": "mae", "value": round(rng.random(), 6), "timestamp": T0 + i, "step": 0},
               {"key": "accuracy", "value": round(rng.random(), 6), "timestamp": T0 + i, "step": 0}]
    params = [{"key": "model", "value": rng.choice(("tree", "linear", "mlp"))},
              {"key": "lr", "value": str(rng.choice((0.1, 0.01, 0.001)))},
              {"key": "depth", "value": str(rng.randint(2, 12))}]
    return metrics, params


# ----------------------------------------------------------------------------- benchmark


class Monitor(threading.Thread):
    """Background checks for interference: the shared RabbitMQ answering AMQP, and the
    Genesis-Flow tiers' /ready. Another session stopping the shared broker (the durability tests
    do) shows up here instead of silently as a slow phase."""

    def __init__(self, checks: dict[str, Callable[[], bool]], interval: float = 1.0):
        super().__init__(daemon=True, name="bench-monitor")
        self.checks = checks
        self.interval = interval
        self.samples: list[tuple[float, str, bool]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            for name, check in self.checks.items():
                try:
                    ok = bool(check())
                except Exception:  # noqa: BLE001 - a failing check is a "down" sample
                    ok = False
                self.samples.append((time.monotonic(), name, ok))
            self.halt.wait(self.interval)

    def down(self, t0: float, t1: float) -> dict[str, int]:
        """check name -> failed samples between t0 and t1 (only checks that failed)."""
        out: dict[str, int] = {}
        for t, name, ok in list(self.samples):
            if t0 <= t <= t1 and not ok:
                out[name] = out.get(name, 0) + 1
        return out


def _http_ok(url: str, timeout: float = 3.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status == 200
    except OSError:
        return False


class Bench:
    def __init__(self, args: argparse.Namespace, servers: list[Server], monitor: Monitor | None = None,
                 profiler: Profiler | None = None):
        self.args = args
        self.profiler = profiler
        self.servers = servers
        self.monitor = monitor
        self.details: dict[str, dict[str, Any]] = {}
        self.rows: list[dict[str, Any]] = []
        self.search_state: dict[str, dict[str, Any]] = {}
        self.deadline = time.monotonic() + args.max_wall

    # bookkeeping ------------------------------------------------------------

    def measure(self, key: str, server: Server, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        meter = CpuMeter(lambda table: {**server.cpu_groups(table), **self.shared_groups(table),
                                        "bench client": {os.getpid()}})
        before = scrape_writer(server.writer_url)
        meter.start()
        m0 = time.monotonic()
        t0 = time.perf_counter()
        profiling = (self.profiler.phase(key, server.pids()) if self.profiler is not None and server.label == "genesis"
                     else contextlib.nullcontext())
        try:
            with profiling:
                result = fn()
        except Exception as exc:  # noqa: BLE001 - record and keep going with the other scenarios
            log(f"  {server.label}: {key} FAILED: {type(exc).__name__}: {exc}")
            result = {"failed": f"{type(exc).__name__}: {exc}"[:2000]}
        result["phase_wall_s"] = round(time.perf_counter() - t0, 2)
        result["cpu_pct_of_one_core"] = meter.stop()
        result["cpu_s"] = meter.secs
        result["peak_rss_mib"] = meter.peak_rss_mib
        result["cpu_other_top"] = meter.other_top
        if self.monitor is not None:
            down = self.monitor.down(m0, time.monotonic())
            if down:
                result["interference"] = {k: f"{v} failed checks (~{v * self.monitor.interval:.1f} s+)"
                                          for k, v in down.items()}
        w = writer_delta(before, scrape_writer(server.writer_url))
        if w is not None:
            result["writer"] = w
        self.details.setdefault(key, {})[server.label] = result
        return result

    def guard(self, key: str, server: Server, body: Callable[[], None]) -> None:
        """Run one server's part of a scenario (setup included); a failure is recorded, not fatal."""
        if time.monotonic() > self.deadline:
            log(f"  {server.label}: {key} skipped (--max-wall {self.args.max_wall:.0f} s reached)")
            self.details.setdefault(key, {})[server.label] = {"skipped": "max-wall reached"}
            return
        try:
            body()
        except Exception as exc:  # noqa: BLE001
            log(f"  {server.label}: {key} FAILED in setup: {type(exc).__name__}: {exc}")
            self.details.setdefault(key, {}).setdefault(server.label, {})["failed"] = \
                f"setup: {type(exc).__name__}: {exc}"[:2000]

    def shared_groups(self, table: dict) -> dict[str, set[int]]:
        return _shared_service_groups(table, self.args.mongo_port) if self.args.mongo_port else {}

    def row(self, scenario: str, metric: str, unit: str, key: str, field_: str, higher_is_better: bool,
            reference_key: str | None = None) -> None:
        """One result row, id `<key>/<last word of metric>` (bench/report.py's targets name rows by it).
        `reference_key`: take the reference's number from that phase (e.g. its committed log-batch for
        Genesis-Flow's enqueued one, a mode the reference does not have)."""
        vals = {}
        for s in self.servers:
            r = self.details.get(reference_key if s.label == "reference" and reference_key else key, {}).get(s.label, {})
            vals[s.label] = r.get(field_)
        ref, gen = vals.get("reference"), vals.get("genesis")
        ratio = None
        if ref and gen:
            ratio = gen / ref if higher_is_better else ref / gen
        self.rows.append({"id": f"{key}/{metric.split()[-1]}", "scenario": scenario, "metric": metric, "unit": unit,
                          "reference": ref, "genesis": gen,
                          "ratio": round(ratio, 2) if ratio else None, "higher_is_better": higher_is_better})

    def load_phase(self, key: str, s: Server, n_clients: int, streams: list[list[tuple[str, bytes]]],
                   per_request: int, warmup: int, headers: dict[str, str] | None = None) -> dict[str, Any]:
        def fn() -> dict[str, Any]:
            o = run_phase(s, n_clients, streams, self.args.scenario_timeout, warmup, headers=headers)
            r = o.summary()
            r["requests_per_s"] = round(o.ok / o.wall, 2) if o.wall else None
            r["metrics_per_s"] = round(o.ok * per_request / o.wall, 1) if o.wall and per_request else None
            return r

        return self.measure(key, s, fn)

    # scenarios --------------------------------------------------------------

    def log_batch(self) -> None:
        a = self.args
        for s in self.servers:
            def body(s: Server = s) -> None:
                log(f"log-batch: {s.label}: {a.batch_clients} clients x {a.batch_requests} x {a.batch_size} metrics")
                exp = create_experiment(s, "bench-log-batch")
                runs = create_runs(s, exp, [f"lb-{c}" for c in range(a.batch_clients)])
                streams = [log_batch_bodies(runs[c], c, a.warmup + a.batch_requests, a.batch_size, a.batch_keys)
                           for c in range(a.batch_clients)]
                r = self.load_phase("log-batch", s, a.batch_clients, streams, a.batch_size, a.warmup)
                self.report(r, s, "metrics/s", "metrics_per_s")
                if s.label == "genesis":  # again, acknowledged once durable in the queue
                    runs = create_runs(s, exp, [f"lbe-{c}" for c in range(a.batch_clients)])
                    streams = [log_batch_bodies(runs[c], c, a.warmup + a.batch_requests, a.batch_size, a.batch_keys)
                               for c in range(a.batch_clients)]
                    log(f"log-batch: {s.label}: the same with enqueued acks")
                    r = self.load_phase("log-batch-enqueued", s, a.batch_clients, streams, a.batch_size, a.warmup,
                                        headers=ENQUEUED)
                    self.report(r, s, "metrics/s", "metrics_per_s")

            self.guard("log-batch", s, body)
        sc = f"1 log-batch {a.batch_size} metrics ({a.batch_keys} keys), {a.batch_clients} clients"
        self.row(sc, "throughput", "metrics/s", "log-batch", "metrics_per_s", True)
        self.row(sc, "p50", "ms", "log-batch", "p50_ms", False)
        self.row(sc, "p95", "ms", "log-batch", "p95_ms", False)
        sc = "  the same, Genesis-Flow enqueued acks (reference: its only, committed, mode)"
        self.row(sc, "throughput", "metrics/s", "log-batch-enqueued", "metrics_per_s", True, reference_key="log-batch")
        self.row(sc, "p50", "ms", "log-batch-enqueued", "p50_ms", False, reference_key="log-batch")

    def log_metric(self, key: str = "log-metric", clients: int | None = None, requests_: int | None = None) -> None:
        a = self.args
        n_clients = clients or a.metric_clients
        n_requests = requests_ or a.metric_requests
        for s in self.servers:
            def body(s: Server = s) -> None:
                log(f"{key}: {s.label}: {n_clients} clients x {n_requests}")
                exp = create_experiment(s, f"bench-{key}")
                runs = create_runs(s, exp, [f"lm-{c}" for c in range(n_clients)])
                streams = []
                for c in range(n_clients):
                    rng = random.Random(2000 + c)
                    streams.append([("/runs/log-metric", dumps(
                        {"run_uuid": runs[c], "key": "loss", "value": round(rng.random(), 6), "timestamp": T0 + i,
                         "step": i, "run_id": runs[c]})) for i in range(a.warmup + n_requests)])
                r = self.load_phase(key, s, n_clients, streams, 0, a.warmup)
                self.report(r, s, "req/s", "requests_per_s")

            self.guard(key, s, body)
        sc = f"2 log-metric, {n_clients} clients"
        self.row(sc, "throughput", "req/s", key, "requests_per_s", True)
        self.row(sc, "p50", "ms", key, "p50_ms", False)
        self.row(sc, "p95", "ms", key, "p95_ms", False)
        self.row(sc, "p99", "ms", key, "p99_ms", False)

    def log_metric_many(self) -> None:
        self.log_metric("log-metric-50", self.args.many_clients, self.args.many_requests)

    def create(self) -> None:
        a = self.args
        for s in self.servers:
            def body(s: Server = s) -> None:
                log(f"runs/create: {s.label}: {a.create_clients} clients x {a.create_requests}")
                exp = create_experiment(s, "bench-create")
                streams = [[("/runs/create", create_run_body(exp, f"c{c}-{i}", T0 + i))
                            for i in range(a.warmup + a.create_requests)] for c in range(a.create_clients)]
                r = self.load_phase("create", s, a.create_clients, streams, 0, a.warmup)
                self.report(r, s, "req/s", "requests_per_s")

            self.guard("create", s, body)
        sc = f"3 runs/create, {a.create_clients} clients"
        self.row(sc, "throughput", "req/s", "create", "requests_per_s", True)
        self.row(sc, "p50", "ms", "create", "p50_ms", False)

    def seed(self, s: Server, exp: str, indices: list[int]) -> dict[str, Any]:
        """Search runs `indices`: runs/create + one log-batch each; run i goes to client i % seed_clients.

        Adds the indices that were fully written to search_state[s.label]["seeded"]."""
        a = self.args
        outcome = Outcome()
        clients = [Client(s.url, 120) for _ in range(a.seed_clients)]
        deadline = time.monotonic() + a.seed_timeout
        seeded: set[int] = self.search_state[s.label].setdefault("seeded", set())

        def work(c: int) -> None:
            for i in indices:
                if i % a.seed_clients != c:
                    continue
                try:
                    run = clients[c].post("/runs/create", create_run_body(exp, f"s{i:06d}", T0 + i), outcome, deadline)
                    if run is None:
                        continue
                    run_id = run["run"]["info"]["run_id"]
                    metrics, params = search_run_data(i)
                    if clients[c].post("/runs/log-batch", dumps({"run_id": run_id, "metrics": metrics,
                                                                 "params": params}), outcome, deadline) is not None:
                        seeded.add(i)  # set.add is atomic under the GIL
                except Deadline:
                    outcome.timed_out = True
                    return

        t0 = time.perf_counter()
        try:
            with ThreadPoolExecutor(a.seed_clients) as pool:
                for f in [pool.submit(work, c) for c in range(a.seed_clients)]:
                    f.result()
        finally:
            for c in clients:
                c.close()
        outcome.wall = time.perf_counter() - t0
        r = outcome.summary()
        done = len(seeded.intersection(indices))
        r["runs_requested"] = len(indices)
        r["runs_seeded"] = done
        r["runs_total"] = len(seeded)
        r["runs_per_s"] = round(done / outcome.wall, 1) if outcome.wall else None
        return r

    def search_queries(self, s: Server, exp: str) -> dict[str, Any]:
        a = self.args
        body = dumps({"experiment_ids": [exp], "filter": a.search_filter, "run_view_type": "ACTIVE_ONLY",
                      "max_results": 100, "order_by": [a.search_order_by]})
        c = Client(s.url, 120)
        o = Outcome()
        try:
            first = None
            for _ in range(3):  # warm-up (caches, connection)
                first = c.post("/runs/search", body)
            deadline = time.monotonic() + a.scenario_timeout
            t0 = time.perf_counter()
            for _ in range(a.search_queries):
                try:
                    c.post("/runs/search", body, o, deadline)
                except Deadline:
                    o.timed_out = True
                    break
            o.wall = time.perf_counter() - t0
        finally:
            c.close()
        r = o.summary()
        page = (first or {}).get("runs", [])
        r["page_run_names"] = [run["info"].get("run_name") for run in page]
        r["page_size"] = len(page)
        r["has_next_page"] = bool((first or {}).get("next_page_token"))
        return r

    def search(self) -> None:
        """Seed, then query, per level. Same data on both servers: Genesis-Flow seeds first (the slower
        one on this machine); if a server cannot seed every run within --seed-timeout, the next
        server seeds exactly the runs the first one got, so both always search identical data."""
        a = self.args
        levels = sorted(int(x) for x in str(a.search_runs).split(",") if x.strip())
        order = sorted(self.servers, key=lambda s: s.label != "genesis")
        lo = 0
        for level in levels:
            want = list(range(lo, level))
            # Above --search-reference-max only Genesis-Flow seeds and searches (seeding 50,000 runs
            # into the reference takes the better part of an hour here); those rows have absolute targets.
            taking_part = [s for s in order if s.label != "reference" or level <= a.search_reference_max]
            for s in taking_part:
                def seed(s: Server = s, level: int = level) -> None:
                    nonlocal want
                    st = self.search_state.setdefault(s.label, {})
                    if "exp" not in st:
                        st["exp"] = create_experiment(s, "bench-search")
                    log(f"search: {s.label}: seeding {len(want)} runs (create + log-batch each, {a.seed_clients} clients)")
                    r = self.measure(f"seed@{level}", s, lambda: self.seed(s, st["exp"], want))
                    self.report(r, s, "runs/s", "runs_per_s")
                    got = st.get("seeded", set())
                    if len(got.intersection(want)) < len(want):
                        log(f"  {s.label}: seeded {len(got.intersection(want))} of {len(want)} runs; "
                            "the other server gets exactly the same runs")
                        want = sorted(got.intersection(want))

                self.guard(f"seed@{level}", s, seed)
            totals = {s.label: len(self.search_state.get(s.label, {}).get("seeded", ())) for s in taking_part}
            for s in taking_part:
                def query(s: Server = s, level: int = level, totals: dict = totals) -> None:
                    n = totals[s.label]
                    log(f"search: {s.label}: {a.search_queries} queries over {n} runs")
                    r = self.measure(f"search@{level}", s, lambda: self.search_queries(s, self.search_state[s.label]["exp"]))
                    r["runs_searched"] = n
                    self.report(r, s, "p50 ms", "p50_ms")

                self.guard(f"search@{level}", s, query)
            per = self.details.setdefault(f"search@{level}", {})
            per["runs_per_server"] = totals
            comparable = len(set(totals.values())) == 1
            ref = per.get("reference", {}).get("page_run_names")
            gen = per.get("genesis", {}).get("page_run_names")
            if ref is not None and gen is not None:
                per["same_first_page"] = ref == gen
                log(f"search@{level}: first result pages {'identical' if ref == gen else 'DIFFER'} "
                    f"({len(ref)} vs {len(gen)} runs)")
            n = max(totals.values(), default=0)
            label = f"4 runs/search over {n:,} runs" + ("" if n == level else f" (of {level:,} asked)")
            if not comparable:
                label = "4 runs/search, NOT comparable: runs " + ", ".join(f"{k} {v:,}" for k, v in totals.items())
            self.row(f"  seed {len(range(lo, level)):,} runs (create + log-batch each, {a.seed_clients} clients)",
                     "throughput", "runs/s", f"seed@{level}", "runs_per_s", True)
            self.row(label, "p50", "ms", f"search@{level}", "p50_ms", False)
            self.row(label, "p95", "ms", f"search@{level}", "p95_ms", False)
            if not comparable:
                for row in self.rows[-2:]:
                    row["ratio"] = None
            lo = level

    def history_big(self) -> None:
        """Genesis-Flow only: the reference takes minutes to store a million points here."""
        self.history("history-1m", self.args.big_history_points, [s for s in self.servers if s.label == "genesis"],
                     reads=max(1, min(self.args.history_reads, 3)))

    def history(self, key: str = "history", points: int | None = None, servers: list[Server] | None = None,
                reads: int | None = None) -> None:
        a = self.args
        from mlflow.tracking import MlflowClient

        points = points or a.history_points
        reads = reads or a.history_reads
        n_req = max(1, -(-points // 1000))
        for s in servers if servers is not None else self.servers:
            def body(s: Server = s) -> None:
                log(f"{key}: {s.label}: logging {points} points ({n_req} log-batch requests)")
                exp = create_experiment(s, f"bench-{key}")
                run = create_runs(s, exp, ["history"])[0]
                rng = random.Random(3000)
                bodies = []
                for b in range(n_req):
                    lo, hi = b * 1000, min((b + 1) * 1000, points)
                    bodies.append(("/runs/log-batch", dumps({"run_id": run, "metrics": [
                        {"key": "loss", "value": round(rng.random(), 6), "timestamp": T0 + i, "step": i}
                        for i in range(lo, hi)]})))
                streams = [bodies[c::a.history_log_clients] for c in range(a.history_log_clients)]
                r = self.load_phase(f"{key}-load", s, a.history_log_clients, streams, 1000, 0)
                self.report(r, s, "metrics/s", "metrics_per_s")

                def read() -> dict[str, Any]:
                    client = MlflowClient(tracking_uri=s.url)
                    times, lengths = [], []
                    deadline = time.monotonic() + a.scenario_timeout
                    for _ in range(reads):
                        if time.monotonic() > deadline:
                            break
                        t0 = time.perf_counter()
                        hist = client.get_metric_history(run, "loss")
                        times.append(time.perf_counter() - t0)
                        lengths.append(len(hist))
                    return {"read_s": [round(t, 3) for t in times],
                            "median_s": round(pct(times, 50), 3) if times else None,
                            "min_s": round(min(times), 3) if times else None, "points_returned": lengths,
                            "complete": bool(lengths) and all(n == points for n in lengths)}

                r = self.measure(key, s, read)
                self.report(r, s, "s (median)", "median_s")
                if not r.get("complete", False):
                    log(f"  {s.label}: history returned {r.get('points_returned')} points, expected {points}")
                # The same read without the client's parsing (JSON -> protobuf -> Metric objects,
                # which costs the stock client about as much per point as either server does):
                # how long the server takes to answer, bytes on the wire included.
                r = self.measure(f"{key}-raw", s, lambda: raw_history_reads(s.url, run, "loss", reads))
                self.report(r, s, "s (median, raw HTTP)", "median_s")

            self.guard(key, s, body)
        sc = f"5 get-history, {points:,} points (stock client)"
        self.row(sc, "full read, median", "s", key, "median_s", False)
        self.row(sc, "full read, best", "s", key, "min_s", False)
        self.row("  the same read as raw HTTP (no client-side parsing)", "server time, median", "s", f"{key}-raw",
                 "median_s", False)
        self.row(f"  load {points:,} points (log-batch x1000, {a.history_log_clients} clients)",
                 "throughput", "metrics/s", f"{key}-load", "metrics_per_s", True)

    def report(self, r: dict[str, Any], s: Server, unit: str, field_: str) -> None:
        cpu = r.get("cpu_pct_of_one_core", {})
        top = ", ".join(f"{k} {v:.0f}%" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]) if v >= 1)
        extra = ""
        if r.get("errors"):
            extra += f" errors={r['errors']} {r.get('statuses')}"
        if r.get("retries"):
            extra += f" retries={r['retries']}"
        if r.get("timed_out"):
            extra += " TIMED-OUT"
        if "failed" in r:
            extra += f" FAILED {r['failed'][:200]}"
        if r.get("interference"):
            extra += f" INTERFERENCE {r['interference']}"
        w = r.get("writer")
        wtxt = ""
        if w and w.get("batches"):
            wtxt = f" | writer: {w['batches']} batches, {w['events_per_batch_mean']} ev/batch, {w['commit_ms_mean']} ms/commit"
        log(f"  {s.label}: {r.get(field_)} {unit} (p50 {r.get('p50_ms')} ms, p95 {r.get('p95_ms')} ms, "
            f"{r.get('phase_wall_s')} s){extra} | cpu: {top}{wtxt}")


# ----------------------------------------------------------------------------- output


def fmt(v: Any, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "s":
        return f"{v:.2f} s"
    if unit == "ms":
        return f"{v:,.1f} ms"
    return f"{v:,.0f} {unit}" if v >= 100 else f"{v:,.1f} {unit}"


def print_table(rows: list[dict[str, Any]]) -> None:
    head = ("scenario", "metric", "reference", "genesis-flow", "ratio")
    lines = [(r["scenario"], r["metric"], fmt(r["reference"], r["unit"]), fmt(r["genesis"], r["unit"]),
              f"{r['ratio']:.2f}x" if r["ratio"] else "-") for r in rows]
    widths = [max(len(x[i]) for x in [head, *lines]) for i in range(5)]
    sep = "-+-".join("-" * w for w in widths)
    print(" | ".join(h.ljust(widths[i]) if i < 2 else h.rjust(widths[i]) for i, h in enumerate(head)))
    print(sep)
    for line in lines:
        print(" | ".join(x.ljust(widths[i]) if i < 2 else x.rjust(widths[i]) for i, x in enumerate(line)))


def print_cpu(details: dict[str, dict[str, Any]]) -> None:
    print("\nCPU per phase (% of one core; machine max = 100% x nproc; 'other' = not attributed):")
    for key, per in details.items():
        for label in ("reference", "genesis"):
            r = per.get(label)
            if not isinstance(r, dict) or "cpu_pct_of_one_core" not in r:
                continue
            cpu = r["cpu_pct_of_one_core"]
            parts = ", ".join(f"{k} {v:.0f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])
                              if k != "machine" and v >= 0.5)
            line = f"  {key:14} {label:9} machine {cpu.get('machine', 0):.0f}%: {parts}"
            if r.get("interference"):
                line += f"\n  {'':14} {'':9} INTERFERENCE: {r['interference']}"
            if cpu.get("other", 0) >= 10 and r.get("cpu_other_top"):
                line += f"\n  {'':14} {'':9} other: " + "; ".join(r["cpu_other_top"])
            w = r.get("writer")
            if w and w.get("batches"):
                hist = " ".join(f"{b}:{n}" for b, n in w["events_per_batch_hist"])
                line += (f"\n  {'':14} {'':9} writer: {w['batches']} batches, {w['events_per_batch_mean']} events/batch "
                         f"[{hist}], {w['commit_ms_mean']} ms/commit, docs {w['documents_written']}")
            print(line)


# ----------------------------------------------------------------------------- main


def git_state() -> str:
    """Commit the Genesis-Flow processes were started from (+ "dirty" with uncommitted changes)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + (" (dirty)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", choices=("distributed", "standalone"), default="distributed",
                   help="Genesis-Flow deployment: nginx + ingest/writer/query (default) or one standalone process")
    p.add_argument("--servers", default="reference,genesis", help="which servers to run (comma list)")
    p.add_argument("--only", default=",".join(SCENARIOS), help=f"scenarios to run, from {','.join(SCENARIOS)}")
    p.add_argument("--full", action="store_true",
                   help="the sizes the speed targets are judged at (bench/report.py): log-batch 4x100, "
                        "log-metric 8x500 and 50x100, create 4x250, search over 5,000 runs (both servers) then "
                        "50,000 runs in the same experiment (Genesis-Flow only), 100,000-point history (both) "
                        "and 1,000,000 points (Genesis-Flow)")
    p.add_argument("--results-dir", default=str(REPO / "bench" / "results"),
                   help="where compare-<time>.json/.md/.png go (bench/results)")
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument("--profile", action="store_true",
                   help="record py-spy flame graphs of every Genesis-Flow tier per phase (<results-dir>/profiles-<time>/)")
    g = p.add_argument_group("sizes (defaults are modest; --full changes them unless given explicitly)")
    g.add_argument("--batch-requests", type=int, help=f"log-batch requests per client ({DEFAULTS['batch_requests']})")
    g.add_argument("--batch-clients", type=int, help=f"({DEFAULTS['batch_clients']})")
    g.add_argument("--batch-size", type=int, help=f"metrics per log-batch ({DEFAULTS['batch_size']})")
    g.add_argument("--batch-keys", type=int, help=f"distinct metric keys per log-batch ({DEFAULTS['batch_keys']})")
    g.add_argument("--metric-requests", type=int, help=f"log-metric requests per client ({DEFAULTS['metric_requests']})")
    g.add_argument("--metric-clients", type=int, help=f"({DEFAULTS['metric_clients']})")
    g.add_argument("--many-clients", type=int, help=f"clients of the log-metric-50 scenario ({DEFAULTS['many_clients']})")
    g.add_argument("--many-requests", type=int, help=f"log-metric requests per client there ({DEFAULTS['many_requests']})")
    g.add_argument("--create-requests", type=int, help=f"runs/create per client ({DEFAULTS['create_requests']})")
    g.add_argument("--create-clients", type=int, help=f"({DEFAULTS['create_clients']})")
    g.add_argument("--search-runs", help=f"runs to search over, comma list grown in order ({DEFAULTS['search_runs']})")
    g.add_argument("--search-queries", type=int, help=f"timed queries per level ({DEFAULTS['search_queries']})")
    g.add_argument("--seed-clients", type=int, help=f"concurrent clients seeding search runs ({DEFAULTS['seed_clients']})")
    g.add_argument("--history-points", type=int, help=f"points of the history metric ({DEFAULTS['history_points']})")
    g.add_argument("--big-history-points", type=int,
                   help=f"points of the history-1m scenario, Genesis-Flow only ({DEFAULTS['big_history_points']})")
    g.add_argument("--search-reference-max", type=int,
                   help="search levels above this many runs seed and search Genesis-Flow only "
                        f"({DEFAULTS['search_reference_max']})")
    g.add_argument("--history-reads", type=int, help=f"full reads timed ({DEFAULTS['history_reads']})")
    g.add_argument("--warmup", type=int, help=f"untimed requests per client before each load phase ({DEFAULTS['warmup']})")
    p.add_argument("--history-log-clients", type=int, default=2, help="clients logging the history points")
    p.add_argument("--search-filter", default="metrics.rmse < 0.5 and params.model = 'tree'")
    p.add_argument("--search-order-by", default="metrics.rmse DESC")
    p.add_argument("--reference-workers", type=int, default=4)
    p.add_argument("--partitions", type=int, default=4, help="Genesis-Flow event partitions (queues)")
    p.add_argument("--scenario-timeout", type=float, help="seconds per timed phase before it stops early (120)")
    p.add_argument("--seed-timeout", type=float,
                   help="seconds per server and level for seeding search runs; what one server seeded by then "
                        "is what the other gets, so both search the same data (240; --full: 4 h)")
    p.add_argument("--wait-quiet", type=float, default=60,
                   help="before starting, wait up to this many seconds for the machine to be quiet (0: don't)")
    p.add_argument("--quiet-below", type=float, default=30, help="'quiet' = machine busy below this %% of one core")
    p.add_argument("--max-wall", type=float,
                   help="seconds for the whole run; phases not started by then are skipped (servers are always "
                        "stopped) (1200; --full: 12 h)")
    p.add_argument("--start-timeout", type=float, default=120, help="seconds for a server to come up")
    args = p.parse_args(argv)
    preset = {**DEFAULTS, **(FULL if args.full else {})}
    for k, v in preset.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.only = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = set(args.only) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    args.servers = [x.strip() for x in args.servers.split(",") if x.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.mongo_port = None

    def on_term(signum, _frame):  # clean up on SIGTERM / SIGHUP like on Ctrl-C
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    started = time.time()
    t_start = time.perf_counter()
    stem = "compare-" + time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    results_dir = Path(args.results_dir)
    profiler = Profiler(results_dir / f"profiles-{stem[len('compare-'):]}") if args.profile else None
    servers: list[Server] = []
    meta: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
        "args": {k: v for k, v in vars(args).items() if k != "mongo_port"},
        "git": git_state(),
    }
    bench = None
    exit_code = 0
    try:
        busy = machine_busy_pct(3.0)
        if args.wait_quiet > 0 and busy > args.quiet_below:
            log(f"machine busy {busy:.0f}% of one core before start; waiting up to {args.wait_quiet:.0f} s "
                f"for < {args.quiet_below:.0f}%")
            until = time.monotonic() + args.wait_quiet
            while busy > args.quiet_below and time.monotonic() < until:
                busy = machine_busy_pct(5.0)
        meta["machine_busy_before_start_pct"] = round(busy, 1)
        log(f"machine busy before start: {busy:.0f}% of one core (other users of this machine)")
        if "reference" in args.servers:
            log(f"starting reference mlflow server ({args.reference_workers} workers, SQLite)")
            servers.append(start_reference(args.reference_workers, args.start_timeout))
            idle = settle(servers[-1], args.start_timeout)
            log(f"  reference at {servers[-1].url} (settled: {idle:.0f}% CPU)")
        if "genesis" in args.servers:
            log(f"starting genesis-flow ({args.target})")
            gen, mongo_uri = start_genesis(args.target, args.partitions, args.start_timeout)
            servers.append(gen)
            idle = settle(gen, args.start_timeout)
            log(f"  genesis-flow at {gen.url} ({gen.meta['tiers']}; settled: {idle:.0f}% CPU)")
            meta["mongodb_uri"] = mongo_uri
            meta["mongodb_buildinfo"] = mongo_build_info(mongo_uri)
            from tests.services import describe_mongo_server

            meta["mongodb_server"] = describe_mongo_server(mongo_uri)
            m = re.search(r"//[^/]*:(\d+)", mongo_uri)
            args.mongo_port = int(m.group(1)) if m else 27017
        meta["servers"] = {s.label: {"url": s.url, **s.meta} for s in servers}

        checks: dict[str, Callable[[], bool]] = {}
        if "mongodb_uri" in meta:
            from tests.services import _amqp_host_port, amqp_answers

            services_amqp = gen.meta.get("amqp_url")
            if services_amqp:
                host, port = _amqp_host_port(services_amqp)
                checks["rabbitmq answers AMQP"] = lambda: amqp_answers(host, port, timeout=2.0)
            for tier, url in gen.ready_urls.items():
                checks[f"gf {tier} /health"] = lambda url=url: _http_ok(url)
        monitor = Monitor(checks) if checks else None
        if monitor is not None:
            monitor.start()
        bench = Bench(args, servers, monitor, profiler)
        steps = {"log-batch": bench.log_batch, "log-metric": bench.log_metric, "log-metric-50": bench.log_metric_many,
                 "create": bench.create, "search": bench.search, "history": bench.history,
                 "history-1m": bench.history_big}
        for name in SCENARIOS:
            if name in args.only:
                steps[name]()
    except KeyboardInterrupt as exc:
        log(f"interrupted ({exc}); cleaning up")
        exit_code = 130
    finally:
        if bench is not None and bench.monitor is not None:
            bench.monitor.halt.set()
        troubled = bench is not None and any(
            isinstance(r, dict) and (r.get("errors") or r.get("failed") or r.get("timed_out") or r.get("interference"))
            for per in bench.details.values() for label, r in per.items() if label == "genesis")
        for s in servers:
            if s.label == "genesis" and troubled:
                dest = results_dir / f"{stem}-logs"
                with contextlib.suppress(Exception):
                    meta["genesis_logs"] = s.save_logs(dest)
                    log(f"genesis-flow had errors or interference: tier logs copied to {dest}")
        for s in reversed(servers):
            log(f"stopping {s.label}")
            try:
                s.stop()
            except Exception as exc:  # noqa: BLE001
                log(f"  stopping {s.label} failed: {type(exc).__name__}: {exc}")
    wall = time.perf_counter() - t_start
    meta["wall_s"] = round(wall, 1)
    if bench is None:
        return exit_code or 1

    bi = meta.get("mongodb_buildinfo", {})
    print(f"\nGenesis-Flow vs reference mlflow server -- {meta['started']}, {meta['cpus']} CPUs, Python {meta['python']}")
    if "reference" in meta["servers"]:
        print(f"reference:    mlflow {meta['servers']['reference']['mlflow_version']} server, SQLite, "
              f"{args.reference_workers} uvicorn workers")
    if "genesis" in meta["servers"]:
        print(f"genesis-flow: git {meta['git']}, {args.target} ({'nginx router -> ingest, query; writer' if args.target == 'distributed' else 'one process'}), "
              f"{args.partitions} partitions, committed acks")
        print(f"MongoDB wire: {meta['mongodb_server']}")
    others = [r["cpu_pct_of_one_core"].get("other", 0.0) for per in bench.details.values() for r in per.values()
              if isinstance(r, dict) and "cpu_pct_of_one_core" in r]
    print(f"machine: busy {meta.get('machine_busy_before_start_pct', '?')}% of one core before start; processes "
          f"outside the benchmark used {sum(others) / len(others) if others else 0:.0f}% on average "
          f"(max {max(others, default=0):.0f}%) of one core during the phases")
    print("ratio = how many times better Genesis-Flow is (throughput: gen/ref; latency, seconds: ref/gen)\n")
    print_table(bench.rows)
    print_cpu(bench.details)
    notes = []
    for key, per in bench.details.items():
        for label, r in per.items():
            if isinstance(r, dict) and (r.get("errors") or r.get("timed_out") or r.get("failed") or r.get("skipped")):
                notes.append(f"  {key} {label}: errors={r.get('errors')} statuses={r.get('statuses')} "
                             f"retries={r.get('retries')} timed_out={r.get('timed_out')} {r.get('failed', '')} "
                             f"{r.get('skipped', '')} {r.get('error_samples', '')}")
            if isinstance(r, dict) and r.get("interference"):
                notes.append(f"  {key} {label}: INTERFERENCE during the phase: {r['interference']}")
        if per.get("same_first_page") is False:
            notes.append(f"  {key}: the first result pages of the two servers differ")
    if notes:
        print("\nNotes:")
        print("\n".join(notes))
    print_targets(evaluate(bench.rows))
    if profiler is not None:
        meta["profiles"] = profiler.files
        print(f"\nprofiles (py-spy): {profiler.dest} ({len(profiler.files)} files)"
              + (f"; errors: {profiler.errors}" if profiler.errors else ""))
    meta.update(target=args.target, reference_workers=args.reference_workers,
                mlflow_version=meta["servers"].get("reference", {}).get("mlflow_version"),
                mongodb_server=meta.get("mongodb_server", "-"))
    paths = write_results(results_dir, stem, meta, bench.rows, bench.details)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(paths["json"], args.out)
    print(f"\nwall time {wall:.0f} s; results: " + ", ".join(paths.values()))
    return exit_code


def print_targets(targets: list[dict[str, Any]]) -> None:
    print("\nTargets (bench/report.py):")
    for t in targets:
        mark = {True: "MET ", False: "MISS", None: "n/a "}[t["met"]]
        value = t["measured"]
        shown = "-" if value is None else (f"{value:.2f}x" if t.get("unit") == "x" else f"{value:,.2f} {t.get('unit')}")
        bound = f" (reference p50 {t['bound']:,.1f} ms)" if t.get("bound") is not None else ""
        print(f"  {mark} {t['target']}: {shown}{bound}")


if __name__ == "__main__":
    sys.exit(main())
