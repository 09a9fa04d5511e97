"""The checklist's operator tools run green against a real deployment (both ways)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stack import REPO, Stack

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("tool", ["tools/deployment/validate_deployment.py", "tools/compatibility/test_compatibility.py"])
def test_operator_tool_passes(tracking_stack: Stack, tool: str, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    done = subprocess.run([sys.executable, tool, "--tracking-uri", tracking_stack.url("uri"), "--output", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    report = json.loads(out.read_text())
    failed = [r for r in report["results"] if not r["ok"]]
    assert done.returncode == 0 and report["ok"] and not failed, (failed, done.stdout[-2000:])
    assert len(report["results"]) >= 9
