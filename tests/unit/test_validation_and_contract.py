"""MLflow's validation rules and the event contract, without servers."""

from __future__ import annotations

import math

import msgspec
import pytest

from common import events as ev
from common import validation as v
from common.errors import MlflowError
from common.keys import decode_key, encode_key
from common.settings import load_settings
from common.transport import partition_of
from ingest import requests as rq


@pytest.mark.parametrize("key", ["a.b", "$x", "100%.", "%2E", "%25%2E.$", "plain/x:y z", ""])
def test_key_encoding_round_trips_and_is_a_safe_field_name(key: str) -> None:
    enc = encode_key(key)
    assert decode_key(enc) == key
    assert "." not in enc and not enc.startswith("$")


@pytest.mark.parametrize("name", ["../x", "/abs", "a/../b", ".", "a//b"])
def test_names_that_resolve_to_other_paths_are_rejected(name: str) -> None:
    with pytest.raises(MlflowError, match="must not resolve to other names"):
        v.validate_param(name, "1")


def test_metric_messages_match_mlflow() -> None:
    with pytest.raises(MlflowError) as err:
        v.validate_metric("m", 1.0, -1, 0, path="metrics[2]")
    assert err.value.message.startswith("Invalid value -1 for parameter 'metrics[2].timestamp' supplied")
    with pytest.raises(MlflowError) as err:
        v.validate_metric(None, 1.0, 1, 0)
    assert "Metric name cannot be None" in err.value.message


def test_check_fields_reports_type_errors_like_the_reference_server() -> None:
    with pytest.raises(MlflowError) as err:
        v.check_fields({"run_id": 31}, {"run_id": (v.REQUIRED, v.STRING)})
    assert err.value.message == (
        "Invalid value 31 for parameter 'run_id' supplied:  Hint: Value was of type 'int'."
        " See the API docs for more information about request parameters.")
    assert err.value.http_status == 400


def test_run_uuid_is_accepted_for_run_id() -> None:
    req = rq.decode({"run_uuid": "abc", "key": "k", "value": "NaN", "timestamp": "5"}, rq.LogMetric)
    assert req.id == "abc" and math.isnan(req.value) and req.timestamp == 5


def test_unparsable_body_is_treated_as_empty_like_mlflow() -> None:
    assert rq.parse_json_body(b"{oops") == {}
    assert rq.parse_json_body(b'"{\\"a\\": 1}"') == {"a": 1}  # double-encoded legacy clients


def test_envelope_round_trips_and_rejects_future_versions() -> None:
    event = ev.RunDataLogged("r", metrics=[ev.Metric("m", math.nan, 1, 2, model_id="m-1")], params=[ev.Tag("p", "1")])
    envelope = ev.Envelope(id="e1", partition_key="r", published_at=5, event=event, reply_to="q", trace={"traceparent": "x"})
    back = ev.decode_envelope(ev.encode(envelope))
    assert back.event.metrics[0].model_id == "m-1" and math.isnan(back.event.metrics[0].value)
    assert back.reply_to == "q" and back.trace == {"traceparent": "x"}
    future = ev.encode(msgspec.structs.replace(envelope, v=ev.SCHEMA_VERSION + 1))
    with pytest.raises(msgspec.ValidationError):
        ev.decode_envelope(future)


def test_partitions_are_stable_and_experiment_events_use_the_experiment() -> None:
    assert partition_of("abc", 8) == partition_of("abc", 8)
    assert ev.partition_key(ev.ExperimentTagSet("7", "k", "v")) == "exp:7"
    assert ev.partition_key(ev.RunDeleted("r1", 0)) == "r1"
    spread = {partition_of(f"{i:032x}", 8) for i in range(200)}
    assert spread == set(range(8))


def test_settings_flags_override_env_and_aliases_apply() -> None:
    env = {"GENESIS_FLOW_PORT": "7000", "MLFLOW_DEFAULT_ARTIFACT_ROOT": "azure://c/p",
           "MLFLOW_STRICT_INPUT_VALIDATION": "true"}
    s = load_settings("ingest", env, port=7100)
    assert s.port == 7100 and s.artifact_root == "azure://c/p" and s.strict_input_validation is True
    assert load_settings("query", {}).port == 5002 and load_settings("writer", {}).port == 5003
    assert load_settings("ingest", {}).mongodb_db == "mlflow_db"
