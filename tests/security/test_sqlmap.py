"""The seed's probe as written: sqlmap (PyPI) in batch mode against experiments/search and
runs/search finds nothing injectable, and the server never answers 500 to its payloads."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.services import Services
from tests.stack import Stack, make_stack

pytestmark = pytest.mark.integration

SQLMAP = shutil.which("sqlmap") or str(Path(sys.executable).parent / "sqlmap")


@pytest.fixture(scope="module")
def probed(services: Services) -> Iterator[Stack]:
    if not Path(SQLMAP).exists():
        pytest.skip("sqlmap is not installed (pip install sqlmap; it is in the dev extra)")
    stack = make_stack(services, "sqlmap")
    try:
        stack.start("standalone")
        yield stack
    finally:
        stack.stop()


def _sqlmap(tmp_path: Path, url: str, *args: str) -> str:
    result = subprocess.run([SQLMAP, "-u", url, *args, "--batch", "--level=2", "--risk=1", "--threads=4",
                             "--disable-coloring", f"--output-dir={tmp_path}"],
                            capture_output=True, text=True, timeout=600)
    return result.stdout + result.stderr


@pytest.mark.parametrize("target", ["experiments-get", "experiments-post", "runs-post"])
def test_sqlmap_finds_nothing_injectable(probed: Stack, tmp_path: Path, target: str) -> None:
    api = probed.url("standalone") + "/api/2.0/mlflow"
    before = requests.post(api + "/experiments/search", json={"max_results": 1000}, timeout=10).json()
    if target == "experiments-get":
        out = _sqlmap(tmp_path, api + "/experiments/search?filter=name%20%3D%20%27x%27&max_results=10&order_by=name")
    elif target == "experiments-post":
        out = _sqlmap(tmp_path, api + "/experiments/search", "--data",
                      json.dumps({"filter": "name LIKE 'x%'", "max_results": 10, "order_by": ["name"]}))
    else:
        out = _sqlmap(tmp_path, api + "/runs/search", "--data", json.dumps(
            {"experiment_ids": ["0"], "filter": "params.a = 'x'", "max_results": 10, "order_by": ["metrics.m DESC"]}))
    assert "all tested parameters do not appear to be injectable" in out, out[-3000:]
    assert "is vulnerable" not in out and "appears to be injectable" not in out
    assert "500 (Internal Server Error)" not in out
    after = requests.post(api + "/experiments/search", json={"max_results": 1000}, timeout=10).json()
    assert after == before
