"""The README's "Run it", as a new user does it: `pip install '.[standalone]'` into a brand-new
venv with the interpreter's own pip, then the installed CLI started by its full path with a
bare PATH (a systemd unit, a Dockerfile CMD, pipx), and the stock client logging to it."""

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

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BARE_PATH = "/usr/bin:/bin"


def _fresh_venv_with_standalone(root: Path) -> Path:
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_ROOT_USER_ACTION="ignore")
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"{REPO}[standalone]"],
                         env=env, cwd=root, capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
    return venv


def _wait_ready(proc: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if requests.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise AssertionError(log.read_text()[-3000:])


def test_installed_cli_by_full_path_with_bare_path_serves_the_stock_client(tmp_path: Path) -> None:
    venv = _fresh_venv_with_standalone(tmp_path)
    cli = venv / "bin" / "genesis-flow"
    assert cli.is_file()
    port, log = free_port(), tmp_path / "standalone.log"
    # A home without ~/.cargo: the Python server must be found beside the venv's interpreter.
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": BARE_PATH, "HOME": str(home), "LANG": "C.UTF-8"}
    with open(log, "ab") as out:
        proc = subprocess.Popen([str(cli), "standalone", "--port", str(port), "--data-dir", str(tmp_path / "data")],
                                cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_ready(proc, port, log)
        client = MlflowClient(tracking_uri=f"http://127.0.0.1:{port}")
        experiment_id = client.create_experiment(f"fresh-{uuid.uuid4().hex[:6]}")
        run_id = client.create_run(experiment_id).info.run_id
        client.log_param(run_id, "lr", "0.01")
        for step in range(5):
            client.log_metric(run_id, "loss", 1 / (step + 1), step=step)
        client.set_terminated(run_id)

        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert run.data.params == {"lr": "0.01"}
        assert run.data.metrics == {"loss": 0.2}
        assert [m.step for m in client.get_metric_history(run_id, "loss")] == [0, 1, 2, 3, 4]
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert f"embedded MongoDB server secantusd-py ({venv / 'bin' / 'secantusd-py'})" in text, text[-3000:]
