"""Registry reads both tiers need: ingest checks what a write addresses and answers with the
committed entity, query serves the reads. Each is one or two indexed queries."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from common import registry as reg
from common.mongo import MODEL_VERSIONS, REGISTERED_MODELS

_VERSION_SORT = [("version", -1)]


async def find_model(db: AsyncDatabase, name: str) -> dict[str, Any] | None:
    return await db[REGISTERED_MODELS].find_one({"name": name})


async def model(db: AsyncDatabase, name: str) -> dict[str, Any]:
    """The registered model named `name`, or MLflow's RESOURCE_DOES_NOT_EXIST."""
    reg.validate_model_name(name)
    doc = await find_model(db, name)
    if doc is None:
        raise reg.model_not_found(name)
    return doc


async def versions_of(db: AsyncDatabase, model_keys: list[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in model_keys}
    if model_keys:
        async for doc in db[MODEL_VERSIONS].find({"rm": {"$in": model_keys}}, sort=_VERSION_SORT):
            out[doc["rm"]].append(doc)
    return out


async def version(db: AsyncDatabase, name: str, number: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model, version) for `name` and `number`, with MLflow's errors for each way it is missing."""
    reg.validate_model_name(name)
    n = reg.validate_version(number)
    model_doc = await find_model(db, name)
    vdoc = None if model_doc is None else await db[MODEL_VERSIONS].find_one(
        {"_id": reg.version_id(model_doc["_id"], n)})
    if model_doc is None or vdoc is None:
        raise reg.version_not_found(name, n)
    return model_doc, vdoc


async def rendered_model(db: AsyncDatabase, model_doc: dict[str, Any]) -> dict[str, Any]:
    versions = (await versions_of(db, [model_doc["_id"]]))[model_doc["_id"]]
    return reg.registered_model(model_doc, reg.latest_versions(versions))


async def rendered_version(db: AsyncDatabase, name: str, number: Any) -> dict[str, Any]:
    model_doc, vdoc = await version(db, name, number)
    return reg.model_version(vdoc, reg.aliases_of(model_doc, vdoc["version"]))
