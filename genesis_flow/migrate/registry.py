"""The model registry: registered models (creation time, description, tags), their versions in order with the
same numbers, version tags, stages, and aliases, through the ordinary registry endpoints.

Version numbers are assigned by the writer (the model's next number), so versions are created in
the source's order; a number the source no longer has (a deleted version) is consumed by creating
and deleting a placeholder version, which keeps every later number equal. Version sources that
point into a source run's artifacts are rewritten to the same run's location on the target (run
ids are preserved); `runs:/` and `models:/` sources are kept as they are.
"""

from __future__ import annotations

import re
from typing import Any

from genesis_flow.migrate.plan import Stats, kv
from genesis_flow.migrate.source import Source
from genesis_flow.migrate.target import IMPORT, MLFLOW, Target, TargetError

NO_STAGE = "None"
LOGGED_MODEL_SOURCE = re.compile(r"^models:/(m-[0-9a-f]{32})/?$")


def _target_versions(target: Target, name: str) -> dict[int, dict[str, Any]]:
    escaped = name.replace("'", "\\'")
    out: dict[int, dict[str, Any]] = {}
    token = None
    while True:
        params = {"filter": f"name = '{escaped}'", "max_results": 1000}
        if token:
            params["page_token"] = token
        body = target.request("GET", f"{MLFLOW}/model-versions/search", params=params).json()
        for mv in body.get("model_versions", []):
            out[int(mv["version"])] = mv
        token = body.get("next_page_token")
        if not token:
            return out


def rewrite_source(source: Source, target: Target, mv: Any, run_uris: dict[str, tuple[str, str]]) -> str:
    """A version's source as the target can resolve it."""
    src = mv.source or ""
    if src.startswith(("runs:/", "models:/")) or not mv.run_id:
        return src
    if mv.run_id not in run_uris:
        src_uri = source.store.get_run(mv.run_id).info.artifact_uri
        state = target.run_state(mv.run_id)
        run_uris[mv.run_id] = (src_uri, state.get("artifact_uri", ""))
    src_uri, tgt_uri = run_uris[mv.run_id]
    if tgt_uri and src.rstrip("/").startswith(src_uri.rstrip("/")):
        return tgt_uri.rstrip("/") + src.rstrip("/")[len(src_uri.rstrip("/")):]
    return src


def _version_body(source: Source, target: Target, name: str, mv: Any,
                  run_uris: dict[str, tuple[str, str]]) -> dict[str, Any]:
    body = {"name": name, "source": rewrite_source(source, target, mv, run_uris), "tags": kv(dict(mv.tags or {}))}
    for field in ("run_id", "run_link", "description", "model_id"):
        value = getattr(mv, field, None)
        if value:
            body[field] = value
    logged = LOGGED_MODEL_SOURCE.match(body["source"])
    if logged and "model_id" not in body:  # some stores do not report it; the source names it
        body["model_id"] = logged.group(1)
    return body


def copy_registry(source: Source, target: Target, stats: Stats) -> None:
    try:
        models = source.registered_models()
    except Exception as exc:  # a source without a registry (old file stores) has nothing to copy
        stats.errors.append(f"registry: cannot read the source registry: {exc}")
        return
    run_uris: dict[str, tuple[str, str]] = {}
    for rm in models:
        try:
            _copy_model(source, target, rm, stats, run_uris)
        except TargetError as exc:
            stats.errors.append(f"registered model {rm.name!r}: {exc}")


def _copy_model(source: Source, target: Target, rm: Any, stats: Stats, run_uris: dict[str, tuple[str, str]]) -> None:
    name = rm.name
    body: dict[str, Any] = {"name": name, "tags": kv(dict(rm.tags or {}))}
    if rm.description:
        body["description"] = rm.description
    if rm.creation_timestamp is not None:
        body["creation_timestamp"] = int(rm.creation_timestamp)
    target.post(f"{IMPORT}/registered-model", body)
    stats.registered_models += 1
    have = _target_versions(target, name)
    versions = source.model_versions(name)
    wanted = {int(mv.version): mv for mv in versions}
    top = max(wanted, default=0)
    for number in range(max(have, default=0) + 1, top + 1):
        mv = wanted.get(number)
        if mv is None:  # deleted in the source: consume the number with a placeholder
            placeholder = _version_body(source, target, name, wanted[min(wanted)], run_uris)
            created = target.post(f"{MLFLOW}/model-versions/create", {**placeholder, "tags": []})
            got = int(created["model_version"]["version"])
            target.request("DELETE", f"{MLFLOW}/model-versions/delete", json={"name": name, "version": str(got)})
            continue
        created = target.post(f"{MLFLOW}/model-versions/create", _version_body(source, target, name, mv, run_uris))
        got = int(created["model_version"]["version"])
        if got != number:
            stats.errors.append(f"registered model {name!r}: version {number} became {got} on the target")
    have = _target_versions(target, name)
    for number, mv in wanted.items():
        stats.model_versions += 1
        tv = have.get(number)
        if tv is None:
            continue
        stage = mv.current_stage or NO_STAGE
        if (tv.get("current_stage") or NO_STAGE) != stage:
            target.post(f"{MLFLOW}/model-versions/transition-stage",
                        {"name": name, "version": str(number), "stage": stage, "archive_existing_versions": False})
        tv_tags = {t["key"]: t.get("value", "") for t in tv.get("tags", [])}
        for t in kv(dict(mv.tags or {})):
            if tv_tags.get(t["key"]) != t["value"]:
                target.post(f"{MLFLOW}/model-versions/set-tag", {"name": name, "version": str(number), **t})
    for alias in getattr(rm, "aliases", None) or {}:
        version = rm.aliases[alias] if isinstance(rm.aliases, dict) else None
        if version is None:
            continue
        target.post(f"{MLFLOW}/registered-models/alias", {"name": name, "alias": alias, "version": str(version)})
