"""Validate a running Genesis-Flow deployment from the outside (the production checklist's
"Deployment Validation Tool"):

    python tools/deployment/validate_deployment.py --tracking-uri https://your-domain.com \\
        --artifact-root azure://your-container/artifacts --output deployment-validation.json

Checks liveness, readiness, metrics, the MLflow version endpoints, a write/read round trip with
the stock client (read-your-writes), an artifact upload and download, search, and that bad input
and escaping artifact paths are refused. Everything it creates lives in one experiment that it
deletes at the end. Exit status 0 when every check passed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools.checks import Report  # noqa: E402


def expect(status: int, resp: requests.Response) -> str:
    if resp.status_code != status:
        raise AssertionError(f"HTTP {resp.status_code} (expected {status}): {resp.text[:200]}")
    return resp.text[:200]


def validate(uri: str, artifact_root: str | None) -> Report:
    from mlflow import MlflowClient

    uri = uri.rstrip("/")
    report = Report(uri)
    get = lambda path: requests.get(uri + path, timeout=30)  # noqa: E731
    report.check("GET /health", lambda: expect(200, get("/health")))
    report.check("GET /ready (MongoDB, queue, artifact store)", lambda: expect(200, get("/ready")))
    report.check("GET /metrics (Prometheus)", lambda: "genesis_http_requests_total" in get("/metrics").text or 1 / 0)
    report.check("GET /version", lambda: expect(200, get("/version")))
    report.check("GET /api/3.0/mlflow/server-info", lambda: expect(200, get("/api/3.0/mlflow/server-info")))
    if artifact_root:
        report.check("artifact root is azure:// or file://",
                     lambda: artifact_root.startswith(("azure://", "file:")) or 1 / 0)

    client = MlflowClient(tracking_uri=uri)
    name = f"genesis-flow-validation-{uuid.uuid4().hex[:8]}"
    exp_id = report.check("create experiment", lambda: client.create_experiment(name))
    if exp_id is None:
        return report
    try:
        run_id = report.check("create run", lambda: client.create_run(exp_id).info.run_id)
        if run_id is not None:
            def round_trip() -> str:
                client.log_param(run_id, "p", "1")
                client.log_metric(run_id, "m", 0.5, step=1)
                client.set_tag(run_id, "t", "v")
                data = client.get_run(run_id).data  # read right after the acknowledged writes
                assert (data.params, data.metrics, data.tags.get("t")) == ({"p": "1"}, {"m": 0.5}, "v"), data
                return "read-your-writes ok"

            report.check("log param/metric/tag and read them back", round_trip)

            def artifacts() -> str:
                with tempfile.TemporaryDirectory() as tmp:
                    f = Path(tmp) / "probe.txt"
                    f.write_text("genesis-flow")
                    client.log_artifact(run_id, str(f), "validation")
                    out = Path(client.download_artifacts(run_id, "validation/probe.txt", tmp + "/dl"))
                    assert out.read_text() == "genesis-flow"
                return "upload and download ok"

            report.check("artifact upload and download", artifacts)
            report.check("search runs with a filter", lambda: len(client.search_runs([exp_id], "metrics.m > 0.1")) == 1 or 1 / 0)
            report.check("path traversal is refused", lambda: expect(
                400, get(f"/get-artifact?path=../../../etc/passwd&run_uuid={run_id}")))
        report.check("bad input is refused", lambda: expect(400, requests.post(
            uri + "/api/2.0/mlflow/experiments/create", json={"key": "../../../etc/passwd"}, timeout=30)))
    finally:
        report.check("clean up (delete the validation experiment)", lambda: client.delete_experiment(exp_id))
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--artifact-root")
    parser.add_argument("--output")
    args = parser.parse_args()
    report = validate(args.tracking_uri, args.artifact_root)
    report.print_table()
    report.write(args.output, artifact_root=args.artifact_root)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
