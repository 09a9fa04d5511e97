"""--analyze-only, --dry-run, --experiments and --since, and what cannot be carried over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from genesis_flow.migrate import plan as pl
from genesis_flow.migrate.main import run as run_migration
from tests.stack import REPO, Stack

pytestmark = pytest.mark.integration


def small_store(root: Path) -> tuple[str, dict[str, str]]:
    uri = f"file://{root}/mlruns"
    client = MlflowClient(tracking_uri=uri)
    old = client.create_experiment("old")
    new = client.create_experiment("new")
    ids = {"old_exp": old, "new_exp": new}
    r = client.create_run(old, start_time=1_500_000_000_000)
    # an exact duplicate point: the file store keeps both, MLflow's SQL store and Genesis-Flow one
    client.log_batch(r.info.run_id, metrics=[Metric("loss", 1.0, 1000, 0), Metric("loss", 1.0, 1000, 0),
                                             Metric("loss", 0.5, 2000, 1)])
    client.set_terminated(r.info.run_id, end_time=1_500_000_100_000)
    ids["old_run"] = r.info.run_id
    r = client.create_run(new)
    client.log_metric(r.info.run_id, "acc", 0.9)
    client.log_text(r.info.run_id, "hello", "notes/hello.txt")
    ids["new_run"] = r.info.run_id
    # a tag value longer than MLflow and Genesis-Flow accept (written by some older tool)
    bad = client.create_run(new, run_name="bad")
    client.set_terminated(bad.info.run_id)
    (root / "mlruns" / new / bad.info.run_id / "tags" / "notes").write_text("n" * 9000)
    ids["bad_run"] = bad.info.run_id
    return uri, ids


def test_analyze_only_reports_counts_problems_and_an_estimate_and_writes_nothing(tmp_path: Path) -> None:
    uri, ids = small_store(tmp_path)
    out = tmp_path / "analysis.json"
    proc = subprocess.run([sys.executable, "-m", "genesis_flow.cli", "migrate", "--source-uri", uri,
                           "--analyze-only", "--quiet", "--output", str(out)], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False,
                          env={k: v for k, v in os.environ.items() if k != "MLFLOW_ALLOW_FILE_STORE"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())["analysis"]
    assert json.loads(proc.stdout)["analysis"]["counts"] == report["counts"]
    counts = report["counts"]
    assert counts["experiments"] == 3 and counts["runs"] == 3
    assert counts["metric_points"] == 3 and counts["metric_points_exact_duplicates"] == 1
    assert counts["artifact_files"] == 1 and counts["artifact_bytes"] == 5
    assert report["largest_runs"][0]["run_id"] == ids["old_run"]
    whys = {(i["entity"], i["what"]): i["why"] for i in report["cannot_carry"]}
    assert "8000" in whys[(f"run {ids['bad_run']}", "tag 'notes'")]
    assert "duplicate" in whys[(f"run {ids['old_run']}", "metric 'loss'")]
    assert report["estimate"]["seconds"] > 0


def test_dry_run_experiments_and_since(tmp_path: Path, shared_target: Stack, monkeypatch) -> None:
    uri, ids = small_store(tmp_path)
    target = shared_target.url("uri")

    def migrate(**kw) -> tuple[dict, int]:
        return run_migration(pl.Options(source_uri=uri, target_uri=target, progress=False, registry=False, **kw))

    report, code = migrate(dry_run=True)
    assert code == 0 and report["migration"]["would_copy"]["points"] == 3
    client = MlflowClient(tracking_uri=target)
    assert client.get_experiment_by_name("old") is None  # nothing written

    monkeypatch.setattr(pl, "IMPORT_BODY_LIMIT", 0)  # params and tags by log-batch, as for huge runs
    report, code = migrate(experiments=["old"], verify=True)
    assert code == 0, report
    assert report["migration"]["runs"] == 1 and report["migration"]["points_sent"] == 2  # the duplicate once
    assert client.get_experiment_by_name("new") is None

    # --since leaves out the 2017 run; the bad run cannot be carried and says so (exit 1)
    report, code = migrate(experiments=["new", ids["old_exp"]], since_ms=pl.parse_since("2020-01-01"))
    assert code == 1
    assert report["migration"]["runs"] == 2
    assert [e for e in report["migration"]["errors"] if ids["bad_run"] in e and "8000" in e]
    assert client.get_run(ids["new_run"]).data.metrics == {"acc": 0.9}


def test_an_unreachable_target_fails_fast_with_exit_2(tmp_path: Path) -> None:
    uri, _ = small_store(tmp_path)
    report, code = run_migration(pl.Options(source_uri=uri, target_uri="http://127.0.0.1:1", progress=False))
    assert code == 2 and "does not answer" in report["error"]
