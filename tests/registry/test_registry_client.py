"""The model registry with the stock MLflow client, against both ways of running Genesis-Flow
(`standalone`, and `distributed`: nginx in front of ingest, writer and query processes)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import mlflow
import numpy as np
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sklearn.linear_model import LogisticRegression

from tests.stack import Stack

pytestmark = pytest.mark.integration

X = np.array([[0.0], [1.0], [2.0], [3.0]])
Y = np.array([0, 0, 1, 1])


@pytest.fixture(scope="module")
def uri(tracking_stack: Stack) -> str:
    return tracking_stack.url("uri")


@pytest.fixture(scope="module")
def client(uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture
def tracking(uri: str, monkeypatch: pytest.MonkeyPatch):
    """The fluent API pointed at this stack, and put back after: a registry URI left set (MLflow
    keeps it in a module global and in MLFLOW_REGISTRY_URI) would send later tests' registry calls
    to a stack that no longer runs."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    yield
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _run_with_version(client: MlflowClient, name: str, **kwargs) -> str:
    run = client.create_run("0")
    return client.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id, **kwargs).version


def test_log_model_twice_registers_versions_and_the_alias_loads(client: MlflowClient, tracking) -> None:
    name = _name("churn")
    model = LogisticRegression().fit(X, Y)
    for _ in range(2):
        with mlflow.start_run():
            mlflow.sklearn.log_model(model, name="model", registered_model_name=name)
    assert sorted(v.version for v in client.search_model_versions(f"name='{name}'")) == ["1", "2"]

    client.set_registered_model_alias(name, "champion", "2")
    by_alias = client.get_model_version_by_alias(name, "champion")
    assert (by_alias.version, by_alias.aliases) == ("2", ["champion"])
    assert client.get_registered_model(name).aliases == {"champion": "2"}
    loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert list(loaded.predict(X)) == [0, 0, 1, 1]
    assert list(mlflow.pyfunc.load_model(f"models:/{name}/1").predict(X)) == [0, 0, 1, 1]

    # MLflow 3: the version's source is the logged model, which records the versions it became
    version = client.get_model_version(name, "2")
    assert version.source.startswith("models:/m-")
    logged = client.get_logged_model(version.source.removeprefix("models:/"))
    assert f'"name": "{name}", "version": "2"' in logged.tags["mlflow.modelVersions"]


def test_register_model_from_a_run_and_download_uri(client: MlflowClient, uri: str, tracking, tmp_path) -> None:
    name = _name("reg")
    with mlflow.start_run() as run:
        mlflow.sklearn.log_model(LogisticRegression().fit(X, Y), name="m")
    # MLflow 3 keeps a model's files under the logged model: the client registers that instead
    mv = mlflow.register_model(f"runs:/{run.info.run_id}/m", name)
    assert mv.version == "1" and mv.run_id == run.info.run_id
    model_id = mv.source.removeprefix("models:/")
    assert client.get_model_version_download_uri(name, "1") == client.get_logged_model(model_id).artifact_location
    local = mlflow.artifacts.download_artifacts(f"models:/{name}/1", dst_path=str(tmp_path))
    assert [p.name for p in Path(local).rglob("MLmodel")] == ["MLmodel"]
    # the UI's download of one file of a version, through the same artifact store
    response = requests.get(f"{uri}/model-versions/get-artifact",
                            params={"name": name, "version": "1", "path": "MLmodel"}, timeout=30)
    assert response.status_code == 200 and b"flavors" in response.content
    escaping = requests.get(f"{uri}/model-versions/get-artifact",
                            params={"name": name, "version": "1", "path": "../../secret"}, timeout=30)
    assert escaping.status_code == 400


def test_create_get_update_tags_and_errors(client: MlflowClient) -> None:
    name = _name("model")
    created = client.create_registered_model(name, tags={"team": "fraud"}, description="first")
    assert (created.name, created.tags, created.description) == (name, {"team": "fraud"}, "first")
    with pytest.raises(MlflowException, match=rf"Registered Model \(name={name}\) already exists"):
        client.create_registered_model(name)
    with pytest.raises(MlflowException, match="not found") as missing:
        client.get_registered_model(name + "-missing")
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"

    client.update_registered_model(name, description="second")
    client.set_registered_model_tag(name, "stage", "beta")
    client.delete_registered_model_tag(name, "team")
    got = client.get_registered_model(name)
    assert (got.description, got.tags) == ("second", {"stage": "beta"})

    v1 = _run_with_version(client, name, tags={"k": "v"}, description="d1")
    client.update_model_version(name, v1, description="better")
    client.set_model_version_tag(name, v1, "validated", "yes")
    client.delete_model_version_tag(name, v1, "k")
    mv = client.get_model_version(name, v1)
    assert (mv.description, mv.tags, mv.status) == ("better", {"validated": "yes"}, "READY")
    with pytest.raises(MlflowException, match=r"Model Version \(name=.*, version=9\) not found"):
        client.get_model_version(name, "9")
    with pytest.raises(MlflowException, match="reserved"):
        client.set_registered_model_alias(name, "latest", v1)
    with pytest.raises(MlflowException, match="alias nope not found"):
        client.get_model_version_by_alias(name, "nope")


def test_transition_stage_archives_existing_and_latest_versions(client: MlflowClient) -> None:
    name = _name("staged")
    client.create_registered_model(name)
    versions = [_run_with_version(client, name) for _ in range(3)]
    client.transition_model_version_stage(name, versions[0], "Production")
    client.transition_model_version_stage(name, versions[1], "staging")
    moved = client.transition_model_version_stage(name, versions[2], "Production", archive_existing_versions=True)
    assert moved.current_stage == "Production"
    stages = {v.version: v.current_stage for v in client.search_model_versions(f"name='{name}'")}
    assert stages == {"1": "Archived", "2": "Staging", "3": "Production"}
    latest = client.get_latest_versions(name, stages=["Production", "Staging"])
    assert sorted((v.version, v.current_stage) for v in latest) == [("2", "Staging"), ("3", "Production")]
    with pytest.raises(MlflowException, match="Invalid Model Version stage"):
        client.transition_model_version_stage(name, versions[0], "Prod")


def test_rename_keeps_versions_and_delete_cascades(client: MlflowClient) -> None:
    name, new_name = _name("old"), _name("new")
    client.create_registered_model(name)
    _run_with_version(client, name)
    _run_with_version(client, name)
    client.set_registered_model_alias(name, "prod", "2")
    client.rename_registered_model(name, new_name)
    assert client.get_registered_model(new_name).aliases == {"prod": "2"}
    assert sorted(v.version for v in client.search_model_versions(f"name='{new_name}'")) == ["1", "2"]
    assert client.get_model_version_by_alias(new_name, "prod").version == "2"
    with pytest.raises(MlflowException, match="not found"):
        client.get_registered_model(name)

    client.delete_model_version(new_name, "1")
    assert [v.version for v in client.search_model_versions(f"name='{new_name}'")] == ["2"]
    assert _run_with_version(client, new_name) == "3"  # numbers are never reused

    client.delete_registered_model(new_name)
    assert client.search_model_versions(f"name='{new_name}'") == []
    with pytest.raises(MlflowException, match="not found"):
        client.get_model_version(new_name, "2")


def test_search_filters_order_and_paging(client: MlflowClient) -> None:
    prefix = _name("search")
    names = [f"{prefix}-{i}" for i in range(5)]
    for i, name in enumerate(names):
        client.create_registered_model(name, tags={"parity": "even" if i % 2 == 0 else "odd"})
    found = client.search_registered_models(f"name LIKE '{prefix}-%'", order_by=["name DESC"])
    assert [m.name for m in found] == names[::-1]
    even = client.search_registered_models(f"name LIKE '{prefix}%' AND tags.parity = 'even'")
    assert [m.name for m in even] == [names[0], names[2], names[4]]
    assert [m.name for m in client.search_registered_models(f"name ILIKE '{prefix.upper()}-3'")] == [names[3]]

    seen, token = [], None
    while True:
        page = client.search_registered_models(f"name LIKE '{prefix}-%'", max_results=2, page_token=token)
        seen += [m.name for m in page]
        token = page.token
        if not token:
            break
    assert seen == names

    for _ in range(3):
        _run_with_version(client, names[0])
    versions = client.search_model_versions(f"name = '{names[0]}' AND version_number >= 2",
                                            order_by=["version_number ASC"])
    assert [v.version for v in versions] == ["2", "3"]
    with pytest.raises(MlflowException, match="Invalid attribute key 'foo'") as bad:
        client.search_registered_models("foo = 'x'")
    assert bad.value.error_code == "INVALID_PARAMETER_VALUE"


def test_concurrent_version_creates_are_numbered_without_gaps(client: MlflowClient) -> None:
    name = _name("race")
    client.create_registered_model(name)
    run_id = client.create_run("0").info.run_id
    numbers: list[str] = []
    errors: list[BaseException] = []

    def create(n: int) -> None:
        try:
            for _ in range(n):
                numbers.append(client.create_model_version(name, f"runs:/{run_id}/m", run_id=run_id).version)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(5,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(int(n) for n in numbers) == list(range(1, 41))
    stored = client.search_model_versions(f"name='{name}'")
    assert sorted(int(v.version) for v in stored) == list(range(1, 41))


def test_prompts_round_trip_and_stay_out_of_model_search(client: MlflowClient, tracking) -> None:
    name = _name("greet").replace("-", "_")
    mlflow.genai.register_prompt(name=name, template="Hello {{who}}", tags={"lang": "en"})
    mlflow.genai.register_prompt(name=name, template="Hi {{who}}!")
    mlflow.genai.set_prompt_alias(name, alias="prod", version=2)
    assert mlflow.genai.load_prompt(f"prompts:/{name}/1").template == "Hello {{who}}"
    assert mlflow.genai.load_prompt(f"prompts:/{name}@prod").template == "Hi {{who}}!"
    assert mlflow.genai.load_prompt(f"prompts:/{name}/1").format(who="Ada") == "Hello Ada"
    assert name in [p.name for p in mlflow.genai.search_prompts(f"name = '{name}'")]
    assert client.search_registered_models(f"name = '{name}'") == []
    with pytest.raises(MlflowException, match="already taken by a prompt"):
        client.create_registered_model(name)
