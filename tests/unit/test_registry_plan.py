"""The writer's registry rules are plain code: events + loaded state in, writes + outcomes out."""

from __future__ import annotations

from common import events as ev
from common import registry as reg
from common.mongo import MODEL_VERSIONS, REGISTERED_MODELS
from writer.plan import BatchState, plan_batch
from writer.registry_plan import RegistryState

KEY = "rm-" + "a" * 32


def env(event: ev.Event, i: int) -> ev.Envelope:
    return ev.Envelope(id=f"e{i}", partition_key=ev.partition_key(event), published_at=0, event=event)


def created(name: str = "churn", key: str = KEY) -> ev.RegisteredModelCreated:
    return ev.RegisteredModelCreated(key, name, 1)


def version_created(t: int = 2, name: str = "churn") -> ev.ModelVersionCreated:
    return ev.ModelVersionCreated(KEY, name, t, source="runs:/r/m", storage_location="runs:/r/m", run_id="r")


def stored(versions: int = 0, name: str = "churn", **model_fields) -> BatchState:
    """A model with `versions` stored versions, as the store would load it."""
    model = reg.new_registered_model_document(key=KEY, name=name, time=1, description=None, tags=[])
    model["next_version"] = versions + 1
    model.update(model_fields)
    docs = {n: reg.new_model_version_document(key=KEY, name=name, version=n, time=1, source="s", storage_location="s",
                                              run_id=None, run_link=None, description=None, model_id=None, tags=[],
                                              event_id=f"old{n}") for n in range(1, versions + 1)}
    return BatchState(registry=RegistryState(models={KEY: model}, names={name: KEY}, versions={KEY: docs}))


def test_versions_created_in_one_batch_are_numbered_in_order() -> None:
    events = [env(created(), 0), *(env(version_created(), i) for i in range(1, 4))]
    plan = plan_batch(events, BatchState(), bucket_size=1000)
    assert all(o is None for o in plan.outcomes.values())
    assert [plan.assigned[f"e{i}"] for i in range(1, 4)] == [1, 2, 3]
    inserted = [w.replacement["version"] for w in plan.writes if w.collection == MODEL_VERSIONS and w.replacement]
    assert inserted == [1, 2, 3]


def test_a_redelivered_version_create_keeps_its_number_and_writes_nothing() -> None:
    state = stored(versions=2)
    state.registry.versions[KEY][2]["event"] = "e7"
    plan = plan_batch([env(version_created(), 7)], state, bucket_size=1000)
    assert plan.assigned == {"e7": 2} and plan.writes == []


def test_numbers_are_never_reused_after_a_delete() -> None:
    state = stored(versions=3)
    del state.registry.versions[KEY][3]  # deleted earlier; the model's counter remembers it
    state.registry.models[KEY]["next_version"] = 4
    plan = plan_batch([env(version_created(), 1)], state, bucket_size=1000)
    assert plan.assigned == {"e1": 4}


def test_archive_existing_moves_only_versions_in_the_target_stage() -> None:
    state = stored(versions=3)
    state.registry.versions[KEY][1]["current_stage"] = "Production"
    state.registry.versions[KEY][2]["current_stage"] = "Staging"
    plan = plan_batch([env(ev.ModelVersionStageSet(KEY, "churn", 3, "Production", True, 9), 1)], state, 1000)
    updates = {w.filter["_id"]: w.update["$set"]["current_stage"] for w in plan.writes
               if w.collection == MODEL_VERSIONS}
    assert updates == {reg.version_id(KEY, 1): "Archived", reg.version_id(KEY, 3): "Production"}


def test_deleting_a_version_drops_the_aliases_that_point_to_it() -> None:
    state = stored(versions=2, aliases={"champion": 2, "old": 1})
    plan = plan_batch([env(ev.ModelVersionDeleted(KEY, "churn", 2, 9), 1)], state, 1000)
    [model_write] = [w for w in plan.writes if w.collection == REGISTERED_MODELS]
    assert model_write.update["$unset"] == {"aliases.champion": ""}
    assert [w.delete for w in plan.writes if w.collection == MODEL_VERSIONS] == [True]


def test_rename_to_a_taken_name_is_rejected_and_writes_nothing() -> None:
    state = stored(versions=1)
    state.registry.names["taken"] = "rm-other"
    plan = plan_batch([env(ev.RegisteredModelRenamed(KEY, "churn", "taken", 5), 1)], state, 1000)
    assert plan.outcomes["e1"].error_code == "RESOURCE_ALREADY_EXISTS"
    assert plan.writes == []


def test_rename_moves_every_version_to_the_new_name() -> None:
    plan = plan_batch([env(ev.RegisteredModelRenamed(KEY, "churn", "fraud", 5), 1)], stored(versions=2), 1000)
    [versions] = [w for w in plan.writes if w.collection == MODEL_VERSIONS]
    assert versions.many and versions.filter == {"rm": KEY} and versions.update["$set"]["name"] == "fraud"


def test_alias_on_a_missing_version_is_not_found() -> None:
    plan = plan_batch([env(ev.RegisteredModelAliasSet(KEY, "churn", "prod", 5), 1)], stored(versions=2), 1000)
    assert plan.outcomes["e1"].message == "Model Version (name=churn, version=5) not found"


def test_a_duplicate_create_in_one_batch_is_rejected_with_mlflows_message() -> None:
    events = [env(created("x", KEY), 0), env(created("x", "rm-" + "b" * 32), 1)]
    plan = plan_batch(events, BatchState(), 1000)
    assert plan.outcomes["e0"] is None
    assert plan.outcomes["e1"].message == "Registered Model (name=x) already exists."


def test_prompt_tags_mark_the_version_as_a_prompt() -> None:
    state = stored(versions=1)
    plan = plan_batch([env(ev.ModelVersionTagSet(KEY, "churn", 1, reg.IS_PROMPT_TAG_KEY, "true"), 1)], state, 1000)
    [w] = plan.writes
    assert w.update["$set"]["prompt"] is True
