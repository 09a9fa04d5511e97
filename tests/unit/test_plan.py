"""The writer's planner is plain code: events + loaded state in, writes + outcomes out."""

from __future__ import annotations

import math

from common import events as ev
from common.documents import new_experiment_document, new_run_document
from common.mongo import EXPERIMENTS, METRICS, RUNS
from writer.plan import SEAL_AT, BatchState, OpenBucket, plan_batch

RUN = "a" * 32


def env(event: ev.Event, i: int = 0) -> ev.Envelope:
    return ev.Envelope(id=f"e{i}-{id(event)}", partition_key=ev.partition_key(event), published_at=0, event=event)


def state_with_run(**run_fields) -> BatchState:
    doc = new_run_document(run_id=RUN, experiment_id="1", user_id="u", run_name="r", start_time=1,
                           artifact_uri="x", tags=[])
    doc.update(run_fields)
    exp = new_experiment_document(experiment_id="1", name="e", artifact_location="mlflow-artifacts:/1",
                                  creation_time=0, tags=[])
    return BatchState(runs={RUN: doc}, experiments={"1": exp}, experiment_names={"e": "1"})


def metric(step: int, value: float, ts: int = 1, key: str = "m") -> ev.Metric:
    return ev.Metric(key, value, ts, step)


def run_write(plan) -> dict:
    [w] = [w for w in plan.writes if w.collection == RUNS]
    return w.update


def test_one_run_update_and_one_bucket_push_for_a_whole_batch() -> None:
    events = [env(ev.RunDataLogged(RUN, metrics=[metric(i, float(i))]), i) for i in range(500)]
    plan = plan_batch(events, state_with_run(), bucket_size=1000)
    assert [w.collection for w in plan.writes] == [METRICS, RUNS]
    bucket = plan.writes[0]
    assert bucket.filter == {"_id": f"{RUN}:m:0", "run_id": RUN}
    assert len(bucket.update["$push"]["p"]["$each"]) == 500
    assert all(o is None for o in plan.outcomes.values())


def test_buckets_are_bounded_and_roll_over() -> None:
    events = [env(ev.RunDataLogged(RUN, metrics=[metric(i, 1.0, ts=i) for i in range(2500)]))]
    plan = plan_batch(events, state_with_run(), bucket_size=1000)
    writes = [w for w in plan.writes if w.collection == METRICS]
    assert [w.filter["_id"].rsplit(":", 1)[1] for w in writes] == ["0", "1", "2"]
    # the open bucket is appended to; buckets the batch opens are inserted whole
    assert len(writes[0].update["$push"]["p"]["$each"]) == 1000
    assert [(w.insert, w.replacement["n"], len(w.replacement["p"])) for w in writes[1:]] == [(True, 1000, 1000),
                                                                                          (True, 500, 500)]
    mb = run_write(plan)["$set"]["mb.m"]
    assert mb["seq"] == 2 and mb["n"] == 500 and mb["tc"] >= 1999


def test_open_bucket_fill_continues_from_stored_count() -> None:
    state = state_with_run()
    state.buckets[(RUN, "m")] = OpenBucket(seq=3, count=998)
    plan = plan_batch([env(ev.RunDataLogged(RUN, metrics=[metric(i, 1.0, ts=i) for i in range(5)]))], state, 1000)
    writes = {w.filter["_id"]: w for w in plan.writes if w.collection == METRICS}
    assert len(writes[f"{RUN}:m:3"].update["$push"]["p"]["$each"]) == 2
    assert writes[f"{RUN}:m:4"].insert and writes[f"{RUN}:m:4"].replacement["p"] == [[2, 2, 1.0], [3, 3, 1.0], [4, 4, 1.0]]


def test_a_large_append_to_a_stored_bucket_opens_a_new_bucket_instead_of_pushing() -> None:
    state = state_with_run()
    state.buckets[(RUN, "m")] = OpenBucket(seq=3, count=100, open_t_max=99, closed_t_max=50)
    points = [metric(i, 1.0, ts=100 + i) for i in range(SEAL_AT)]
    plan = plan_batch([env(ev.RunDataLogged(RUN, metrics=points))], state, 1000)
    [write] = [w for w in plan.writes if w.collection == METRICS]
    assert write.insert and write.filter["_id"] == f"{RUN}:m:4" and write.replacement["n"] == SEAL_AT
    mb = run_write(plan)["$set"]["mb.m"]
    assert (mb["seq"], mb["n"], mb["tc"], mb["to"]) == (4, SEAL_AT, 99, 100 + SEAL_AT - 1)


def test_a_small_append_or_a_fresh_key_still_fills_the_open_bucket() -> None:
    state = state_with_run()
    state.buckets[(RUN, "m")] = OpenBucket(seq=3, count=100)
    few = [metric(i, 1.0, ts=100 + i) for i in range(SEAL_AT - 1)]
    fresh = [metric(i, 1.0, ts=i, key="fresh") for i in range(500)]
    plan = plan_batch([env(ev.RunDataLogged(RUN, metrics=few + fresh))], state, 1000)
    writes = {w.filter["_id"]: w for w in plan.writes if w.collection == METRICS}
    assert set(writes) == {f"{RUN}:m:3", f"{RUN}:fresh:0"}
    assert len(writes[f"{RUN}:m:3"].update["$push"]["p"]["$each"]) == SEAL_AT - 1
    assert len(writes[f"{RUN}:fresh:0"].update["$push"]["p"]["$each"]) == 500


def test_a_history_stays_ordered_until_a_point_is_older_than_an_earlier_bucket() -> None:
    state = state_with_run()
    state.buckets[(RUN, "m")] = OpenBucket(seq=3, count=999, closed_t_max=500, open_t_max=600, ordered=True)
    in_order = [metric(i, 1.0, ts=600 + i) for i in range(3)]  # the third opens bucket 4, newer than all
    plan = plan_batch([env(ev.RunDataLogged(RUN, metrics=in_order))], state, 1000)
    assert run_write(plan)["$set"]["mb.m"]["o"] is True
    late = [metric(9, 1.0, ts=550)]  # older than bucket 3's newest point, landing in bucket 4
    state.buckets[(RUN, "m")] = OpenBucket(seq=4, count=1, closed_t_max=602, open_t_max=602, ordered=True)
    plan = plan_batch([env(ev.RunDataLogged(RUN, metrics=late))], state, 1000)
    assert run_write(plan)["$set"]["mb.m"]["o"] is False
    # within the open bucket order does not matter; unknown (older data) stays unknown
    state.buckets[(RUN, "m")] = OpenBucket(seq=4, count=1, closed_t_max=500, open_t_max=700, ordered=True)
    plan = plan_batch([env(ev.RunDataLogged(RUN, metrics=[metric(10, 1.0, ts=650)]))], state, 1000)
    assert run_write(plan)["$set"]["mb.m"]["o"] is True
    state.buckets[(RUN, "m")] = OpenBucket(seq=4, count=1)
    plan = plan_batch([env(ev.RunDataLogged(RUN, metrics=[metric(11, 1.0, ts=800)]))], state, 1000)
    assert run_write(plan)["$set"]["mb.m"]["o"] is False


def test_exact_duplicates_are_dropped_against_stored_and_batch_points() -> None:
    state = state_with_run()
    state.buckets[(RUN, "m")] = OpenBucket(seq=0, count=1, seen={(1, 1, 0.5)})
    events = [env(ev.RunDataLogged(RUN, metrics=[metric(1, 0.5), metric(1, 0.6), metric(1, 0.6)]))]
    plan = plan_batch(events, state, 1000)
    [push] = [w for w in plan.writes if w.collection == METRICS]
    assert push.update["$push"]["p"]["$each"] == [[1, 1, 0.6]]
    assert (plan.points_written, plan.points_dropped) == (1, 2)


def test_replaying_a_batch_against_its_own_result_writes_no_new_points() -> None:
    events = [env(ev.RunDataLogged(RUN, metrics=[metric(i, i * 2.0, ts=i) for i in range(10)]))]
    first = plan_batch(events, state_with_run(), 1000)
    pushed = first.writes[0].update["$push"]["p"]["$each"]
    replay_state = state_with_run(metrics={"m": run_write(first)["$set"]["metrics.m"]})
    replay_state.buckets[(RUN, "m")] = OpenBucket(seq=0, count=10, seen={tuple(p[:3]) for p in pushed})
    again = plan_batch(events, replay_state, 1000)
    assert not [w for w in again.writes if w.collection == METRICS]
    assert again.points_dropped == 10


def test_latest_metric_is_greatest_step_then_timestamp_then_value() -> None:
    events = [env(ev.RunDataLogged(RUN, metrics=[
        ev.Metric("m", 1.0, 100, 5), ev.Metric("m", 9.0, 200, 3), ev.Metric("m", 2.0, 100, 5), ev.Metric("m", 0.0, 50, 5),
    ]))]
    latest = run_write(plan_batch(events, state_with_run(), 1000))["$set"]["metrics.m"]
    assert (latest["s"], latest["t"], latest["v"]) == (5, 100, 2.0)


def test_nan_and_infinities_are_normalised() -> None:
    events = [env(ev.RunDataLogged(RUN, metrics=[metric(0, math.nan, key="n"), metric(0, math.inf, key="i"),
                                                 metric(0, -math.inf, key="j")]))]
    plan = plan_batch(events, state_with_run(), 1000)
    sets = run_write(plan)["$set"]
    assert sets["metrics.n"]["nan"] is True and sets["metrics.n"]["v"] == 0.0
    assert sets["metrics.i"]["v"] == 1.7976931348623157e308
    assert sets["metrics.j"]["v"] == -1.7976931348623157e308
    pushes = {w.update["$setOnInsert"]["key"]: w.update["$push"]["p"]["$each"] for w in plan.writes if w.collection == METRICS}
    assert pushes["n"] == [[0, 1, None]]


def test_param_change_rejects_the_whole_event_and_keeps_the_rest_of_the_batch() -> None:
    state = state_with_run(params={"lr": "0.1"})
    bad = env(ev.RunDataLogged(RUN, params=[ev.Tag("lr", "0.2")], metrics=[metric(0, 1.0)]), 1)
    good = env(ev.RunDataLogged(RUN, params=[ev.Tag("lr", "0.1"), ev.Tag("bs", "32")]), 2)
    plan = plan_batch([bad, good], state, 1000)
    assert plan.outcomes[bad.id].error_code == "INVALID_PARAMETER_VALUE"
    assert "Changing param values is not allowed" in plan.outcomes[bad.id].message
    assert plan.outcomes[good.id] is None
    assert run_write(plan) == {"$set": {"params.bs": "32"}}
    assert not [w for w in plan.writes if w.collection == METRICS]


def test_keys_with_dots_and_dollars_are_encoded_in_field_paths() -> None:
    events = [env(ev.RunDataLogged(RUN, params=[ev.Tag("a.b", "1")], tags=[ev.Tag("$x", "2")],
                                   metrics=[ev.Metric("c.d", 1.0, 1, 0)]))]
    sets = run_write(plan_batch(events, state_with_run(), 1000))["$set"]
    assert {"params.a%2Eb", "tags.%24x", "metrics.c%2Ed"} <= set(sets)
    assert not any(part.startswith("$") for path in sets for part in path.split("."))


def test_writes_to_missing_or_deleted_runs_are_rejected() -> None:
    missing = env(ev.RunDataLogged("b" * 32, metrics=[metric(0, 1.0)]), 1)
    state = state_with_run(lifecycle_stage="deleted")
    deleted = env(ev.RunDataLogged(RUN, metrics=[metric(0, 1.0)]), 2)
    plan = plan_batch([missing, deleted], state, 1000)
    assert plan.outcomes[missing.id].error_code == "RESOURCE_DOES_NOT_EXIST"
    assert "must be in the 'active' state" in plan.outcomes[deleted.id].message
    assert plan.writes == []


def test_events_apply_in_order_within_a_batch() -> None:
    events = [
        env(ev.RunDataLogged(RUN, tags=[ev.Tag("t", "1")]), 1),
        env(ev.RunTagDeleted(RUN, "t"), 2),
        env(ev.RunDataLogged(RUN, tags=[ev.Tag("t", "3")]), 3),
        env(ev.RunDeleted(RUN, 5), 4),
        env(ev.RunDataLogged(RUN, tags=[ev.Tag("t", "4")]), 5),
    ]
    plan = plan_batch(events, state_with_run(), 1000)
    assert [plan.outcomes[e.id] is None for e in events] == [True, True, True, True, False]
    update = run_write(plan)
    assert update["$set"]["tags.t"] == "3" and update["$set"]["lifecycle_stage"] == "deleted"
    assert "$unset" not in update


def test_create_run_then_log_in_the_same_batch_is_one_insert() -> None:
    state = state_with_run()
    new = "c" * 32
    events = [env(ev.RunCreated(new, "1", "u", "name", 5, "art", [ev.Tag("mlflow.runName", "name")]), 1),
              env(ev.RunDataLogged(new, params=[ev.Tag("p", "1")], metrics=[metric(0, 1.0)]), 2)]
    plan = plan_batch(events, state, 1000)
    [insert] = [w for w in plan.writes if w.collection == RUNS]
    assert insert.replacement["params"] == {"p": "1"} and insert.replacement["metrics"]["m"]["v"] == 1.0
    assert insert.replacement["mb"]["m"]["n"] == 1


def test_redelivered_create_is_a_no_op() -> None:
    event = env(ev.RunCreated(RUN, "1", "u", "other", 5, "art", []))
    plan = plan_batch([event], state_with_run(), 1000)
    assert plan.writes == [] and plan.outcomes[event.id] is None


def test_experiment_name_conflicts_and_delete_cascades_to_runs() -> None:
    state = state_with_run()
    dup = env(ev.ExperimentCreated("2", "e", "mlflow-artifacts:/2", 0), 1)
    delete = env(ev.ExperimentDeleted("1", 7), 2)
    plan = plan_batch([dup, delete], state, 1000)
    assert plan.outcomes[dup.id].error_code == "RESOURCE_ALREADY_EXISTS"
    assert [(w.collection, w.many) for w in plan.writes] == [(EXPERIMENTS, False), (RUNS, True)]
    assert plan.writes[1].update == {"$set": {"lifecycle_stage": "deleted", "deleted_time": 7}}


def test_bookkeeping_records_time_bounds_of_open_and_closed_buckets() -> None:
    events = [env(ev.RunDataLogged(RUN, metrics=[metric(i, 1.0, ts=100 + i) for i in range(1500)]))]
    mb = run_write(plan_batch(events, state_with_run(), bucket_size=1000))["$set"]["mb.m"]
    assert (mb["seq"], mb["n"], mb["tc"], mb["to"]) == (1, 500, 1099, 1599)


def test_a_named_batch_pushes_only_where_it_has_not_pushed_before() -> None:
    """A push a frozen MongoDB applies after the writer retried must not add the points twice."""
    events = [env(ev.RunDataLogged(RUN, metrics=[metric(1, 1.0)]))]
    plan = plan_batch(events, state_with_run(), 1000, write_token="batch-1")
    [push] = [w for w in plan.writes if w.collection == METRICS]
    assert push.filter["w"] == {"$ne": "batch-1"}
    assert push.update["$push"]["w"] == {"$each": ["batch-1"], "$slice": -16}
    assert push.already_applied_if_duplicate


def test_duplicate_key_on_an_already_applied_push_is_not_an_error() -> None:
    from pymongo.errors import BulkWriteError

    from writer.store import _all_already_applied
    from writer.writes import Write

    pushed = Write(METRICS, {"_id": "b"}, update={}, already_applied_if_duplicate=True)
    inserted = Write(METRICS, {"_id": "c"}, replacement={}, insert=True)
    assert _all_already_applied(BulkWriteError({"writeErrors": [{"index": 0, "code": 11000}]}), [pushed, inserted])
    assert not _all_already_applied(BulkWriteError({"writeErrors": [{"index": 1, "code": 11000}]}), [pushed, inserted])
    assert not _all_already_applied(BulkWriteError({"writeErrors": [{"index": 0, "code": 2}]}), [pushed, inserted])
