"""The REST routes the stock MLflow web UI calls, as data: one request sequence, run against any server.

The same sequence runs against a stock `mlflow server` 3.17 (the reference) and against Genesis-Flow;
`compare` lists every field where the two disagree. It covers the routes mlflow/server/__init__.py
registers by hand (not through the protos), which the UI and MLflow's own REST tests call:

    GET  /ajax-api/2.0/mlflow/metrics/get-history-bulk            (run_id repeated, metric_key, max_results)
    GET  /ajax-api/2.0/mlflow/metrics/get-history-bulk-interval   (run_ids, metric_key, start_step,
                                                                   end_step, max_results)
    POST /ajax-api/2.0/mlflow/experiments/search-datasets
    POST /ajax-api/2.0/mlflow/runs/create-promptlab-run
    POST /ajax-api/2.0/mlflow/upload-artifact?run_uuid=&path=      (raw body)
    GET|POST /ajax-api/2.0/mlflow/gateway-proxy
    GET  /ajax-api/2.0/mlflow/logged-models/<model_id>/artifacts/files?artifact_file_path=
    GET  /get-artifact?run_uuid=&path=  and  /model-versions/get-artifact?name=&version=&path=
    GET  /ajax-api/{2.0,3.0}/mlflow/get-trace-artifact?request_id=
    GET|POST /ajax-api/3.0/mlflow/ui-telemetry
    GET  /health, /version, /{api,ajax-api}/3.0/mlflow/server-info (/health and server-info are
                                                                   FastAPI routes in 3.17)

plus the proto routes the UI reaches under /ajax-api/2.0/mlflow/ (experiments/runs/logged-models/
model-versions search, runs/get, get-history, artifacts/list, logged-models/<id>/artifacts/directories)
and a sample of what the reference serves under /ajax-api/3.0/mlflow/, and routes the UI calls that
the reference does not serve (`/ajax-api/2.0/mlflow/users/current` without auth,
`/ajax-api/2.0/mlflow/get-artifact`): those answer a bare 404.

Requests go out the way the UI's fetch helpers send them: `Content-Type: application/json` on every
request, GET included, JSON bodies on DELETE. Artifact uploads through the artifact proxy go out the
way the stock client's HttpArtifactRepository sends them (PUT, raw body, the file's guessed MIME type).

A step is a `tests.sequences.Step`. Strings may hold placeholders `{u}` (a per-execution suffix, so
the sequence can run again and again against one server) and the ids `CAPTURES` takes from earlier
responses; `{run_path}`/`{model_path}` are derived: the run's artifact URI and the logged model's
artifact location without their `mlflow-artifacts:/` scheme, i.e. the path the stock client PUTs
under /api/2.0/mlflow-artifacts/artifacts/.

Run it by hand:  python -m tests.ui.ui_sequence http://127.0.0.1:5000 > transcript.txt
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from typing import Any

from tests.sequences import Normaliser, Result, Sequence, Step, compare as _compare, format_transcript, run_sequence

API = "/api/2.0/mlflow"
AJAX = "/ajax-api/2.0/mlflow"
AJAX3 = "/ajax-api/3.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"

BULK = f"{AJAX}/metrics/get-history-bulk"
INTERVAL = f"{AJAX}/metrics/get-history-bulk-interval"

T0 = 1_700_000_000_000
NO_SUCH_RUN = "0123456789abcdef0123456789abcdef"
NO_SUCH_MODEL = "m-0123456789abcdef0123456789abcdef"
NO_SUCH_TRACE = "tr-0123456789abcdef0123456789abcdef"
# 100 made-up run ids: with a real one they are one more than either bulk endpoint takes.
FAKE_RUNS = [f"{i:032x}" for i in range(1, 101)]

MLMODEL = "artifact_path: model\nflavors:\n  python_function:\n    loader_module: mlflow.pyfunc.model\n"
NOTES = "notes for the ui test\n"
REPORT_HTML = "<html><body><script>alert(1)</script>report</body></html>\n"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))  # not UTF-8: compared by digest
TABLE_JSON = '{"columns": ["a", "b"], "data": [[1, 2], [3, 4]]}'

JSON = {"Content-Type": "application/json"}
DOWNLOAD_HEADERS = ("content-type", "content-disposition", "x-content-type-options")


def _s(name: str, method: str, path: str, *, query: Any = None, json: Any = None, data: Any = None,
       headers: Mapping[str, str | None] | None = None, check_headers: tuple[str, ...] = ()) -> Step:
    return Step(name, method, path, query, json, data, headers, check_headers)


def _put(name: str, path: str, content: str | bytes, mime: str) -> Step:
    """An upload as the stock client's HttpArtifactRepository.log_artifact sends it."""
    return _s(name, "PUT", f"{ARTIFACTS}/{path}", data=content, headers={"Content-Type": mime})


def _tags(**kv: str) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in kv.items()]


def _metrics() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run A: `loss` at steps 0-29, `acc` every third step, `lr` five values all at step 0,
    `weird` with NaN and +-Infinity (sent as the strings protobuf JSON uses). Run B: `loss` at
    steps 0-34 (a longer history than A's) with other values and timestamps. Both: `same`."""
    a: list[dict[str, Any]] = []
    for s in range(30):
        a.append({"key": "loss", "value": 1.0 / (s + 1), "timestamp": T0 + s * 1000, "step": s})
    for s in range(0, 30, 3):
        a.append({"key": "acc", "value": s / 30, "timestamp": T0 + s * 1000 + 1, "step": s})
    for i in range(5):
        a.append({"key": "lr", "value": 0.1 / (i + 1), "timestamp": T0 + i * 10, "step": 0})
    for s, v in enumerate([1.0, "NaN", "Infinity", "-Infinity", 2.0]):
        a.append({"key": "weird", "value": v, "timestamp": T0 + s * 1000 + 2, "step": s})
    b = [{"key": "loss", "value": 2.0 / (s + 1), "timestamp": T0 + 500 + s * 1000, "step": s} for s in range(35)]
    # `same`: one history logged to both runs, for results whose order follows the run ids.
    same = [{"key": "same", "value": s * 1.5, "timestamp": T0 + s * 1000 + 3, "step": s} for s in range(30)]
    return a + same, b + same


def _dataset(name: str, digest: str) -> dict[str, str]:
    return {"name": name, "digest": digest, "source_type": "local",
            "source": '{"uri": "/data/' + name + '.csv"}',
            "schema": '{"mlflow_colspec": [{"type": "double", "name": "x"}]}',
            "profile": '{"num_rows": 150}'}


def _ctx_tag(context: str) -> list[dict[str, str]]:
    return _tags(**{"mlflow.data.context": context})


# ---- setup --------------------------------------------------------------------------------------

def _setup_steps() -> list[Step]:
    metrics_a, metrics_b = _metrics()
    return [
        # No artifact_location: both servers give mlflow-artifacts:/<experiment_id>, so run artifact
        # URIs are mlflow-artifacts:/<experiment_id>/<run_id>/artifacts on both.
        _s("setup.experiment.create", "POST", f"{API}/experiments/create",
           json={"name": "ui-{u}", "tags": _tags(team="ml")}),
        _s("setup.experiment2.create", "POST", f"{API}/experiments/create", json={"name": "ui-{u}-second"}),
        _s("setup.gateway_experiment.create", "POST", f"{API}/experiments/create",
           json={"name": "ui-{u}-gateway", "tags": _tags(**{"mlflow.experiment.isGateway": "true"})}),
        _s("setup.run_a.create", "POST", f"{API}/runs/create",
           json={"experiment_id": "{experiment_id}", "run_name": "ui-run-a", "start_time": T0,
                 "tags": _tags(**{"mlflow.runName": "ui-run-a"})}),
        _s("setup.run_b.create", "POST", f"{API}/runs/create",
           json={"experiment_id": "{experiment_id}", "run_name": "ui-run-b", "start_time": T0 + 1000,
                 "tags": _tags(**{"mlflow.runName": "ui-run-b"})}),
        _s("setup.run_c.create", "POST", f"{API}/runs/create",
           json={"experiment_id": "{experiment_id_2}", "run_name": "ui-run-c", "start_time": T0 + 2000}),
        _s("setup.run_a.log_batch", "POST", f"{API}/runs/log-batch",
           json={"run_id": "{run_id}", "metrics": metrics_a,
                 "params": [{"key": "lr", "value": "0.01"}, {"key": "optimizer", "value": "adam"},
                            {"key": "epochs", "value": "30"}],
                 "tags": _tags(team="ml", **{"mlflow.note.content": "a note"})}),
        _s("setup.run_b.log_batch", "POST", f"{API}/runs/log-batch",
           json={"run_id": "{run_id_2}", "metrics": metrics_b,
                 "params": [{"key": "lr", "value": "0.02"}, {"key": "optimizer", "value": "sgd"}]}),
        _s("setup.run_a.log_inputs", "POST", f"{API}/runs/log-inputs",
           json={"run_id": "{run_id}", "datasets": [
               {"tags": _ctx_tag("training"), "dataset": _dataset("iris-{u}", "d1g3st01")},
               {"tags": _ctx_tag("eval"), "dataset": _dataset("holdout-{u}", "d1g3st02")}]}),
        _s("setup.run_b.log_inputs", "POST", f"{API}/runs/log-inputs",
           json={"run_id": "{run_id_2}", "datasets": [
               {"tags": _ctx_tag("validation"), "dataset": _dataset("iris-{u}", "d1g3st01")},
               {"dataset": _dataset("nocontext-{u}", "d1g3st03")}]}),
        _s("setup.run_c.log_inputs", "POST", f"{API}/runs/log-inputs",
           json={"run_id": "{run_id_3}", "datasets": [
               {"tags": _ctx_tag("training"), "dataset": _dataset("other-{u}", "d1g3st04")}]}),
        # Run artifacts, uploaded through the artifact proxy the way the stock client does.
        _put("setup.run_a.put_notes", "{run_path}/notes.txt", NOTES, "text/plain"),
        _put("setup.run_a.put_png", "{run_path}/plots/curve.png", PNG, "image/png"),
        _put("setup.run_a.put_html", "{run_path}/report.html", REPORT_HTML, "text/html"),
        _put("setup.run_a.put_mlmodel", "{run_path}/model/MLmodel", MLMODEL, "text/plain"),
        # A logged model with two artifact files, finalized.
        _s("setup.logged_model.create", "POST", f"{API}/logged-models",
           json={"experiment_id": "{experiment_id}", "name": "ui-model", "source_run_id": "{run_id}",
                 "params": [{"key": "alpha", "value": "0.5"}], "tags": _tags(flavor="sklearn")}),
        _put("setup.logged_model.put_mlmodel", "{model_path}/MLmodel", MLMODEL, "text/plain"),
        _put("setup.logged_model.put_notes", "{model_path}/sub/notes.txt", NOTES, "text/plain"),
        _s("setup.logged_model.finalize", "PATCH", f"{API}/logged-models/{{model_id}}",
           json={"model_id": "{model_id}", "status": "LOGGED_MODEL_READY"}),
        # A registered model with a version from the run's artifacts and one from the logged model.
        _s("setup.registered_model.create", "POST", f"{API}/registered-models/create",
           json={"name": "ui-{u}-model", "tags": _tags(k="v")}),
        _s("setup.model_version.create_from_run", "POST", f"{API}/model-versions/create",
           json={"name": "ui-{u}-model", "source": "{artifact_uri}/model", "run_id": "{run_id}"}),
        _s("setup.model_version.create_from_logged_model", "POST", f"{API}/model-versions/create",
           json={"name": "ui-{u}-model", "source": "models:/{model_id}", "model_id": "{model_id}"}),
        _s("setup.run_a.finish", "POST", f"{API}/runs/update",
           json={"run_id": "{run_id}", "status": "FINISHED", "end_time": T0 + 60_000}),
    ]


# ---- metrics/get-history-bulk -------------------------------------------------------------------

def _bulk_steps() -> list[Step]:
    return [
        _s("bulk.one_run", "GET", BULK, query={"run_id": "{run_id}", "metric_key": "loss"}),
        # Results come sorted by run id, and run ids differ between the servers: see BY_RUN_ID.
        _s("bulk.two_runs", "GET", BULK, query={"run_id": ["{run_id_2}", "{run_id}"], "metric_key": "loss"}),
        _s("bulk.two_runs_same_history", "GET", BULK,
           query={"run_id": ["{run_id_2}", "{run_id}"], "metric_key": "same"}),
        _s("bulk.max_results_5", "GET", BULK,
           query={"run_id": ["{run_id}", "{run_id_2}"], "metric_key": "same", "max_results": "5"}),
        _s("bulk.max_results_40_cuts_second_run", "GET", BULK,
           query={"run_id": ["{run_id}", "{run_id_2}"], "metric_key": "same", "max_results": "40"}),
        _s("bulk.max_results_over_cap", "GET", BULK,
           query={"run_id": "{run_id}", "metric_key": "acc", "max_results": "30000"}),
        _s("bulk.same_step", "GET", BULK, query={"run_id": "{run_id}", "metric_key": "lr"}),
        _s("bulk.nan_and_infinity", "GET", BULK, query={"run_id": "{run_id}", "metric_key": "weird"}),
        _s("bulk.duplicate_run_id", "GET", BULK, query={"run_id": ["{run_id}", "{run_id}"], "metric_key": "acc"}),
        _s("bulk.unknown_key", "GET", BULK, query={"run_id": "{run_id}", "metric_key": "nope"}),
        _s("bulk.unknown_run", "GET", BULK, query={"run_id": NO_SUCH_RUN, "metric_key": "loss"}),
        _s("bulk.known_and_unknown_run", "GET", BULK, query={"run_id": ["{run_id}", NO_SUCH_RUN], "metric_key": "acc"}),
        _s("bulk.no_run_id", "GET", BULK, query={"metric_key": "loss"}),
        _s("bulk.run_uuid_instead", "GET", BULK, query={"run_uuid": "{run_id}", "metric_key": "loss"}),
        _s("bulk.no_metric_key", "GET", BULK, query={"run_id": "{run_id}"}),
        _s("bulk.empty_metric_key", "GET", BULK, query={"run_id": "{run_id}", "metric_key": ""}),
        _s("bulk.100_runs", "GET", BULK, query={"run_id": ["{run_id}", *FAKE_RUNS[:99]], "metric_key": "acc"}),
        _s("bulk.101_runs", "GET", BULK, query={"run_id": ["{run_id}", *FAKE_RUNS], "metric_key": "acc"}),
        _s("bulk.max_results_0", "GET", BULK, query={"run_id": "{run_id}", "metric_key": "acc", "max_results": "0"}),
        _s("bulk.max_results_negative", "GET", BULK,
           query={"run_id": "{run_id}", "metric_key": "acc", "max_results": "-1"}),
        _s("bulk.max_results_not_int", "GET", BULK,
           query={"run_id": "{run_id}", "metric_key": "acc", "max_results": "abc"}),
        _s("bulk.max_results_float", "GET", BULK,
           query={"run_id": "{run_id}", "metric_key": "acc", "max_results": "2.5"}),
        _s("bulk.post", "POST", BULK, json={"run_id": ["{run_id}"], "metric_key": "loss"}),
    ]


# ---- metrics/get-history-bulk-interval ----------------------------------------------------------

def _interval_steps() -> list[Step]:
    def q(**kw: Any) -> dict[str, Any]:
        return {"run_ids": ["{run_id}", "{run_id_2}"], "metric_key": "loss", **kw}

    return [
        _s("interval.one_run", "GET", INTERVAL, query={"run_ids": "{run_id}", "metric_key": "loss"}),
        _s("interval.two_runs", "GET", INTERVAL, query=q()),
        _s("interval.two_runs_max_10", "GET", INTERVAL, query=q(max_results="10")),
        _s("interval.range", "GET", INTERVAL, query=q(start_step="5", end_step="20", max_results="5")),
        _s("interval.range_beyond_run_a", "GET", INTERVAL, query=q(start_step="25", end_step="40", max_results="4")),
        _s("interval.range_single_step", "GET", INTERVAL, query=q(start_step="7", end_step="7")),
        _s("interval.range_empty", "GET", INTERVAL, query=q(start_step="100", end_step="200")),
        _s("interval.negative_range", "GET", INTERVAL, query=q(start_step="-5", end_step="2")),
        _s("interval.max_results_1", "GET", INTERVAL, query=q(max_results="1")),
        _s("interval.max_results_2", "GET", INTERVAL, query=q(max_results="2")),
        _s("interval.max_results_2500", "GET", INTERVAL, query=q(max_results="2500")),
        _s("interval.sparse_steps", "GET", INTERVAL,
           query={"run_ids": "{run_id}", "metric_key": "acc", "max_results": "4"}),
        _s("interval.same_step", "GET", INTERVAL,
           query={"run_ids": "{run_id}", "metric_key": "lr", "max_results": "2"}),
        _s("interval.same_step_all", "GET", INTERVAL, query={"run_ids": "{run_id}", "metric_key": "lr"}),
        _s("interval.nan_and_infinity", "GET", INTERVAL, query={"run_ids": "{run_id}", "metric_key": "weird"}),
        _s("interval.duplicate_run_ids", "GET", INTERVAL,
           query={"run_ids": ["{run_id}", "{run_id}"], "metric_key": "acc"}),
        _s("interval.unknown_key", "GET", INTERVAL, query={"run_ids": "{run_id}", "metric_key": "nope"}),
        _s("interval.unknown_run", "GET", INTERVAL, query={"run_ids": NO_SUCH_RUN, "metric_key": "loss"}),
        _s("interval.known_and_unknown_run", "GET", INTERVAL,
           query={"run_ids": ["{run_id}", NO_SUCH_RUN], "metric_key": "acc"}),
        _s("interval.no_run_ids", "GET", INTERVAL, query={"metric_key": "loss"}),
        _s("interval.run_id_instead", "GET", INTERVAL, query={"run_id": "{run_id}", "metric_key": "loss"}),
        _s("interval.no_metric_key", "GET", INTERVAL, query={"run_ids": "{run_id}"}),
        _s("interval.empty_metric_key", "GET", INTERVAL, query={"run_ids": "{run_id}", "metric_key": ""}),
        _s("interval.no_parameters", "GET", INTERVAL),
        _s("interval.100_runs", "GET", INTERVAL,
           query={"run_ids": ["{run_id}", *FAKE_RUNS[:99]], "metric_key": "acc", "max_results": "3"}),
        _s("interval.101_runs", "GET", INTERVAL, query={"run_ids": ["{run_id}", *FAKE_RUNS], "metric_key": "acc"}),
        _s("interval.only_start_step", "GET", INTERVAL, query=q(start_step="5")),
        _s("interval.only_end_step", "GET", INTERVAL, query=q(end_step="5")),
        _s("interval.start_after_end", "GET", INTERVAL, query=q(start_step="10", end_step="5")),
        _s("interval.start_step_not_int", "GET", INTERVAL, query=q(start_step="a", end_step="5")),
        _s("interval.end_step_float", "GET", INTERVAL, query=q(start_step="0", end_step="5.5")),
        _s("interval.max_results_0", "GET", INTERVAL, query=q(max_results="0")),
        _s("interval.max_results_negative", "GET", INTERVAL, query=q(max_results="-3")),
        _s("interval.max_results_2501", "GET", INTERVAL, query=q(max_results="2501")),
        _s("interval.max_results_not_int", "GET", INTERVAL, query=q(max_results="abc")),
        _s("interval.max_results_float", "GET", INTERVAL, query=q(max_results="2.5")),
        _s("interval.post", "POST", INTERVAL, json=q()),
    ]


# ---- experiments/search-datasets ----------------------------------------------------------------

def _dataset_steps() -> list[Step]:
    sd = f"{AJAX}/experiments/search-datasets"
    return [
        _s("datasets.one_experiment", "POST", sd, json={"experiment_ids": ["{experiment_id}"]}),
        _s("datasets.two_experiments", "POST", sd, json={"experiment_ids": ["{experiment_id}", "{experiment_id_2}"]}),
        _s("datasets.experiment_without_datasets", "POST", sd, json={"experiment_ids": ["{experiment_id_3}"]}),
        _s("datasets.unknown_experiment", "POST", sd, json={"experiment_ids": ["987654321"]}),
        _s("datasets.non_numeric_experiment", "POST", sd, json={"experiment_ids": ["abc"]}),
        _s("datasets.no_experiment_ids", "POST", sd, json={}),
        _s("datasets.no_body", "POST", sd),
        _s("datasets.empty_list", "POST", sd, json={"experiment_ids": []}),
        _s("datasets.20_experiments", "POST", sd,
           json={"experiment_ids": ["{experiment_id}"] + [str(900000 + i) for i in range(19)]}),
        _s("datasets.21_experiments", "POST", sd,
           json={"experiment_ids": ["{experiment_id}"] + [str(900000 + i) for i in range(20)]}),
        _s("datasets.ids_not_a_list", "POST", sd, json={"experiment_ids": "{experiment_id}"}),
        _s("datasets.id_not_a_string", "POST", sd, json={"experiment_ids": [12345]}),
        _s("datasets.form_content_type", "POST", sd, json={"experiment_ids": ["{experiment_id}"]},
           headers={"Content-Type": "application/x-www-form-urlencoded"}),
        _s("datasets.get", "GET", sd, query={"experiment_ids": "{experiment_id}"}),
    ]


# ---- runs/create-promptlab-run ------------------------------------------------------------------

def _promptlab_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "experiment_id": "{experiment_id}",
        "run_name": "promptlab-{u}",
        "prompt_template": "Answer: {{question}}",
        "prompt_parameters": [{"key": "question", "value": "what is 2+2?"}],
        "model_route": "chat-route",
        "model_parameters": [{"key": "temperature", "value": 0.5}, {"key": "max_tokens", "value": 100}],
        "model_input": "Answer: what is 2+2?",
        "model_output": "4",
        "model_output_parameters": [{"key": "latency_ms", "value": 12}],
        "mlflow_version": "3.17.2",
        "user_id": "ui-user",
        "start_time": T0 + 5000,
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def _promptlab_steps() -> list[Step]:
    pl = f"{AJAX}/runs/create-promptlab-run"
    steps = [
        _s("promptlab.create", "POST", pl, json=_promptlab_body()),
        _s("promptlab.get", "GET", f"{AJAX}/runs/get", query={"run_id": "{promptlab_run_id}"}),
        _s("promptlab.artifacts.list", "GET", f"{AJAX}/artifacts/list", query={"run_id": "{promptlab_run_id}"}),
        _s("promptlab.artifacts.list_model", "GET", f"{AJAX}/artifacts/list",
           query={"run_id": "{promptlab_run_id}", "path": "model"}),
        _s("promptlab.eval_table", "GET", "/get-artifact",
           query={"path": "eval_results_table.json", "run_uuid": "{promptlab_run_id}"}, check_headers=DOWNLOAD_HEADERS),
        _s("promptlab.minimal", "POST", pl,
           json=_promptlab_body(run_name=None, model_parameters=None, model_output=None,
                                model_output_parameters=None, user_id=None, start_time=T0 + 6000)),
        # The reference answers these two with a 500 and creates no run; a server that accepts them
        # creates one, so they go to the gateway experiment, which no later step lists runs of.
        _s("promptlab.with_tags", "POST", pl,
           json=_promptlab_body(experiment_id="{experiment_id_3}", run_name="promptlab-{u}-tags", tags=_tags(k="v"))),
        _s("promptlab.prompt_parameters_not_list", "POST", pl,
           json=_promptlab_body(experiment_id="{experiment_id_3}", prompt_parameters="question")),
        _s("promptlab.unknown_experiment", "POST", pl, json=_promptlab_body(experiment_id="987654321")),
        _s("promptlab.prompt_parameters_empty", "POST", pl, json=_promptlab_body(prompt_parameters=[])),
        _s("promptlab.empty_body", "POST", pl, json={}),
        _s("promptlab.no_body", "POST", pl),
    ]
    for missing in ("experiment_id", "prompt_template", "prompt_parameters", "model_route", "model_input",
                    "mlflow_version"):
        steps.append(_s(f"promptlab.missing_{missing}", "POST", pl, json=_promptlab_body(**{missing: None})))
    return steps


# ---- upload-artifact and artifact downloads ------------------------------------------------------

def _upload_steps() -> list[Step]:
    up = f"{AJAX}/upload-artifact"
    return [
        # The UI posts JSON.stringify(data) with the helper's JSON content type.
        _s("upload.table", "POST", up, query={"run_uuid": "{run_id}", "path": "uploads/table.json"}, data=TABLE_JSON),
        _s("upload.get_back", "GET", "/get-artifact", query={"path": "uploads/table.json", "run_uuid": "{run_id}"},
           check_headers=DOWNLOAD_HEADERS),
        _s("upload.overwrite", "POST", up, query={"run_uuid": "{run_id}", "path": "uploads/table.json"},
           data='{"columns": [], "data": []}'),
        _s("upload.get_overwritten", "GET", "/get-artifact",
           query={"path": "uploads/table.json", "run_uuid": "{run_id}"}),
        _s("upload.top_level", "POST", up, query={"run_uuid": "{run_id}", "path": "top.json"}, data='"x"'),
        _s("upload.deep", "POST", up, query={"run_uuid": "{run_id}", "path": "a/b/c/deep.txt"}, data="deep"),
        _s("upload.list", "GET", f"{AJAX}/artifacts/list", query={"run_id": "{run_id}", "path": "uploads"}),
        _s("upload.no_run_uuid", "POST", up, query={"path": "x.json"}, data="{}"),
        _s("upload.run_id_instead", "POST", up, query={"run_id": "{run_id}", "path": "x.json"}, data="{}"),
        _s("upload.no_path", "POST", up, query={"run_uuid": "{run_id}"}, data="{}"),
        _s("upload.empty_body", "POST", up, query={"run_uuid": "{run_id}", "path": "empty.json"}),
        _s("upload.unknown_run", "POST", up, query={"run_uuid": NO_SUCH_RUN, "path": "x.json"}, data="{}"),
        _s("upload.traversal", "POST", up, query={"run_uuid": "{run_id}", "path": "../../escape.json"}, data="{}"),
        _s("upload.absolute_path", "POST", up, query={"run_uuid": "{run_id}", "path": "/etc/escape.json"}, data="{}"),
        _s("upload.json_body_as_query", "POST", up, json={"run_uuid": "{run_id}", "path": "x.json"}),
        _s("upload.get", "GET", up, query={"run_uuid": "{run_id}", "path": "x.json"}),
        _s("upload.list_root", "GET", f"{AJAX}/artifacts/list", query={"run_id": "{run_id}"}),
    ]


def _get_artifact_steps() -> list[Step]:
    ga = "/get-artifact"
    return [
        _s("get_artifact.text", "GET", ga, query={"path": "notes.txt", "run_uuid": "{run_id}"},
           check_headers=DOWNLOAD_HEADERS),
        _s("get_artifact.png", "GET", ga, query={"path": "plots/curve.png", "run_uuid": "{run_id}"},
           check_headers=DOWNLOAD_HEADERS),
        _s("get_artifact.html", "GET", ga, query={"path": "report.html", "run_uuid": "{run_id}"},
           check_headers=DOWNLOAD_HEADERS),
        _s("get_artifact.mlmodel", "GET", ga, query={"path": "model/MLmodel", "run_uuid": "{run_id}"},
           check_headers=DOWNLOAD_HEADERS),
        _s("get_artifact.run_id_param", "GET", ga, query={"path": "notes.txt", "run_id": "{run_id}"},
           check_headers=DOWNLOAD_HEADERS),
        _s("get_artifact.directory", "GET", ga, query={"path": "plots", "run_uuid": "{run_id}"}),
        _s("get_artifact.missing_file", "GET", ga, query={"path": "nope.txt", "run_uuid": "{run_id}"}),
        _s("get_artifact.no_path", "GET", ga, query={"run_uuid": "{run_id}"}),
        _s("get_artifact.empty_path", "GET", ga, query={"path": "", "run_uuid": "{run_id}"}),
        _s("get_artifact.no_run", "GET", ga, query={"path": "notes.txt"}),
        _s("get_artifact.unknown_run", "GET", ga, query={"path": "notes.txt", "run_uuid": NO_SUCH_RUN}),
        _s("get_artifact.traversal", "GET", ga, query={"path": "../../../etc/passwd", "run_uuid": "{run_id}"}),
        _s("get_artifact.absolute", "GET", ga, query={"path": "/etc/passwd", "run_uuid": "{run_id}"}),
        _s("get_artifact.post", "POST", ga, query={"path": "notes.txt", "run_uuid": "{run_id}"}),
        # The UI builds this path for evaluation artifacts; the reference does not serve it.
        _s("get_artifact.ajax_path", "GET", f"{AJAX}/get-artifact",
           query={"run_uuid": "{run_id}", "path": "notes.txt"}),
        _s("get_artifact.list_root", "GET", f"{AJAX}/artifacts/list", query={"run_id": "{run_id}"}),
        _s("get_artifact.list_dir", "GET", f"{AJAX}/artifacts/list", query={"run_id": "{run_id}", "path": "plots"}),
        # Through the artifact proxy, as the UI's download falls back to it.
        _s("proxy.download", "GET", "/ajax-api/2.0/mlflow-artifacts/artifacts/{run_path}/notes.txt",
           check_headers=DOWNLOAD_HEADERS),
        _s("proxy.list", "GET", "/ajax-api/2.0/mlflow-artifacts/artifacts", query={"path": "{run_path}"}),
    ]


def _model_version_artifact_steps() -> list[Step]:
    mva = "/model-versions/get-artifact"
    name = "ui-{u}-model"
    return [
        _s("mv_artifact.from_run", "GET", mva, query={"path": "MLmodel", "name": name, "version": "1"},
           check_headers=DOWNLOAD_HEADERS),
        _s("mv_artifact.from_logged_model", "GET", mva, query={"path": "MLmodel", "name": name, "version": "2"},
           check_headers=DOWNLOAD_HEADERS),
        _s("mv_artifact.nested", "GET", mva, query={"path": "sub/notes.txt", "name": name, "version": "2"},
           check_headers=DOWNLOAD_HEADERS),
        _s("mv_artifact.missing_file", "GET", mva, query={"path": "nope", "name": name, "version": "1"}),
        _s("mv_artifact.unknown_version", "GET", mva, query={"path": "MLmodel", "name": name, "version": "99"}),
        _s("mv_artifact.bad_version", "GET", mva, query={"path": "MLmodel", "name": name, "version": "abc"}),
        _s("mv_artifact.unknown_model", "GET", mva, query={"path": "MLmodel", "name": "ui-{u}-nope", "version": "1"}),
        _s("mv_artifact.no_path", "GET", mva, query={"name": name, "version": "1"}),
        _s("mv_artifact.no_name", "GET", mva, query={"path": "MLmodel", "version": "1"}),
        _s("mv_artifact.no_version", "GET", mva, query={"path": "MLmodel", "name": name}),
        _s("mv_artifact.traversal", "GET", mva, query={"path": "../../../etc/passwd", "name": name, "version": "1"}),
        _s("mv_artifact.directory", "GET", mva, query={"path": "sub", "name": name, "version": "2"}),
        _s("mv_artifact.ajax_path", "GET", f"{AJAX}/model-versions/get-artifact",
           query={"path": "MLmodel", "name": name, "version": "1"}),
        _s("mv_artifact.download_uri", "GET", f"{AJAX}/model-versions/get-download-uri",
           query={"name": name, "version": "2"}),
    ]


def _logged_model_artifact_steps() -> list[Step]:
    files = f"{AJAX}/logged-models/{{model_id}}/artifacts/files"
    dirs = f"{AJAX}/logged-models/{{model_id}}/artifacts/directories"
    return [
        _s("lm_artifact.file", "GET", files, query={"artifact_file_path": "MLmodel"}, check_headers=DOWNLOAD_HEADERS),
        _s("lm_artifact.nested_file", "GET", files, query={"artifact_file_path": "sub/notes.txt"},
           check_headers=DOWNLOAD_HEADERS),
        _s("lm_artifact.directory_as_file", "GET", files, query={"artifact_file_path": "sub"}),
        _s("lm_artifact.missing_file", "GET", files, query={"artifact_file_path": "nope.txt"}),
        _s("lm_artifact.no_path", "GET", files),
        _s("lm_artifact.empty_path", "GET", files, query={"artifact_file_path": ""}),
        _s("lm_artifact.traversal", "GET", files, query={"artifact_file_path": "../../../etc/passwd"}),
        _s("lm_artifact.absolute", "GET", files, query={"artifact_file_path": "/etc/passwd"}),
        _s("lm_artifact.unknown_model", "GET", f"{AJAX}/logged-models/{NO_SUCH_MODEL}/artifacts/files",
           query={"artifact_file_path": "MLmodel"}),
        _s("lm_artifact.post", "POST", files, query={"artifact_file_path": "MLmodel"}),
        _s("lm_artifact.api_path", "GET", f"{API}/logged-models/{{model_id}}/artifacts/files",
           query={"artifact_file_path": "MLmodel"}),
        _s("lm_dirs.root", "GET", dirs),
        _s("lm_dirs.sub", "GET", dirs, query={"artifact_directory_path": "sub"}),
        _s("lm_dirs.missing_dir", "GET", dirs, query={"artifact_directory_path": "nope"}),
        _s("lm_dirs.file", "GET", dirs, query={"artifact_directory_path": "MLmodel"}),
        _s("lm_dirs.traversal", "GET", dirs, query={"artifact_directory_path": "../.."}),
        _s("lm_dirs.unknown_model", "GET", f"{AJAX}/logged-models/{NO_SUCH_MODEL}/artifacts/directories"),
        _s("lm_dirs.api_path", "GET", f"{API}/logged-models/{{model_id}}/artifacts/directories"),
    ]


# ---- traces, telemetry, server info ------------------------------------------------------------

def _trace_steps() -> list[Step]:
    out = []
    for v, prefix in (("v2", AJAX), ("v3", AJAX3)):
        ta = f"{prefix}/get-trace-artifact"
        out += [
            _s(f"trace_artifact.{v}.no_request_id", "GET", ta),
            _s(f"trace_artifact.{v}.empty_request_id", "GET", ta, query={"request_id": ""}),
            _s(f"trace_artifact.{v}.unknown", "GET", ta, query={"request_id": NO_SUCH_TRACE}),
            # The reference checks an attachment path (a UUID) before it looks the trace up.
            _s(f"trace_artifact.{v}.unknown_with_path", "GET", ta,
               query={"request_id": NO_SUCH_TRACE, "path": "a.png"}),
            _s(f"trace_artifact.{v}.unknown_with_uuid_path", "GET", ta,
               query={"request_id": NO_SUCH_TRACE, "path": "0123e456-e89b-12d3-a456-426614174000"}),
            _s(f"trace_artifact.{v}.post", "POST", ta, query={"request_id": NO_SUCH_TRACE}),
        ]
    return out


def _telemetry_steps() -> list[Step]:
    tel = f"{AJAX3}/ui-telemetry"
    record = {"event_name": "ui_click", "timestamp_ns": 1, "params": {}, "installation_id": "i", "session_id": "s"}
    return [
        _s("telemetry.get", "GET", tel),
        _s("telemetry.post_empty", "POST", tel, json={"records": []}),
        _s("telemetry.post_record", "POST", tel, json={"records": [record]}),
        _s("telemetry.post_bad_record", "POST", tel, json={"records": [{"x": 1}]}),
        _s("telemetry.post_no_body", "POST", tel),
        _s("telemetry.post_not_json", "POST", tel, data="not json"),
        _s("telemetry.post_list", "POST", tel, json=[1, 2]),
        _s("telemetry.api_path", "GET", "/api/3.0/mlflow/ui-telemetry"),
        _s("telemetry.v2_path", "GET", f"{AJAX}/ui-telemetry"),
        _s("telemetry.delete", "DELETE", tel, json={}),
    ]


def _server_steps() -> list[Step]:
    return [
        _s("server.health", "GET", "/health", check_headers=("content-type",)),
        _s("server.version", "GET", "/version", check_headers=("content-type",)),
        _s("server.info.ajax", "GET", f"{AJAX3}/server-info"),
        _s("server.info.api", "GET", "/api/3.0/mlflow/server-info"),
        _s("server.info.v2_path", "GET", f"{AJAX}/server-info"),
        _s("server.users_current", "GET", f"{AJAX}/users/current"),
        _s("server.users_current_api", "GET", f"{API}/users/current"),
        _s("server.users_current_permissions", "GET", f"{AJAX3}/users/current/permissions"),
        _s("server.gateway_proxy.get", "GET", f"{AJAX}/gateway-proxy", query={"gateway_path": "api/2.0/endpoints"}),
        _s("server.gateway_proxy.get_no_params", "GET", f"{AJAX}/gateway-proxy"),
        _s("server.gateway_proxy.post", "POST", f"{AJAX}/gateway-proxy",
           json={"gateway_path": "gateway/chat/invocations", "json_data": {}}),
        _s("server.unknown_ajax_route", "GET", f"{AJAX}/no-such-route"),
        _s("server.unknown_ajax3_route", "GET", f"{AJAX3}/no-such-route"),
    ]


# ---- ordinary tracking routes as the UI calls them ---------------------------------------------

ISGATEWAY_NULL = "tags.`mlflow.experiment.isGateway` IS NULL"


def _tracking_steps() -> list[Step]:
    return [
        # The experiment list page: newest experiments first, gateway experiments hidden. Limited
        # to two so a server that ran the sequence before returns only this execution's.
        _s("tracking.experiments.search_ui", "GET", f"{AJAX}/experiments/search",
           query={"max_results": "2", "order_by": ["creation_time DESC"], "filter": ISGATEWAY_NULL}),
        _s("tracking.experiments.search_ui_name", "GET", f"{AJAX}/experiments/search",
           query={"max_results": "25", "order_by": ["last_update_time DESC"],
                  "filter": "name ILIKE '%ui-{u}%' AND " + ISGATEWAY_NULL}),
        _s("tracking.experiments.search_gateway", "GET", f"{AJAX}/experiments/search",
           query={"max_results": "25",
                  "filter": "name ILIKE '%ui-{u}%' AND tags.`mlflow.experiment.isGateway` IS NOT NULL"}),
        # Without max_results a GET search is refused (max_results 0).
        _s("tracking.experiments.search_no_max_results", "GET", f"{AJAX}/experiments/search",
           query={"filter": "name ILIKE '%ui-{u}%'"}),
        _s("tracking.experiments.search_post", "POST", f"{AJAX}/experiments/search",
           json={"max_results": 25, "filter": "name LIKE 'ui-{u}%' AND " + ISGATEWAY_NULL,
                 "order_by": ["name ASC"]}),
        _s("tracking.experiments.get", "GET", f"{AJAX}/experiments/get", query={"experiment_id": "{experiment_id}"}),
        _s("tracking.experiments.get_by_name", "GET", f"{AJAX}/experiments/get-by-name",
           query={"experiment_name": "ui-{u}"}),
        _s("tracking.runs.search", "POST", f"{AJAX}/runs/search",
           json={"experiment_ids": ["{experiment_id}"], "filter": "", "run_view_type": "ACTIVE_ONLY",
                 "max_results": 100, "order_by": ["attributes.start_time DESC"]}),
        _s("tracking.runs.search_run_id_in", "POST", f"{AJAX}/runs/search",
           json={"experiment_ids": ["{experiment_id}"], "filter": "run_id IN ('{run_id}')"}),
        _s("tracking.runs.search_attributes_run_id_in", "POST", f"{AJAX}/runs/search",
           json={"experiment_ids": ["{experiment_id}"],
                 "filter": "attributes.run_id IN ('{run_id}', '{run_id_2}')",
                 "order_by": ["metrics.`loss` DESC"]}),
        _s("tracking.runs.search_params_order", "POST", f"{AJAX}/runs/search",
           json={"experiment_ids": ["{experiment_id}", "{experiment_id_2}"], "order_by": ["params.`lr` ASC"]}),
        _s("tracking.runs.get", "GET", f"{AJAX}/runs/get", query={"run_id": "{run_id}"}),
        _s("tracking.runs.get_b", "GET", f"{AJAX}/runs/get", query={"run_id": "{run_id_2}"}),
        _s("tracking.metrics.get_history", "GET", f"{AJAX}/metrics/get-history",
           query={"run_id": "{run_id}", "metric_key": "acc"}),
        _s("tracking.metrics.get_history_run_uuid", "GET", f"{AJAX}/metrics/get-history",
           query={"run_uuid": "{run_id}", "metric_key": "weird"}),
        _s("tracking.model_versions.search_run_ids", "GET", f"{AJAX}/model-versions/search",
           query={"filter": "run_id IN ('{run_id}','{run_id_2}')"}),
        _s("tracking.registered_models.search", "GET", f"{AJAX}/registered-models/search",
           query={"filter": "name ILIKE '%ui-{u}%'", "max_results": "25"}),
        _s("tracking.logged_models.search", "POST", f"{AJAX}/logged-models/search",
           json={"experiment_ids": ["{experiment_id}"]}),
        _s("tracking.logged_models.search_ui", "POST", f"{AJAX}/logged-models/search",
           json={"experiment_ids": ["{experiment_id}"],
                 "order_by": [{"field_name": "creation_time", "ascending": False}]}),
        _s("tracking.logged_models.get", "GET", f"{AJAX}/logged-models/{{model_id}}"),
        _s("tracking.logged_models.set_tags", "PATCH", f"{AJAX}/logged-models/{{model_id}}/tags",
           json={"tags": _tags(stage="review")}),
        _s("tracking.logged_models.delete_tag", "DELETE", f"{AJAX}/logged-models/{{model_id}}/tags/stage", json={}),
        _s("tracking.registered_models.delete_tag", "DELETE", f"{AJAX}/registered-models/delete-tag",
           json={"name": "ui-{u}-model", "key": "k"}),
        _s("tracking.registered_models.get", "GET", f"{AJAX}/registered-models/get", query={"name": "ui-{u}-model"}),
        _s("tracking.runs.set_tag", "POST", f"{AJAX}/runs/set-tag",
           json={"run_id": "{run_id_2}", "key": "mlflow.note.content", "value": "from the ui"}),
        _s("tracking.runs.delete_tag", "POST", f"{AJAX}/runs/delete-tag",
           json={"run_id": "{run_id_2}", "key": "mlflow.note.content"}),
    ]


def _v3_steps() -> list[Step]:
    experiment = {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "{experiment_id}"}}
    return [
        _s("v3.traces.search", "POST", f"{AJAX3}/traces/search", json={"locations": [experiment], "max_results": 25}),
        _s("v3.traces.get_unknown", "GET", f"{AJAX3}/traces/get", query={"trace_id": NO_SUCH_TRACE}),
        _s("v3.traces.info_unknown", "GET", f"{AJAX3}/traces/{NO_SUCH_TRACE}"),
        _s("v3.datasets.search", "POST", f"{AJAX3}/datasets/search",
           json={"experiment_ids": ["{experiment_id}"], "order_by": ["created_time DESC"], "max_results": 50}),
        _s("v3.scorers.list", "GET", f"{AJAX3}/scorers/list", query={"experiment_id": "{experiment_id}"}),
        _s("v3.label_schemas.list", "GET", f"{AJAX3}/label-schemas/list", query={"experiment_id": "{experiment_id}"}),
        _s("v3.workspaces", "GET", f"{AJAX3}/workspaces"),
        _s("v3.gateway.endpoints.list", "GET", f"{AJAX3}/gateway/endpoints/list"),
        _s("v3.logged_models_path", "GET", f"{AJAX3}/logged-models/{{model_id}}"),
    ]


def build_steps() -> list[Step]:
    return [
        *_setup_steps(),
        *_bulk_steps(),
        *_interval_steps(),
        *_dataset_steps(),
        *_promptlab_steps(),
        *_upload_steps(),
        *_get_artifact_steps(),
        *_model_version_artifact_steps(),
        *_logged_model_artifact_steps(),
        *_trace_steps(),
        *_telemetry_steps(),
        *_server_steps(),
        *_tracking_steps(),
        *_v3_steps(),
    ]


CAPTURES: dict[str, dict[str, tuple[str, ...]]] = {
    "setup.experiment.create": {"experiment_id": ("experiment_id",)},
    "setup.experiment2.create": {"experiment_id_2": ("experiment_id",)},
    "setup.gateway_experiment.create": {"experiment_id_3": ("experiment_id",)},
    "setup.run_a.create": {"run_id": ("run", "info", "run_id"), "artifact_uri": ("run", "info", "artifact_uri")},
    "setup.run_b.create": {"run_id_2": ("run", "info", "run_id")},
    "setup.run_c.create": {"run_id_3": ("run", "info", "run_id")},
    "setup.logged_model.create": {"model_id": ("model", "info", "model_id"),
                                  "model_uri": ("model", "info", "artifact_uri")},
    "promptlab.create": {"promptlab_run_id": ("run", "info", "run_id")},
    "promptlab.minimal": {"promptlab_run_id_2": ("run", "info", "run_id")},
    "promptlab.with_tags": {"promptlab_run_id_3": ("run", "info", "run_id")},
}

_SCHEME = "mlflow-artifacts:/"


def _derive(ctx: Mapping[str, str]) -> dict[str, str]:
    out = {}
    for uri, path in (("artifact_uri", "run_path"), ("model_uri", "model_path")):
        if ctx.get(uri, "").startswith(_SCHEME):
            out[path] = ctx[uri][len(_SCHEME):].lstrip("/")
    return out


_ID_NAMES = ("run_id", "run_id_2", "run_id_3", "model_id", "promptlab_run_id", "promptlab_run_id_2",
             "promptlab_run_id_3", "u")
_EXPERIMENT_NAMES = ("experiment_id", "experiment_id_2", "experiment_id_3")


def _tokens(ctx: Mapping[str, str]) -> dict[str, str]:
    """This execution's ids and their stand-ins. Run and model ids are long and replaced wherever
    they appear; experiment ids are short numbers, replaced whole (under experiment_id keys) and
    where they sit in an artifact URI or path next to a run or model id."""
    tokens = {ctx[k]: f"<{k}>" for k in _ID_NAMES if ctx.get(k)}
    for name in _EXPERIMENT_NAMES:
        e = ctx.get(name)
        if not e:
            continue
        tokens[e] = f"<{name}>"
        tokens[f"{_SCHEME}{e}"] = f"{_SCHEME}<{name}>"
        tokens[f"{_SCHEME}{e}/"] = f"{_SCHEME}<{name}>/"
        tokens[f"{e}/models/"] = f"<{name}>/models/"
        for run in ("run_id", "run_id_2", "run_id_3", "promptlab_run_id", "promptlab_run_id_2", "promptlab_run_id_3"):
            if ctx.get(run):
                tokens[f"{e}/{ctx[run]}"] = f"<{name}>/<{run}>"
    return tokens


NORMALISE = Normaliser(
    # Metric timestamps and run start times are the sequence's own, so they are compared; user ids
    # too (the sequence sends them or leaves them empty).
    timestamp_keys={"creation_timestamp", "last_updated_timestamp", "creation_timestamp_ms",
                    "last_updated_timestamp_ms", "end_time", "creation_time", "last_update_time",
                    "created_at", "last_updated_at"},
    key_tokens={"next_page_token": "<page_token>", "schema_id": "<schema_id>"},
    id_keys={"experiment_id", "experiment_ids"},
    sorted_lists={"tags", "aliases", "latest_versions", "dataset_summaries", "dataset_inputs", "params",
                  ("data", "metrics"), "files"},
    text_subs=[
        # Names the server makes up for runs created without one ("sneaky-fox-359").
        (re.compile(r"\A[a-z]+-[a-z]+-\d{1,3}\Z"), "<generated run name>"),
        # The promptlab run's model: created-at and uuid printed inside the log-model history tag.
        (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}"), "<datetime>"),
        (re.compile(r'("model_uuid": ")[0-9a-f]{32}"'), r'\1<uuid>"'),
        (re.compile(r'("model_id": ")m-[0-9a-f]{32}"'), r'\1<other model_id>"'),
    ],
)

def _group_by_run(body: Any, tokens: Mapping[str, str]) -> Any:
    """Metrics of several runs in the order of their (normalised) run ids, each run's own order
    kept: the servers' run ids differ, so their lexicographic order may too."""
    if isinstance(body, dict) and isinstance(body.get("metrics"), list):
        metrics = sorted(body["metrics"], key=lambda m: tokens.get(m.get("run_id"), "") if isinstance(m, dict) else "")
        return {**body, "metrics": metrics}
    return body


def _rank_runs(body: Any, tokens: Mapping[str, str]) -> Any:
    """Run ids replaced by their rank among the run ids in the response (for runs that logged the
    same history): what the response shows is then exactly what "sorted by run id" means."""
    if not (isinstance(body, dict) and isinstance(body.get("metrics"), list)):
        return body
    ids = sorted({m.get("run_id") for m in body["metrics"] if isinstance(m, dict) and isinstance(m.get("run_id"), str)})
    rank = {run_id: f"<run id ranked {i}>" for i, run_id in enumerate(ids, 1)}
    return {**body, "metrics": [{**m, "run_id": rank.get(m.get("run_id"), m.get("run_id"))} if isinstance(m, dict)
                                else m for m in body["metrics"]]}


# get-history-bulk sorts by run id (then timestamp, step, value) and cuts at max_results.
BY_RUN_ID = {
    "bulk.two_runs": _group_by_run,
    "bulk.two_runs_same_history": _rank_runs,
    "bulk.max_results_5": _rank_runs,
    "bulk.max_results_40_cuts_second_run": _rank_runs,
}

# The rest of what the UI sends: JSON content type on every request.
UI_SEQUENCE = Sequence(
    steps=build_steps(),
    captures=CAPTURES,
    normalise=NORMALISE,
    tokens=_tokens,
    derive=_derive,
    derived_placeholders=("run_path", "model_path"),
    default_headers=JSON,
    prepare=BY_RUN_ID,
)
STEPS = UI_SEQUENCE.steps


def run_ui_sequence(base_url: str, u: str | None = None) -> list[Result]:
    return run_sequence(base_url, UI_SEQUENCE, u)


def compare(ref: list[Result], ours: list[Result], skip: Any = ()) -> list[str]:
    return _compare(UI_SEQUENCE, ref, ours, skip)


if __name__ == "__main__":
    print(format_transcript(run_ui_sequence(sys.argv[1])))
