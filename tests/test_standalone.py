"""`genesis-flow standalone` as a newcomer runs it: embedded storage under --data-dir, Ctrl-C
stops everything cleanly, and the data is there after a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient

from tests.services import free_port
from tests.stack import REPO

pytestmark = pytest.mark.integration


def _start(data_dir: Path, port: int, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENESIS_FLOW_")}
    proc = subprocess.Popen([sys.executable, "-m", "genesis_flow.cli", "standalone", "--port", str(port),
                             "--data-dir", str(data_dir)], cwd=REPO, env=env,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if requests.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        time.sleep(0.3)
    proc.kill()
    raise AssertionError(log.read_text()[-3000:])


def _children_alive(data_dir: Path) -> list[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "secantusd" in line and str(data_dir) in line]


def test_standalone_embedded_storage_survives_restart_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir, port, log = tmp_path / "genesis-data", free_port(), tmp_path / "standalone.log"
    proc = _start(data_dir, port, log)
    try:
        client = MlflowClient(tracking_uri=f"http://127.0.0.1:{port}")
        name = f"newcomer-{uuid.uuid4().hex[:6]}"
        run_id = client.create_run(client.create_experiment(name)).info.run_id
        client.log_metric(run_id, "loss", 0.25, step=3)
        (tmp_path / "notes.txt").write_text("kept")
        client.log_artifact(run_id, str(tmp_path / "notes.txt"))
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    assert _children_alive(data_dir) == []
    assert (data_dir / "mongodb").is_dir() and any((data_dir / "artifacts").rglob("notes.txt"))

    proc = _start(data_dir, port, log)
    try:
        client = MlflowClient(tracking_uri=f"http://127.0.0.1:{port}")
        run = client.get_run(run_id)
        assert run.data.metrics == {"loss": 0.25}
        assert client.get_experiment_by_name(name).experiment_id == run.info.experiment_id
        assert [f.path for f in client.list_artifacts(run_id)] == ["notes.txt"]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
