"""The MLflow Model Registry REST surface as data: one request sequence, run against any server.

The same sequence runs against a stock `mlflow server` (the reference) and against Genesis-Flow;
`compare` then lists every field where the two disagree. Paths and methods are the ones
`mlflow.server.handlers.get_endpoints` registers for `ModelRegistryService` (the `rpc` options in
`mlflow/protos/model_registry_pb2.py`), webhooks left out:

    POST   registered-models/create             POST   model-versions/create
    POST   registered-models/rename             PATCH  model-versions/update
    PATCH  registered-models/update             DELETE model-versions/delete
    DELETE registered-models/delete             GET    model-versions/get
    GET    registered-models/get                GET    model-versions/search
    GET    registered-models/search             GET    model-versions/get-download-uri
    POST   registered-models/get-latest-versions  (GET too)
    POST   registered-models/set-tag            POST   model-versions/transition-stage
    DELETE registered-models/delete-tag         POST   model-versions/set-tag
    POST   registered-models/alias (set)        DELETE model-versions/delete-tag
    DELETE registered-models/alias (delete)
    GET    registered-models/alias (get a version by alias)

All under /api/2.0/mlflow/ (the reference serves the same under /ajax-api/2.0/mlflow/ for its UI).
Prompts have no endpoints of their own: the client stores them as registered models and versions
tagged `mlflow.prompt.is_prompt=true` (see `_prompt_steps`).

A step is `(name, method, path, body_or_query)`. GET bodies go out as query parameters (lists as
repeated parameters, the way the stock client's `call_endpoint` sends them); other methods send
JSON. Strings may hold placeholders `{u}` (a per-execution suffix, so the sequence can run again
and again against one server), `{experiment_id}`, `{run_id}`, `{run_id_2}`, `{artifact_uri}`,
`{model_id}` and page tokens; `CAPTURES` says which earlier response fills each of them.

Run it by hand:  python -m tests.registry.sequence http://127.0.0.1:5000 > transcript.txt
"""

from __future__ import annotations

import json
import re
import sys
import urllib.parse
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import requests

API = "/api/2.0/mlflow"
RM = f"{API}/registered-models"
MV = f"{API}/model-versions"

# The registry's own length limits (mlflow/utils/validation.py): tag values up to 100_000 chars,
# keys up to 250.
HUGE_TAG_VALUE = "x" * 100_001
LONG_TAG_KEY = "k" * 251

# What the stock client sends as the source of a prompt version (_CLIENT_PROMPT_SOURCE_PLACEHOLDER).
PROMPT_SOURCE = "dummy-source"
IS_PROMPT = "mlflow.prompt.is_prompt"


class Step(NamedTuple):
    name: str
    method: str
    path: str
    body_or_query: dict[str, Any] | None  # JSON body; query parameters for GET


@dataclass
class Result:
    name: str
    method: str
    path: str
    request: dict[str, Any] | None
    status: int
    body: Any  # parsed JSON, or the raw text when the response is not JSON
    # value -> stable token, shared by all results of one execution (see `normalise`)
    tokens: dict[str, str] = field(default_factory=dict, repr=False)


def _s(name: str, method: str, path: str, body: dict[str, Any] | None = None) -> Step:
    return Step(name, method, path, body)


def _tags(**kv: str) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in kv.items()]


# Model names. Everything the sequence creates carries {u}, so filters scoped by name see only
# this execution's models even on a server that ran the sequence before.
A = "reg-{u}-alpha"
A2 = "reg-{u}-alpha2"  # A after the rename
B = "reg-{u}-beta"
C = "reg-{u}-gamma"
D = "reg-{u}-delta"
MISSING = "reg-{u}-missing"
P = "prompt-{u}"
OURS = "name LIKE 'reg-{u}-%'"


def _setup_steps() -> list[Step]:
    # The experiment gets an mlflow-artifacts location so run artifact URIs look the same on both
    # servers (the reference's own default root is a local path) and `mlflow-artifacts:/` sources
    # can sit inside a run's artifact root, which is what the reference requires of them.
    return [
        _s("setup.experiment.create", "POST", f"{API}/experiments/create",
           {"name": "registry-{u}", "artifact_location": "mlflow-artifacts:/registry-{u}"}),
        _s("setup.run.create", "POST", f"{API}/runs/create",
           {"experiment_id": "{experiment_id}", "run_name": "registry-run-1", "start_time": 1700000000000,
            "tags": _tags(**{"mlflow.runName": "registry-run-1"})}),
        _s("setup.run2.create", "POST", f"{API}/runs/create",
           {"experiment_id": "{experiment_id}", "run_name": "registry-run-2", "start_time": 1700000001000,
            "tags": _tags(**{"mlflow.runName": "registry-run-2"})}),
        # MLflow 3 registers logged models: `mlflow.register_model("models:/<model_id>", name)`.
        _s("setup.logged_model.create", "POST", f"{API}/logged-models",
           {"experiment_id": "{experiment_id}", "name": "registry-lm", "source_run_id": "{run_id}"}),
    ]


def _registered_model_create_steps() -> list[Step]:
    return [
        _s("rm.create", "POST", f"{RM}/create",
           {"name": A, "tags": _tags(team="ml-{u}", k="v", **{"stage.team": "core"}),
            "description": "first model"}),
        _s("rm.create.duplicate", "POST", f"{RM}/create", {"name": A}),
        _s("rm.get", "GET", f"{RM}/get", {"name": A}),
        _s("rm.get.missing", "GET", f"{RM}/get", {"name": MISSING}),
        _s("rm.get.no_name", "GET", f"{RM}/get", None),
        _s("rm.create.beta", "POST", f"{RM}/create", {"name": B, "tags": _tags(team="ml-{u}", k="other")}),
        _s("rm.create.gamma", "POST", f"{RM}/create", {"name": C}),
        _s("rm.create.missing_name", "POST", f"{RM}/create", {"description": "no name"}),
        _s("rm.create.empty_name", "POST", f"{RM}/create", {"name": ""}),
        _s("rm.create.name_wrong_type", "POST", f"{RM}/create", {"name": 123}),
        _s("rm.create.name_with_slash", "POST", f"{RM}/create", {"name": "reg-{u}/bad"}),
        _s("rm.create.tags_not_list", "POST", f"{RM}/create", {"name": "reg-{u}-badtags", "tags": {"a": "b"}}),
        _s("rm.create.huge_tag_value", "POST", f"{RM}/create",
           {"name": "reg-{u}-hugetag", "tags": [{"key": "big", "value": HUGE_TAG_VALUE}]}),
        _s("rm.create.long_tag_key", "POST", f"{RM}/create",
           {"name": "reg-{u}-longkey", "tags": [{"key": LONG_TAG_KEY, "value": "v"}]}),
        # None of the rejected creates may have left a model behind.
        _s("rm.get.after_bad_tags", "GET", f"{RM}/get", {"name": "reg-{u}-badtags"}),
        _s("rm.get.after_huge_tag", "GET", f"{RM}/get", {"name": "reg-{u}-hugetag"}),
        _s("rm.get.after_long_key", "GET", f"{RM}/get", {"name": "reg-{u}-longkey"}),
        # A model that never gets a version.
        _s("rm.create.delta", "POST", f"{RM}/create", {"name": D, "description": "no versions"}),
    ]


def _model_version_create_steps() -> list[Step]:
    return [
        _s("mv.create.1", "POST", f"{MV}/create",
           {"name": A, "source": "runs:/{run_id}/model", "run_id": "{run_id}",
            "tags": _tags(k="v1", flavor="sklearn"), "description": "v1"}),
        _s("mv.create.2", "POST", f"{MV}/create",
           {"name": A, "source": "{artifact_uri}/model", "run_id": "{run_id}",
            "tags": _tags(k="v2"), "description": "v2"}),
        _s("mv.create.3", "POST", f"{MV}/create",
           {"name": A, "source": "runs:/{run_id_2}/model", "run_id": "{run_id_2}", "tags": _tags(k="v3")}),
        _s("mv.create.from_logged_model", "POST", f"{MV}/create",
           {"name": C, "source": "models:/{model_id}", "model_id": "{model_id}"}),
        _s("setup.logged_model.get_after_register", "GET", f"{API}/logged-models/{{model_id}}", None),
        _s("mv.create.from_registered_version", "POST", f"{MV}/create",
           {"name": B, "source": "models:/" + A + "/1"}),
        _s("mv.create.missing_model", "POST", f"{MV}/create",
           {"name": MISSING, "source": "runs:/{run_id}/model", "run_id": "{run_id}"}),
        _s("mv.create.missing_source", "POST", f"{MV}/create", {"name": A}),
        _s("mv.create.run_mismatch", "POST", f"{MV}/create",
           {"name": A, "source": "runs:/{run_id}/model", "run_id": "{run_id_2}"}),
        _s("mv.create.runs_source_without_run_id", "POST", f"{MV}/create",
           {"name": A, "source": "runs:/{run_id}/model"}),
        _s("mv.create.artifacts_outside_run", "POST", f"{MV}/create",
           {"name": A, "source": "mlflow-artifacts:/registry-{u}/elsewhere/model", "run_id": "{run_id}"}),
        _s("mv.create.relative_source", "POST", f"{MV}/create",
           {"name": A, "source": "{artifact_uri}/../../../x", "run_id": "{run_id}"}),
        # The reference accepts a runs:/ source whose run does not exist, as long as run_id
        # names the same run (it never looks the run up). On C, so A keeps versions 1-3.
        _s("mv.create.nonexistent_run", "POST", f"{MV}/create",
           {"name": C, "source": "runs:/0123456789abcdef0123456789abcdef/model",
            "run_id": "0123456789abcdef0123456789abcdef"}),
        _s("mv.create.huge_tag_value", "POST", f"{MV}/create",
           {"name": A, "source": "runs:/{run_id}/model", "run_id": "{run_id}",
            "tags": [{"key": "big", "value": HUGE_TAG_VALUE}]}),
        # None of the failed creates above may have used up a version number.
        _s("mv.search.after_failed_creates", "GET", f"{MV}/search",
           {"filter": "name = '" + A + "'", "order_by": ["version_number ASC"]}),
    ]


def _model_version_edit_steps() -> list[Step]:
    return [
        _s("mv.get", "GET", f"{MV}/get", {"name": A, "version": "1"}),
        _s("mv.get.missing", "GET", f"{MV}/get", {"name": A, "version": "99"}),
        _s("mv.get.bad_version", "GET", f"{MV}/get", {"name": A, "version": "abc"}),
        _s("mv.get.missing_model", "GET", f"{MV}/get", {"name": MISSING, "version": "1"}),
        _s("mv.get.no_version", "GET", f"{MV}/get", {"name": A}),
        _s("mv.update", "PATCH", f"{MV}/update", {"name": A, "version": "1", "description": "v1 updated"}),
        _s("mv.update.missing", "PATCH", f"{MV}/update", {"name": A, "version": "99", "description": "x"}),
        _s("mv.set_tag", "POST", f"{MV}/set-tag", {"name": A, "version": "1", "key": "reviewed", "value": "yes"}),
        _s("mv.set_tag.overwrite", "POST", f"{MV}/set-tag", {"name": A, "version": "1", "key": "k", "value": "v1b"}),
        _s("mv.set_tag.version_int", "POST", f"{MV}/set-tag", {"name": A, "version": 1, "key": "x", "value": "y"}),
        _s("mv.set_tag.missing_version", "POST", f"{MV}/set-tag",
           {"name": A, "version": "99", "key": "reviewed", "value": "yes"}),
        _s("mv.set_tag.huge_value", "POST", f"{MV}/set-tag",
           {"name": A, "version": "1", "key": "big", "value": HUGE_TAG_VALUE}),
        _s("mv.set_tag.no_key", "POST", f"{MV}/set-tag", {"name": A, "version": "1", "value": "v"}),
        _s("mv.get.after_tag", "GET", f"{MV}/get", {"name": A, "version": "1"}),
        _s("mv.delete_tag", "DELETE", f"{MV}/delete-tag", {"name": A, "version": "1", "key": "reviewed"}),
        _s("mv.delete_tag.absent_key", "DELETE", f"{MV}/delete-tag", {"name": A, "version": "1", "key": "reviewed"}),
        _s("mv.delete_tag.missing_version", "DELETE", f"{MV}/delete-tag", {"name": A, "version": "99", "key": "k"}),
        _s("mv.get.after_delete_tag", "GET", f"{MV}/get", {"name": A, "version": "1"}),
    ]


def _stage_steps() -> list[Step]:
    def transition(version: str, stage: str, archive: Any = False) -> dict[str, Any]:
        return {"name": A, "version": version, "stage": stage, "archive_existing_versions": archive}

    return [
        _s("mv.transition.1_staging", "POST", f"{MV}/transition-stage", transition("1", "Staging")),
        _s("mv.transition.2_production", "POST", f"{MV}/transition-stage", transition("2", "Production")),
        _s("mv.transition.3_production_archive", "POST", f"{MV}/transition-stage",
           transition("3", "Production", True)),
        _s("mv.get.2_after_archive", "GET", f"{MV}/get", {"name": A, "version": "2"}),
        _s("mv.get.1_still_staging", "GET", f"{MV}/get", {"name": A, "version": "1"}),
        _s("mv.transition.lowercase_stage", "POST", f"{MV}/transition-stage", transition("3", "production")),
        _s("mv.transition.bad_stage", "POST", f"{MV}/transition-stage", transition("1", "Foo")),
        _s("mv.transition.archive_from_inactive_stage", "POST", f"{MV}/transition-stage",
           transition("1", "Archived", True)),
        _s("mv.transition.archive_not_bool", "POST", f"{MV}/transition-stage", transition("1", "Staging", "yes")),
        _s("mv.transition.missing_stage", "POST", f"{MV}/transition-stage", {"name": A, "version": "1"}),
        _s("mv.transition.missing_version", "POST", f"{MV}/transition-stage", transition("99", "Staging")),
        _s("rm.get_latest.all", "POST", f"{RM}/get-latest-versions", {"name": A}),
        _s("rm.get_latest.staging_production", "POST", f"{RM}/get-latest-versions",
           {"name": A, "stages": ["Staging", "Production"]}),
        _s("rm.get_latest.lowercase", "POST", f"{RM}/get-latest-versions", {"name": A, "stages": ["archived"]}),
        _s("rm.get_latest.none_stage", "POST", f"{RM}/get-latest-versions", {"name": B, "stages": ["None"]}),
        _s("rm.get_latest.get_method", "GET", f"{RM}/get-latest-versions", {"name": A, "stages": ["Production"]}),
        _s("rm.get_latest.bad_stage", "POST", f"{RM}/get-latest-versions", {"name": A, "stages": ["Bogus"]}),
        _s("rm.get_latest.missing", "POST", f"{RM}/get-latest-versions", {"name": MISSING}),
        _s("rm.get_latest.no_versions", "POST", f"{RM}/get-latest-versions", {"name": D}),
    ]


def _alias_steps() -> list[Step]:
    return [
        _s("alias.set", "POST", f"{RM}/alias", {"name": A, "alias": "champion", "version": "3"}),
        _s("alias.set.second", "POST", f"{RM}/alias", {"name": A, "alias": "challenger", "version": "1"}),
        _s("alias.get", "GET", f"{RM}/alias", {"name": A, "alias": "champion"}),
        _s("alias.get.latest", "GET", f"{RM}/alias", {"name": A, "alias": "latest"}),
        _s("alias.get.missing_alias", "GET", f"{RM}/alias", {"name": A, "alias": "nope"}),
        _s("alias.get.missing_model", "GET", f"{RM}/alias", {"name": MISSING, "alias": "champion"}),
        _s("rm.get.with_aliases", "GET", f"{RM}/get", {"name": A}),
        _s("mv.get.with_alias", "GET", f"{MV}/get", {"name": A, "version": "3"}),
        _s("alias.set.missing_version", "POST", f"{RM}/alias", {"name": A, "alias": "ghost", "version": "99"}),
        _s("alias.set.missing_model", "POST", f"{RM}/alias", {"name": MISSING, "alias": "ghost", "version": "1"}),
        _s("alias.set.reserved_latest", "POST", f"{RM}/alias", {"name": A, "alias": "Latest", "version": "1"}),
        _s("alias.set.reserved_version", "POST", f"{RM}/alias", {"name": A, "alias": "v1", "version": "1"}),
        _s("alias.set.bad_chars", "POST", f"{RM}/alias", {"name": A, "alias": "bad alias!", "version": "1"}),
        _s("alias.set.bad_version", "POST", f"{RM}/alias", {"name": A, "alias": "x", "version": "one"}),
        _s("alias.set.no_version", "POST", f"{RM}/alias", {"name": A, "alias": "x"}),
        _s("alias.set.move", "POST", f"{RM}/alias", {"name": A, "alias": "challenger", "version": "2"}),
        _s("alias.get.moved", "GET", f"{RM}/alias", {"name": A, "alias": "challenger"}),
        _s("alias.delete", "DELETE", f"{RM}/alias", {"name": A, "alias": "challenger"}),
        _s("alias.get.deleted", "GET", f"{RM}/alias", {"name": A, "alias": "challenger"}),
        _s("alias.delete.absent", "DELETE", f"{RM}/alias", {"name": A, "alias": "challenger"}),
        _s("alias.delete.missing_model", "DELETE", f"{RM}/alias", {"name": MISSING, "alias": "champion"}),
        _s("mv.download_uri.runs_source", "GET", f"{MV}/get-download-uri", {"name": A, "version": "1"}),
        _s("mv.download_uri.artifacts_source", "GET", f"{MV}/get-download-uri", {"name": A, "version": "2"}),
        _s("mv.download_uri.logged_model_source", "GET", f"{MV}/get-download-uri", {"name": C, "version": "1"}),
        _s("mv.download_uri.registered_source", "GET", f"{MV}/get-download-uri", {"name": B, "version": "1"}),
        _s("mv.download_uri.missing", "GET", f"{MV}/get-download-uri", {"name": A, "version": "99"}),
    ]


def _search_registered_model_steps() -> list[Step]:
    search = f"{RM}/search"
    return [
        _s("rm.search.like", "GET", search, {"filter": OURS}),
        _s("rm.search.eq", "GET", search, {"filter": "name = '" + B + "'"}),
        _s("rm.search.ilike", "GET", search, {"filter": "name ILIKE 'REG-{u}-AL%'"}),
        _s("rm.search.ne", "GET", search, {"filter": "name != '" + B + "' AND " + OURS}),
        _s("rm.search.in", "GET", search, {"filter": "name IN ('" + A + "', '" + C + "')"}),
        _s("rm.search.tag", "GET", search, {"filter": "tags.team = 'ml-{u}'"}),
        _s("rm.search.tag_and_tag", "GET", search, {"filter": "tags.team = 'ml-{u}' AND tags.k = 'v'"}),
        _s("rm.search.tag_backticks", "GET", search, {"filter": "tags.`stage.team` = 'core' AND " + OURS}),
        _s("rm.search.tag_like", "GET", search, {"filter": "tag.team LIKE 'ml-%' AND " + OURS}),
        _s("rm.search.tag_ne", "GET", search, {"filter": "tags.k != 'v' AND " + OURS}),
        _s("rm.search.order_name_desc", "GET", search, {"filter": OURS, "order_by": ["name DESC"]}),
        _s("rm.search.order_last_updated", "GET", search,
           {"filter": OURS, "order_by": ["last_updated_timestamp ASC"]}),
        # The reference orders every timestamp key by last_updated_time (A was created first but
        # changed last), so this shows whether creation_timestamp really sorts by creation.
        _s("rm.search.order_creation", "GET", search, {"filter": OURS, "order_by": ["creation_timestamp ASC"]}),
        _s("rm.search.order_two_keys", "GET", search,
           {"filter": OURS, "order_by": ["last_updated_timestamp DESC", "name ASC"]}),
        _s("rm.search.page1", "GET", search, {"filter": OURS, "max_results": 1}),
        _s("rm.search.page2", "GET", search, {"filter": OURS, "max_results": 1, "page_token": "{rm_page_2}"}),
        _s("rm.search.page3", "GET", search, {"filter": OURS, "max_results": 1, "page_token": "{rm_page_3}"}),
        _s("rm.search.page4", "GET", search, {"filter": OURS, "max_results": 1, "page_token": "{rm_page_4}"}),
        _s("rm.search.post_method", "POST", search, {"filter": OURS}),
        _s("rm.search.bad_attribute", "GET", search, {"filter": "foo = 1"}),
        _s("rm.search.bad_attribute_string", "GET", search, {"filter": "description = 'x'"}),
        _s("rm.search.or", "GET", search, {"filter": "name = 'a' OR name = 'b'"}),
        _s("rm.search.bad_comparator", "GET", search, {"filter": "name > 'a'"}),
        _s("rm.search.tag_unquoted_value", "GET", search, {"filter": "tags.k = 1"}),
        _s("rm.search.tag_in", "GET", search, {"filter": "tags.k IN ('v')"}),
        _s("rm.search.unparsable", "GET", search, {"filter": "name = = 'x'"}),
        _s("rm.search.max_results_0", "GET", search, {"filter": OURS, "max_results": 0}),
        _s("rm.search.max_results_1000", "GET", search, {"filter": OURS, "max_results": 1000}),
        _s("rm.search.max_results_1001", "GET", search, {"filter": OURS, "max_results": 1001}),
        _s("rm.search.max_results_not_int", "GET", search, {"filter": OURS, "max_results": "abc"}),
        _s("rm.search.max_results_negative", "GET", search, {"filter": OURS, "max_results": -1}),
        _s("rm.search.bad_page_token", "GET", search, {"filter": OURS, "page_token": "garbage"}),
        _s("rm.search.bad_order_by", "GET", search, {"filter": OURS, "order_by": ["foo"]}),
        _s("rm.search.order_by_duplicate", "GET", search, {"filter": OURS, "order_by": ["name", "name DESC"]}),
        _s("rm.search.order_by_bad_direction", "GET", search, {"filter": OURS, "order_by": ["name UP"]}),
    ]


def _search_model_version_steps() -> list[Step]:
    search = f"{MV}/search"
    by_a = "name = '" + A + "'"
    return [
        # Default order: last_updated_timestamp DESC, name ASC, version_number DESC.
        _s("mv.search.name", "GET", search, {"filter": by_a}),
        _s("mv.search.name_like", "GET", search, {"filter": "name LIKE 'reg-{u}-%'", "order_by": ["name ASC"]}),
        _s("mv.search.run_id", "GET", search, {"filter": "run_id = '{run_id}'"}),
        _s("mv.search.run_id_in", "GET", search,
           {"filter": "run_id IN ('{run_id}', '{run_id_2}') AND " + by_a, "order_by": ["version_number ASC"]}),
        _s("mv.search.version_number", "GET", search, {"filter": by_a + " AND version_number = 2"}),
        _s("mv.search.version_number_gt", "GET", search, {"filter": by_a + " AND version_number > 1"}),
        _s("mv.search.version_number_quoted", "GET", search, {"filter": by_a + " AND version_number = '2'"}),
        _s("mv.search.tag", "GET", search, {"filter": by_a + " AND tags.k = 'v2'"}),
        _s("mv.search.tag_like", "GET", search, {"filter": by_a + " AND tag.k LIKE 'v%'",
                                                 "order_by": ["version_number ASC"]}),
        _s("mv.search.source_path", "GET", search, {"filter": "source_path = 'runs:/{run_id}/model'"}),
        _s("mv.search.order_version_asc", "GET", search, {"filter": by_a, "order_by": ["version_number ASC"]}),
        _s("mv.search.order_creation_desc", "GET", search, {"filter": by_a, "order_by": ["creation_timestamp DESC"]}),
        _s("mv.search.page1", "GET", search, {"filter": by_a, "order_by": ["version_number ASC"], "max_results": 2}),
        _s("mv.search.page2", "GET", search,
           {"filter": by_a, "order_by": ["version_number ASC"], "max_results": 2, "page_token": "{mv_page_2}"}),
        _s("mv.search.bad_attribute", "GET", search, {"filter": "foo = 'x'"}),
        _s("mv.search.stage_attribute", "GET", search, {"filter": "current_stage = 'Production'"}),
        _s("mv.search.numeric_on_string", "GET", search, {"filter": "name = 2"}),
        _s("mv.search.bad_numeric_value", "GET", search, {"filter": by_a + " AND version_number = 'abc'"}),
        _s("mv.search.tag_bad_comparator", "GET", search, {"filter": "tags.k > 'a'"}),
        _s("mv.search.or", "GET", search, {"filter": by_a + " OR run_id = 'x'"}),
        _s("mv.search.bad_order_by", "GET", search, {"filter": by_a, "order_by": ["run_id ASC"]}),
        _s("mv.search.max_results_0", "GET", search, {"filter": by_a, "max_results": 0}),
        _s("mv.search.max_results_too_big", "GET", search, {"filter": by_a, "max_results": 200_001}),
        _s("mv.search.max_results_not_int", "GET", search, {"filter": by_a, "max_results": "ten"}),
        _s("mv.search.bad_page_token", "GET", search, {"filter": by_a, "page_token": "garbage"}),
    ]


def _registered_model_edit_steps() -> list[Step]:
    return [
        _s("rm.set_tag", "POST", f"{RM}/set-tag", {"name": A, "key": "owner", "value": "alice"}),
        _s("rm.set_tag.overwrite", "POST", f"{RM}/set-tag", {"name": A, "key": "owner", "value": "bob"}),
        _s("rm.delete_tag", "DELETE", f"{RM}/delete-tag", {"name": A, "key": "k"}),
        _s("rm.delete_tag.absent_key", "DELETE", f"{RM}/delete-tag", {"name": A, "key": "k"}),
        _s("rm.delete_tag.missing_model", "DELETE", f"{RM}/delete-tag", {"name": MISSING, "key": "k"}),
        _s("rm.set_tag.missing_model", "POST", f"{RM}/set-tag", {"name": MISSING, "key": "owner", "value": "x"}),
        _s("rm.set_tag.huge_value", "POST", f"{RM}/set-tag", {"name": A, "key": "big", "value": HUGE_TAG_VALUE}),
        _s("rm.set_tag.no_key", "POST", f"{RM}/set-tag", {"name": A, "value": "x"}),
        _s("rm.set_tag.bad_key", "POST", f"{RM}/set-tag", {"name": A, "key": "../etc", "value": "x"}),
        _s("rm.get.after_tags", "GET", f"{RM}/get", {"name": A}),
        _s("rm.update", "PATCH", f"{RM}/update", {"name": A, "description": "updated description"}),
        _s("rm.update.missing", "PATCH", f"{RM}/update", {"name": MISSING, "description": "x"}),
        _s("rm.update.no_description", "PATCH", f"{RM}/update", {"name": B}),
        _s("rm.get.after_update", "GET", f"{RM}/get", {"name": B}),
        _s("rm.rename", "POST", f"{RM}/rename", {"name": A, "new_name": A2}),
        _s("rm.get.old_name", "GET", f"{RM}/get", {"name": A}),
        _s("rm.get.new_name", "GET", f"{RM}/get", {"name": A2}),
        _s("mv.get.after_rename", "GET", f"{MV}/get", {"name": A2, "version": "1"}),
        _s("mv.get.old_name_after_rename", "GET", f"{MV}/get", {"name": A, "version": "1"}),
        _s("alias.get.after_rename", "GET", f"{RM}/alias", {"name": A2, "alias": "champion"}),
        _s("mv.search.after_rename", "GET", f"{MV}/search",
           {"filter": "name = '" + A2 + "'", "order_by": ["version_number ASC"]}),
        _s("rm.rename.to_existing", "POST", f"{RM}/rename", {"name": A2, "new_name": B}),
        _s("rm.rename.missing", "POST", f"{RM}/rename", {"name": MISSING, "new_name": "reg-{u}-zeta"}),
        _s("rm.rename.no_new_name", "POST", f"{RM}/rename", {"name": A2}),
        _s("rm.rename.bad_new_name", "POST", f"{RM}/rename", {"name": A2, "new_name": "bad:name"}),
    ]


def _delete_steps() -> list[Step]:
    return [
        _s("mv.delete", "DELETE", f"{MV}/delete", {"name": A2, "version": "1"}),
        _s("mv.get.deleted", "GET", f"{MV}/get", {"name": A2, "version": "1"}),
        _s("mv.delete.again", "DELETE", f"{MV}/delete", {"name": A2, "version": "1"}),
        _s("mv.search.after_delete", "GET", f"{MV}/search", {"filter": "name = '" + A2 + "'"}),
        _s("rm.get_latest.after_delete", "POST", f"{RM}/get-latest-versions", {"name": A2}),
        _s("mv.create.after_delete", "POST", f"{MV}/create",
           {"name": A2, "source": "runs:/{run_id}/model", "run_id": "{run_id}"}),
        _s("rm.delete", "DELETE", f"{RM}/delete", {"name": A2}),
        _s("rm.get.deleted", "GET", f"{RM}/get", {"name": A2}),
        _s("mv.get.after_model_delete", "GET", f"{MV}/get", {"name": A2, "version": "2"}),
        _s("mv.search.after_model_delete", "GET", f"{MV}/search", {"filter": "name = '" + A2 + "'"}),
        _s("alias.get.after_model_delete", "GET", f"{RM}/alias", {"name": A2, "alias": "champion"}),
        _s("rm.delete.missing", "DELETE", f"{RM}/delete", {"name": A2}),
        _s("rm.create.reuse_deleted_name", "POST", f"{RM}/create", {"name": A2}),
        _s("mv.create.reuse_deleted_name", "POST", f"{MV}/create",
           {"name": A2, "source": "runs:/{run_id}/model", "run_id": "{run_id}"}),
        _s("rm.search.after_deletes", "GET", f"{RM}/search", {"filter": OURS}),
    ]


def _prompt_steps() -> list[Step]:
    """What `mlflow.genai.register_prompt`, `load_prompt`, `set_prompt_alias`, `search_prompts`,
    `MlflowClient.search_prompt_versions`, `delete_prompt_version` and `delete_prompt` send
    (recorded from the 3.17 client against the reference)."""
    text_tags = {IS_PROMPT: "true", "_mlflow_prompt_type": "text"}
    return [
        _s("prompt.get.before_register", "GET", f"{RM}/get", {"name": P}),
        _s("prompt.create", "POST", f"{RM}/create",
           {"name": P, "tags": _tags(**{IS_PROMPT: "true", "team": "a"}), "description": "first"}),
        _s("prompt.version.create.1", "POST", f"{MV}/create",
           {"name": P, "source": PROMPT_SOURCE,
            "tags": _tags(team="a", **text_tags, **{"mlflow.prompt.text": "Hello {{name}}"}),
            "description": "first"}),
        _s("prompt.get", "GET", f"{RM}/get", {"name": P}),
        _s("prompt.link_experiment", "POST", f"{RM}/set-tag",
           {"name": P, "key": "_mlflow_experiment_ids", "value": ",{experiment_id},"}),
        _s("prompt.version.create.2", "POST", f"{MV}/create",
           {"name": P, "source": PROMPT_SOURCE,
            "tags": _tags(**text_tags, **{"mlflow.prompt.text": "Hi {{name}}!"}), "description": "second"}),
        _s("prompt.version.create.store_placeholder", "POST", f"{MV}/create",
           {"name": P, "source": "prompt-template",
            "tags": _tags(**text_tags, **{"mlflow.prompt.text": "Yo"})}),
        _s("prompt.version.create.bad_source", "POST", f"{MV}/create",
           {"name": P, "source": "runs:/{run_id}/model", "run_id": "{run_id}",
            "tags": _tags(**text_tags, **{"mlflow.prompt.text": "x"})}),
        _s("prompt.version.get.1", "GET", f"{MV}/get", {"name": P, "version": "1"}),
        _s("prompt.alias.set", "POST", f"{RM}/alias", {"name": P, "alias": "prod", "version": "1"}),
        _s("prompt.alias.get", "GET", f"{RM}/alias", {"name": P, "alias": "prod"}),
        _s("prompt.alias.get.latest", "GET", f"{RM}/alias", {"name": P, "alias": "latest"}),
        _s("prompt.search", "GET", f"{RM}/search",
           {"filter": f"tags.`{IS_PROMPT}` = 'true' AND name LIKE 'prompt-{{u}}%'", "max_results": 100}),
        _s("prompt.search.by_experiment", "GET", f"{RM}/search",
           {"filter": f"tags.`{IS_PROMPT}` = 'true' AND tags._mlflow_experiment_ids LIKE '%,{{experiment_id}},%'",
            "max_results": 100}),
        _s("prompt.search.not_prompt", "GET", f"{RM}/search",
           {"filter": f"tags.`{IS_PROMPT}` != 'true' AND name LIKE '%-{{u}}%'"}),
        _s("prompt.search.hidden_from_models", "GET", f"{RM}/search", {"filter": "name LIKE 'prompt-{u}%'"}),
        _s("prompt.versions.search", "GET", f"{MV}/search",
           {"filter": f"name = '{P}' AND tag.`{IS_PROMPT}` = 'true'", "max_results": 100,
            "order_by": ["version_number DESC"]}),
        _s("prompt.versions.hidden_from_models", "GET", f"{MV}/search", {"filter": f"name = '{P}'"}),
        _s("prompt.model_with_prompt_name", "POST", f"{RM}/create", {"name": P}),
        _s("prompt.prompt_with_model_name", "POST", f"{RM}/create",
           {"name": B, "tags": _tags(**{IS_PROMPT: "true"})}),
        _s("prompt.set_tag", "POST", f"{RM}/set-tag", {"name": P, "key": "k", "value": "v"}),
        _s("prompt.delete_tag", "DELETE", f"{RM}/delete-tag", {"name": P, "key": "k"}),
        _s("prompt.version.set_tag", "POST", f"{MV}/set-tag", {"name": P, "version": "1", "key": "vk", "value": "vv"}),
        _s("prompt.version.delete_tag", "DELETE", f"{MV}/delete-tag", {"name": P, "version": "1", "key": "vk"}),
        _s("prompt.alias.delete", "DELETE", f"{RM}/alias", {"name": P, "alias": "prod"}),
        _s("prompt.version.delete", "DELETE", f"{MV}/delete", {"name": P, "version": "2"}),
        _s("prompt.get.after_version_delete", "GET", f"{RM}/get", {"name": P}),
        _s("prompt.delete", "DELETE", f"{RM}/delete", {"name": P}),
        _s("prompt.get.deleted", "GET", f"{RM}/get", {"name": P}),
    ]


def build_steps() -> list[Step]:
    return [
        *_setup_steps(),
        *_registered_model_create_steps(),
        *_model_version_create_steps(),
        *_model_version_edit_steps(),
        *_stage_steps(),
        *_alias_steps(),
        *_search_registered_model_steps(),
        *_search_model_version_steps(),
        *_registered_model_edit_steps(),
        *_delete_steps(),
        *_prompt_steps(),
    ]


STEPS: list[Step] = build_steps()

# step name -> {placeholder: path into that step's JSON response}
CAPTURES: dict[str, dict[str, tuple[str, ...]]] = {
    "setup.experiment.create": {"experiment_id": ("experiment_id",)},
    "setup.run.create": {"run_id": ("run", "info", "run_id"), "artifact_uri": ("run", "info", "artifact_uri")},
    "setup.run2.create": {"run_id_2": ("run", "info", "run_id")},
    "setup.logged_model.create": {"model_id": ("model", "info", "model_id")},
    "rm.search.page1": {"rm_page_2": ("next_page_token",)},
    "rm.search.page2": {"rm_page_3": ("next_page_token",)},
    "rm.search.page3": {"rm_page_4": ("next_page_token",)},
    "mv.search.page1": {"mv_page_2": ("next_page_token",)},
}

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_KNOWN_PLACEHOLDERS = {"u"} | {p for caps in CAPTURES.values() for p in caps}


def fill(value: Any, ctx: Mapping[str, str]) -> Any:
    """Replace {placeholder}s in every string of `value`. Only known placeholder names are touched,
    so prompt templates like "Hello {{name}}" go out as written; a placeholder whose source step
    failed becomes "MISSING-<name>" and the request still goes out (the diff will show why)."""
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            key = m.group(1)
            if key not in _KNOWN_PLACEHOLDERS:
                return m.group(0)
            return ctx.get(key, f"MISSING-{key}")
        return _PLACEHOLDER.sub(sub, value)
    if isinstance(value, list):
        return [fill(v, ctx) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, ctx) for k, v in value.items()}
    return value


def _dig(body: Any, path: tuple[str, ...]) -> str | None:
    for key in path:
        if not isinstance(body, dict) or key not in body:
            return None
        body = body[key]
    return body if isinstance(body, str) else None


def _send(session: requests.Session, base_url: str, step: Step, ctx: Mapping[str, str]) -> Result:
    path = fill(step.path, ctx)
    body = fill(step.body_or_query, ctx)
    url = base_url.rstrip("/") + path
    if step.method == "GET":
        resp = session.get(url, params=body, timeout=60)
    else:
        resp = session.request(step.method, url, json=body, timeout=60)
    try:
        parsed: Any = resp.json()
    except ValueError:
        parsed = resp.text
    return Result(step.name, step.method, path, body, resp.status_code, parsed)


def _tokens(ctx: Mapping[str, str]) -> dict[str, str]:
    """Values of this execution that must not show in a comparison, and their stand-ins.
    Experiment ids are short numbers, so they are replaced only where the key says so (see
    `normalise`), plus the prompt's experiment-list tag value that embeds one."""
    tokens = {ctx[k]: f"<{k}>" for k in ("run_id", "run_id_2", "model_id", "u") if ctx.get(k)}
    if ctx.get("experiment_id"):
        tokens[f",{ctx['experiment_id']},"] = ",<experiment_id>,"
    return tokens


def run_sequence(base_url: str, steps: list[Step] | None = None, u: str | None = None) -> list[Result]:
    """Send every step in order; later steps see values captured from earlier responses."""
    ctx: dict[str, str] = {"u": u or uuid.uuid4().hex[:10]}
    tokens: dict[str, str] = {}
    results = []
    with requests.Session() as session:
        for step in steps or STEPS:
            result = _send(session, base_url, step, ctx)
            for placeholder, path in CAPTURES.get(step.name, {}).items():
                value = _dig(result.body, path)
                if value is not None:
                    ctx[placeholder] = value
            tokens.update(_tokens(ctx))
            result.tokens = tokens  # shared: ids captured later still normalise earlier results
            results.append(result)
    return results


# ---- normalisation -------------------------------------------------------------------------

_TIMESTAMP_KEYS = {"creation_timestamp", "last_updated_timestamp", "creation_timestamp_ms",
                   "last_updated_timestamp_ms", "start_time", "end_time", "creation_time", "last_update_time"}
_KEY_TOKENS = {"user_id": "<user_id>", "experiment_id": "<experiment_id>", "next_page_token": "<page_token>"}


# A Python set literal of strings inside an error message, e.g. "Valid keys are '{'name',
# 'timestamp'}'": the reference prints sets, whose order changes with every server process
# (string hashing is randomised), so their items are sorted before comparing.
_SET_REPR = re.compile(r"\{'[^{}']*'(?:, '[^{}']*')*\}")


def _sorted_set_repr(m: re.Match[str]) -> str:
    items = sorted(m.group(0)[1:-1].split(", "))
    return "{" + ", ".join(items) + "}"


def _sub_strings(text: str, tokens: Mapping[str, str]) -> str:
    if text in tokens:
        return tokens[text]
    text = _SET_REPR.sub(_sorted_set_repr, text)
    # Longest first, so a run id is not half-replaced by a shorter value it contains. Short values
    # (experiment ids) only ever match whole (above).
    for value in sorted(tokens, key=len, reverse=True):
        if len(value) >= 8:
            text = text.replace(value, tokens[value])
    return text


def _sort_key(item: Any) -> str:
    if isinstance(item, dict):
        return json.dumps([item.get("key"), item.get("alias"), item.get("version")], sort_keys=True)
    return json.dumps(item)


def normalise(body: Any, tokens: Mapping[str, str] | None = None, key: str | None = None) -> Any:
    """A copy of `body` that two servers can agree on: timestamps, user ids, experiment ids and
    page tokens become fixed tokens; this execution's run ids, logged model id and unique suffix
    become `<run_id>`, `<run_id_2>`, `<model_id>`, `<u>` wherever they appear in a string.
    Lists the client turns into dicts or sets (tags, aliases) and `latest_versions` (one per
    stage, order not specified by MLflow) are sorted; result lists of searches keep their order,
    because that order is part of the contract."""
    tokens = tokens or {}
    if key in _TIMESTAMP_KEYS and isinstance(body, int | str):
        return "<timestamp>"
    if key in _KEY_TOKENS and isinstance(body, str) and body:
        return _KEY_TOKENS[key]
    if isinstance(body, dict):
        return {k: normalise(v, tokens, k) for k, v in body.items()}
    if isinstance(body, list):
        items = [normalise(v, tokens) for v in body]
        if key in ("tags", "aliases", "latest_versions"):
            items.sort(key=_sort_key)
        return items
    if isinstance(body, str):
        return _sub_strings(body, tokens)
    return body


# ---- comparison ----------------------------------------------------------------------------

def _short(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def _diff(ref: Any, ours: Any, where: str) -> list[str]:
    if isinstance(ref, dict) and isinstance(ours, dict):
        out = []
        for k in sorted(set(ref) | set(ours)):
            sub = f"{where}.{k}" if where else k
            if k not in ours:
                out.append(f"{sub}: missing (reference has {_short(ref[k])})")
            elif k not in ref:
                out.append(f"{sub}: unexpected {_short(ours[k])} (reference has no such field)")
            else:
                out.extend(_diff(ref[k], ours[k], sub))
        return out
    if isinstance(ref, list) and isinstance(ours, list):
        out = []
        if len(ref) != len(ours):
            out.append(f"{where}: {len(ours)} items, reference has {len(ref)}")
        for i, (r, o) in enumerate(zip(ref, ours)):
            out.extend(_diff(r, o, f"{where}[{i}]"))
        return out
    if ref != ours:
        return [f"{where or 'body'}: {_short(ours)}, reference has {_short(ref)}"]
    return []


def _error_fields(body: Any) -> dict[str, Any]:
    # A non-JSON error (e.g. the framework's HTML 405 page) only has its status to compare.
    if not isinstance(body, dict):
        return {}
    return {k: body.get(k) for k in ("error_code", "message")}


def compare(ref: list[Result], ours: list[Result], skip: Collection[str] = ()) -> list[str]:
    """Human-readable differences, one line each, prefixed by the step name. Status codes always
    count; error responses compare only error_code and message; successful ones compare the whole
    normalised body."""
    out: list[str] = []
    ours_by_name = {r.name: r for r in ours}
    for r in ref:
        if r.name in skip:
            continue
        o = ours_by_name.get(r.name)
        if o is None:
            out.append(f"{r.name}: step missing from our results")
            continue
        if r.status != o.status:
            out.append(f"{r.name}: status {o.status}, reference has {r.status}"
                       f" (ours: {_short(normalise(o.body, o.tokens))})")
            continue
        if r.status >= 400:
            ref_body, our_body = _error_fields(r.body), _error_fields(o.body)
        else:
            ref_body, our_body = r.body, o.body
        for line in _diff(normalise(ref_body, r.tokens), normalise(our_body, o.tokens), ""):
            out.append(f"{r.name}: {line}")
    return out


# ---- transcript ----------------------------------------------------------------------------

def _clip_long_strings(value: Any, limit: int = 300) -> Any:
    if isinstance(value, str) and len(value) > limit:
        return value[:40] + f"...<{len(value)} chars in all>"
    if isinstance(value, list):
        return [_clip_long_strings(v, limit) for v in value]
    if isinstance(value, dict):
        return {k: _clip_long_strings(v, limit) for k, v in value.items()}
    return value


def format_transcript(results: list[Result]) -> str:
    """One block per step: the request as sent and the response as received (long strings
    clipped so the huge-tag steps stay readable)."""
    blocks = []
    if results:
        legend = "\n".join(f"  {tok} = {val}" for val, tok in results[-1].tokens.items())
        blocks.append(f"Values of this execution (and their tokens after normalisation):\n{legend}\n")
    for i, r in enumerate(results, 1):
        request = r.path
        if r.method == "GET" and r.request:
            request += "?" + urllib.parse.urlencode(r.request, doseq=True)
        lines = [f"=== {i:03d} {r.name}", f"{r.method} {request}"]
        if r.request is not None:
            what = "query parameters" if r.method == "GET" else "request body"
            lines.append(f"{what}: " + json.dumps(_clip_long_strings(r.request), indent=2))
        lines.append(f"-> {r.status}")
        body = r.body if isinstance(r.body, str) else json.dumps(_clip_long_strings(r.body), indent=2)
        lines.append(body)
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


if __name__ == "__main__":
    print(format_transcript(run_sequence(sys.argv[1])))
