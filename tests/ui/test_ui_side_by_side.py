"""The web UI's REST routes side by side: the same request sequence against a stock `mlflow server`
and against Genesis-Flow (both ways of running it), compared field by field after normalisation.

The sequence lives in tests/ui/ui_sequence.py; a transcript of the reference's answers comes from
`python -m tests.ui.ui_sequence <url>`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sequences import reference_server
from tests.stack import Stack
from tests.ui.ui_sequence import compare, run_ui_sequence

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Step names whose comparison is skipped, each with a one-line reason. Keep it short: every entry
# is a place where the UI could see Genesis-Flow answer differently from MLflow.
DELIBERATE_DIFFERENCES: dict[str, str] = {
    'bulk.nan_and_infinity': 'the reference prints a bare NaN token (invalid JSON); we send the string "NaN" as every other endpoint does',
    'bulk.max_results_not_int': 'the reference answers with a 500 (int() of the text); we answer 400',
    'bulk.max_results_float': 'as bulk.max_results_not_int',
    'promptlab.artifacts.list': 'the reference also saves a model/ directory in MLflow\'s model format (needs the mlflow package); we log the run, params, tags and evaluation table',
    'promptlab.artifacts.list_model': 'as promptlab.artifacts.list',
    'promptlab.with_tags': "the reference answers tags with a 500 ('dict' object has no attribute 'key'); we accept them",
    'promptlab.prompt_parameters_not_list': 'the reference answers with a 500 HTML page; we read what we can',
    'promptlab.no_body': "the reference answers Flask's HTML 400 page; ours is a JSON 400 with MLflow's message",
    'get_artifact.no_path': "the reference answers Flask's HTML 400 page; ours is a JSON 400",
    'get_artifact.empty_path': "the directory message names the run's root without the reference's trailing '/'",
    'get_artifact.no_run': "the reference looks up run 'None' (404); we refuse the missing run_id (400)",
    'get_artifact.ajax_path': 'the UI builds /ajax-api/2.0/mlflow/get-artifact for evaluation artifacts; the reference 404s, we serve it',
    'mv_artifact.no_path': "the reference answers Flask's HTML 400 page; ours is a JSON 400",
    'mv_artifact.no_version': 'the reference answers with a 500 (int(None)); we answer 400',
    'server.health': "our /health is the tier's JSON liveness answer, as operators' probes read it",
    'server.info.ajax': "store_type is MongoStore (the UI's SqlStore-only features stay off) and there is no AI gateway",
    'server.info.api': 'as server.info.ajax',
    'tracking.experiments.search_no_max_results': 'the reference refuses a GET search without max_results (proto default 0); we use the default page size',
    'v3.datasets.search': 'GenAI evaluation datasets are not implemented; bare 404',
    'v3.scorers.list': 'GenAI scorers are not implemented; bare 404',
    'v3.label_schemas.list': 'GenAI label schemas are not implemented; bare 404',
    'v3.gateway.endpoints.list': 'no AI gateway; bare 404',
    'v3.workspaces': 'workspaces are not implemented; bare 404 (the reference answers a 503 text page when they are off)',
    'bulk.post': 'distributed only: nginx sends a wrong-method request to ingest, which has no such route (404, not 405)',
    'interval.post': 'as bulk.post',
    'get_artifact.post': 'as bulk.post',
    'lm_artifact.post': 'as bulk.post',
    'trace_artifact.v2.post': 'as bulk.post',
    'trace_artifact.v3.post': 'as bulk.post',
    'upload.get': 'distributed only: a GET goes to query, which has no upload route (404, not 405)',
}


@pytest.fixture(scope="module")
def reference_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A stock `mlflow server` on SQLite serving artifacts from a local directory, started once for
    the module. No --default-artifact-root: experiments get `mlflow-artifacts:/<id>` locations, as
    on Genesis-Flow. Telemetry off, so /ui-telemetry answers without going to the network."""
    tmp = tmp_path_factory.mktemp("mlflow-ui-reference")
    with reference_server(tmp, ["--artifacts-destination", str(tmp / "artifacts")],
                          {"MLFLOW_DISABLE_TELEMETRY": "true"}) as url:
        yield url  # the directory stays for pytest's tmp retention: its server.log helps on failure


def test_ui_routes_match_reference(reference_url: str, tracking_stack: Stack) -> None:
    ref = run_ui_sequence(reference_url)
    ours = run_ui_sequence(tracking_stack.url("uri"))
    diffs = compare(ref, ours, skip=DELIBERATE_DIFFERENCES)
    assert diffs == [], f"{len(diffs)} differences from the reference:\n" + "\n".join(diffs)
