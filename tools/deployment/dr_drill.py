"""The steps of the disaster-recovery drill that are not `genesis-flow backup|restore`
(`scripts/dr-drill.sh` runs them in order). Each reads the deployment from the usual environment
variables (GENESIS_FLOW_MONGODB_URI, GENESIS_FLOW_MONGODB_DB, GENESIS_FLOW_ARTIFACT_ROOT,
AZURE_STORAGE_CONNECTION_STRING, GENESIS_FLOW_AMQP_URL, GENESIS_FLOW_QUEUE_PREFIX ...):

    dr_drill.py destroy --yes           drop the database, delete the artifact container / directory
    dr_drill.py serve --uri-file FILE   run writer, ingest, query and the nginx router (the shipped
                                        config) on the deployment; write the tracking URI to FILE
                                        once every tier is ready; stop them on SIGTERM/SIGINT
    dr_drill.py compare --tracking-uri URI --backup DIR [--output report.json]
                                        through the stock client: experiments, runs, registered
                                        models and versions counted against the manifest, the
                                        metric-history digest recomputed from get-history, every
                                        run's artifacts listed (and downloaded up to a limit) against
                                        the manifest's sizes and SHA-256
    dr_drill.py cleanup --yes           drop the database, delete its artifacts and queues
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from common.settings import Settings, load_settings  # noqa: E402
from genesis_flow.backup import HistoryDigest, read_manifest  # noqa: E402
from tools.checks import Report  # noqa: E402

ROUTER_TEMPLATE = REPO / "compose" / "nginx" / "genesis-flow.conf.template"
RUN_ARTIFACTS = re.compile(r"^(?P<exp>[^/]+)/(?P<run>[0-9a-f]{32})/artifacts/(?P<rel>.+)$")


# --- destroy / cleanup --------------------------------------------------------------------------


async def destroy(settings: Settings, *, queues: bool = False) -> list[str]:
    """Drop the database and remove the artifact root (a local directory, or the Azure container)."""
    from pymongo import AsyncMongoClient

    done = []
    client = AsyncMongoClient(settings.mongodb_uri, serverSelectionTimeoutMS=5000)
    try:
        await client.drop_database(settings.mongodb_db)
        done.append(f"dropped database {settings.mongodb_db}")
    finally:
        await client.close()
    root = urllib.parse.urlsplit(settings.artifact_root)
    if root.scheme in ("azure", "wasbs", "wasb"):
        from azure.core.exceptions import ResourceNotFoundError
        from azure.storage.blob.aio import BlobServiceClient

        container = root.netloc.split("@", 1)[0]
        async with BlobServiceClient.from_connection_string(settings.azure_connection_string or "") as blobs:
            with contextlib.suppress(ResourceNotFoundError):
                await blobs.delete_container(container)
        done.append(f"deleted Azure container {container}")
    else:
        path = urllib.parse.unquote(root.path) if root.scheme == "file" else settings.artifact_root
        shutil.rmtree(path, ignore_errors=True)
        done.append(f"deleted directory {path}")
    if queues:
        import aio_pika

        from common.transport.amqp import dlq_name, events_queue

        names = [events_queue(settings.queue_prefix, p) for p in range(settings.partitions)]
        connection = await aio_pika.connect(settings.amqp_url, timeout=10)
        async with connection:
            for name in [*names, dlq_name(settings.queue_prefix)]:
                channel = await connection.channel()
                with contextlib.suppress(Exception):
                    await channel.queue_delete(name)
        done.append(f"deleted queues {settings.queue_prefix}.*")
    return done


# --- serve --------------------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def router_config(listen: int, ingest: int, query: int, prefix: Path) -> str:
    """The shipped router snippet, filled in the way the nginx image's envsubst does."""
    snippet = ROUTER_TEMPLATE.read_text()
    for name, value in (("GENESIS_LISTEN", f"127.0.0.1:{listen}"),
                        ("GENESIS_INGEST_SERVERS", f"server 127.0.0.1:{ingest};"),
                        ("GENESIS_QUERY_SERVERS", f"server 127.0.0.1:{query};")):
        snippet = snippet.replace("${" + name + "}", value)
    temp = "".join(f"    {d}_temp_path {prefix}/{d};\n" for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"worker_processes 1;\nerror_log {prefix}/error.log warn;\nevents {{ worker_connections 1024; }}\n"
            f"http {{\n    access_log off;\n{temp}{snippet}\n}}\n")


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def serve(workdir: Path, uri_file: Path, timeout_s: float = 120) -> int:
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if nginx is None:
        print("dr_drill serve: nginx is not installed (the router runs the shipped nginx config)", file=sys.stderr)
        return 1
    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o755)  # nginx workers (another user when run as root) read their temp dirs here
    ports = {tier: _free_port() for tier in ("writer", "ingest", "query", "router")}
    procs: dict[str, subprocess.Popen] = {}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    stop = False

    def on_signal(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        for tier in ("writer", "ingest", "query"):
            log = open(workdir / f"{tier}.log", "ab")  # noqa: SIM115 - the child keeps it
            procs[tier] = subprocess.Popen([sys.executable, "-m", "genesis_flow.cli", tier, "--port", str(ports[tier])],
                                           env=env, stdout=log, stderr=subprocess.STDOUT)
        conf = workdir / "nginx.conf"
        conf.write_text(router_config(ports["router"], ports["ingest"], ports["query"], workdir))
        procs["router"] = subprocess.Popen(
            [nginx, "-p", f"{workdir}/", "-c", str(conf), "-e", str(workdir / "error.log"),
             "-g", f"daemon off; pid {workdir}/nginx.pid;"],
            stdout=open(workdir / "router.log", "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115
        deadline = time.monotonic() + timeout_s
        urls = [f"http://127.0.0.1:{ports[t]}/ready" for t in ("writer", "ingest", "query")]
        urls.append(f"http://127.0.0.1:{ports['router']}/health")
        while not all(_ready(u) for u in urls):
            dead = [t for t, p in procs.items() if p.poll() is not None]
            if dead or stop or time.monotonic() > deadline:
                print(f"dr_drill serve: tiers not ready (exited: {dead}); logs in {workdir}", file=sys.stderr)
                return 1
            time.sleep(0.3)
        uri = f"http://127.0.0.1:{ports['router']}"
        tmp = uri_file.with_suffix(".tmp")
        tmp.write_text(uri + "\n")
        tmp.replace(uri_file)
        print(f"dr_drill serve: writer, ingest, query and router ready at {uri}", flush=True)
        while not stop:
            if any(p.poll() is not None for p in procs.values()):
                print(f"dr_drill serve: a tier exited; logs in {workdir}", file=sys.stderr)
                return 1
            time.sleep(0.5)
        return 0
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


# --- compare ------------------------------------------------------------------------------------


def _all_runs(client: Any, experiment_ids: list[str]) -> list[Any]:
    from mlflow.entities import ViewType

    runs: list[Any] = []
    for i in range(0, len(experiment_ids), 100):
        token = None
        while True:
            page = client.search_runs(experiment_ids[i:i + 100], run_view_type=ViewType.ALL, max_results=50000,
                                      page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                break
    return runs


def _all_pages(search: Any, **kwargs: Any) -> list[Any]:
    items: list[Any] = []
    token = None
    while True:
        page = search(max_results=1000, page_token=token, **kwargs)
        items.extend(page)
        token = page.token
        if not token:
            return items


def _listed_files(client: Any, run_id: str, path: str | None = None) -> list[tuple[str, int]]:
    files: list[tuple[str, int]] = []
    for info in client.list_artifacts(run_id, path):
        if info.is_dir:
            files.extend(_listed_files(client, run_id, info.path))
        else:
            files.append((info.path, info.file_size or 0))
    return files


def _expect_equal(got: Any, expected: Any) -> str:
    if got != expected:
        raise AssertionError(f"restored {got!r} != backup {expected!r}")
    return f"{got}"


def compare(uri: str, backup_dir: Path, download_limit_bytes: int) -> Report:
    """Check a running deployment against a backup's manifest through the stock client."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    manifest = read_manifest(backup_dir.resolve())
    counts = {name: c["documents"] for name, c in manifest["database"]["collections"].items()}
    client = MlflowClient(tracking_uri=uri)
    report = Report(uri)
    experiments = _all_pages(client.search_experiments, view_type=ViewType.ALL)
    report.check("experiments (incl. deleted) as in the backup",
                 lambda: _expect_equal(len(experiments), counts.get("experiments", 0)))
    runs = _all_runs(client, [e.experiment_id for e in experiments])
    report.check("runs (incl. deleted) as in the backup", lambda: _expect_equal(len(runs), counts.get("runs", 0)))
    report.check("registered models as in the backup", lambda: _expect_equal(
        len(_all_pages(client.search_registered_models)), counts.get("registered_models", 0)))
    report.check("model versions as in the backup", lambda: _expect_equal(
        len(_all_pages(client.search_model_versions)), counts.get("model_versions", 0)))

    def history() -> str:
        digest = HistoryDigest()
        for run in runs:
            for key in run.data.metrics:
                for m in client.get_metric_history(run.info.run_id, key):
                    digest.add(run.info.run_id, key, m.step, m.timestamp, m.value)
        return _expect_equal(digest.summary(), manifest["database"]["metric_history"])

    report.check("metric history digest (get-history of every run and key) as in the backup", history)

    expected: dict[tuple[str, str], dict[str, Any]] = {}
    run_ids = {r.info.run_id for r in runs}
    for entry in manifest["artifacts"]["files"]:
        match = RUN_ARTIFACTS.match(entry["path"])
        if match and match["run"] in run_ids:
            expected[(match["run"], match["rel"])] = entry

    def listings() -> str:
        listed = {(run_id, path): size for run_id in sorted(run_ids) for path, size in _listed_files(client, run_id)}
        _expect_equal(listed, {k: e["size"] for k, e in expected.items()})
        return f"{len(listed)} files in {len(run_ids)} runs"

    report.check("run artifacts listed with the backup's sizes", listings)

    def downloads() -> str:
        budget, checked = download_limit_bytes, 0
        with tempfile.TemporaryDirectory() as tmp:
            for (run_id, rel), entry in sorted(expected.items(), key=lambda kv: kv[1]["size"]):
                if entry["size"] > budget:
                    break
                local = Path(client.download_artifacts(run_id, rel, tmp))
                sha = hashlib.sha256(local.read_bytes()).hexdigest()
                if sha != entry["sha256"]:
                    raise AssertionError(f"{run_id}/{rel}: downloaded sha256 {sha} != backup {entry['sha256']}")
                budget -= entry["size"]
                checked += 1
                local.unlink()
        return f"{checked} of {len(expected)} files downloaded, SHA-256 as in the backup"

    report.check("run artifacts download with the backup's SHA-256", downloads)
    return report


# --- command line -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("destroy", "cleanup"):
        p = sub.add_parser(name)
        p.add_argument("--yes", action="store_true", help="really: this deletes the database and the artifacts")
    p = sub.add_parser("serve")
    p.add_argument("--uri-file", required=True, type=Path)
    p.add_argument("--workdir", type=Path, default=None)
    p = sub.add_parser("compare")
    p.add_argument("--tracking-uri", required=True)
    p.add_argument("--backup", required=True, type=Path)
    p.add_argument("--download-limit-mb", type=float, default=100)
    p.add_argument("--output")
    args = parser.parse_args(argv)
    settings = load_settings("dr-drill")
    if args.command in ("destroy", "cleanup"):
        if not args.yes:
            print(f"dr_drill {args.command}: pass --yes to delete database {settings.mongodb_db} "
                  f"and artifacts {settings.artifact_root}", file=sys.stderr)
            return 2
        for line in asyncio.run(destroy(settings, queues=args.command == "cleanup")):
            print(f"dr_drill {args.command}: {line}")
        return 0
    if args.command == "serve":
        return serve(args.workdir or Path(tempfile.mkdtemp(prefix="gf-dr-")), args.uri_file)
    report = compare(args.tracking_uri, args.backup, int(args.download_limit_mb * 1024 * 1024))
    report.print_table()
    report.write(args.output, backup=str(args.backup))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
