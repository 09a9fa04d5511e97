"""The migration's pure rules: canonical points, batching, resumption, selection."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

from genesis_flow.migrate import plan as pl
from genesis_flow.migrate.points import (
    Point,
    batches,
    canonical,
    history_digest,
    metric_json,
)


def test_exact_duplicates_are_dropped_and_points_sorted_by_time_step_value() -> None:
    pts = [Point(1, 20, 2.0), Point(0, 10, 1.0), Point(1, 20, 2.0), Point(1, 20, math.nan), Point(0, 10, 0.5)]
    unique, dropped = canonical(pts)
    assert dropped == 1
    assert [(p.timestamp, p.step) for p in unique] == [(10, 0), (10, 0), (20, 1), (20, 1)]
    assert unique[0].value == 0.5 and math.isnan(unique[-1].value)


def test_nan_duplicates_and_infinity_equal_to_max_float() -> None:
    unique, dropped = canonical([Point(0, 1, math.nan), Point(0, 1, math.nan), Point(0, 2, math.inf)])
    assert dropped == 1
    # the target returns +Inf as max float: both digest alike
    assert history_digest("r", "k", unique) == history_digest("r", "k", [Point(0, 1, math.nan),
                                                                         Point(0, 2, 1.7976931348623157e308)])


def test_special_values_travel_as_protobuf_json_strings() -> None:
    assert metric_json("k", Point(0, 1, math.nan))["value"] == "NaN"
    assert metric_json("k", Point(0, 1, -math.inf))["value"] == "-Infinity"
    assert metric_json("k", Point(3, 1, 1.5, model_id="m-1"))["model_id"] == "m-1"


def test_batches_respect_the_log_batch_limits() -> None:
    history = [Point(i, i, float(i)) for i in range(2500)]
    out = list(batches([("a", history), ("b", history[:10])]))
    assert [len(b) for b in out] == [1000, 1000, 510]
    assert all(len(json.dumps({"metrics": b})) < 1_000_000 for b in out)
    big_key = "k" * 250
    assert all(len(b) <= 1000 for b in batches([(big_key, history)], max_bytes=50_000))


def test_a_rerun_sends_only_the_points_after_the_stored_prefix() -> None:
    history = [Point(i, i, 0.0) for i in range(10)]
    assert pl.missing_suffix(history, 0) == history
    assert pl.missing_suffix(history, 7) == history[7:]
    assert pl.missing_suffix(history, 10) == [] and pl.missing_suffix(history, 12) == []


def test_since_selects_runs_started_or_ended_after_it() -> None:
    run = SimpleNamespace(info=SimpleNamespace(start_time=1000, end_time=5000))
    assert pl.run_selected(run, None) and pl.run_selected(run, 4000) and not pl.run_selected(run, 6000)
    assert pl.parse_since("2024-01-01") == 1704067200000 and pl.parse_since("1234") == 1234


def test_experiments_are_selected_by_name_or_id() -> None:
    exps = [SimpleNamespace(experiment_id="1", name="a"), SimpleNamespace(experiment_id="2", name="b")]
    assert [e.experiment_id for e in pl.select_experiments(exps, ["b", "1"])] == ["1", "2"]
    assert pl.select_experiments(exps, None) == exps


def test_params_and_tags_split_into_log_batch_sized_bodies() -> None:
    run = SimpleNamespace(data=SimpleNamespace(params={f"p{i}": "v" for i in range(150)}, tags={"t": "v"}))
    bodies = pl.params_tags_batches(run)
    assert [len(b["params"]) for b in bodies] == [100, 50] and [len(b["tags"]) for b in bodies] == [1, 0]


def test_points_the_writer_would_merge_are_one_point() -> None:
    # the writer keys points by (step, timestamp, stored value): -0.0 == 0.0, Inf is max float
    _, dropped = canonical([Point(0, 1, 0.0), Point(0, 1, -0.0), Point(0, 2, math.inf),
                            Point(0, 2, 1.7976931348623157e308)])
    assert dropped == 2


def test_worst_case_batches_stay_under_the_body_limit() -> None:
    worst = [Point(-2**62, 2**62, -math.inf, "m-" + "a" * 32, "d" * 500, "x" * 36)] * 1000
    for b in batches([("ü" * 250, worst)]):
        assert len(json.dumps({"run_id": "a" * 32, "metrics": b})) < 1_000_000


def test_an_imported_experiment_keeps_its_last_update_time() -> None:
    from common import events as ev
    from writer.plan import BatchState, plan_batch

    created = ev.ExperimentCreated("42", "imported", "mlflow-artifacts:/42", 1000, last_update_time=5000)
    plan = plan_batch([ev.Envelope("e1", "exp:42", 0, created)], BatchState(), 1000)
    assert plan.outcomes == {"e1": None}
    assert plan.writes[0].replacement["last_update_time"] == 5000
    plain = ev.ExperimentCreated("43", "made here", "mlflow-artifacts:/43", 1000)
    assert plan_batch([ev.Envelope("e2", "exp:43", 0, plain)], BatchState(), 1000).writes[0].replacement[
        "last_update_time"] == 1000
