"""Logged-model reads (MLflow 3): get one model, search models. Both read the `logged_models`
collection alone: tags, params and the metric entries are embedded in the model document."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from common import documents
from common.errors import MlflowError
from common.mongo import LOGGED_MODELS
from query import requests as rq
from query.filters import parse_experiment_id, parse_model_filter, parse_model_order_by
from query.paging import decode_token, fingerprint
from query.search import SearchPlan, fetch_page
from query.translate import model_filter, model_sort_plan


def model_not_found_message(model_id: str) -> str:
    return f"Logged model with ID '{model_id}' not found."


async def get_logged_model(db: AsyncDatabase, req: rq.GetLoggedModel) -> dict[str, Any]:
    query: dict[str, Any] = {"_id": req.model_id}
    if not req.include_deleted:
        query["lifecycle_stage"] = {"$ne": "deleted"}
    doc = await db[LOGGED_MODELS].find_one(query)
    if doc is None:
        raise MlflowError.not_found(model_not_found_message(req.model_id))
    return {"model": documents.logged_model(doc)}


def _datasets(req: rq.SearchLoggedModels) -> list[tuple[str, str | None]]:
    if not all(d.dataset_name for d in req.datasets):
        raise MlflowError.invalid("`dataset_name` in the `datasets` clause must be specified.")
    return [(d.dataset_name, d.dataset_digest or None) for d in req.datasets]


def plan_logged_model_search(req: rq.SearchLoggedModels) -> SearchPlan | None:
    """Validate the request and decide the query (None: no experiment named, nothing to find)."""
    datasets = _datasets(req)
    limit = rq.logged_models_page_size(req.max_results)
    experiment_ids = sorted({parse_experiment_id(e) for e in req.experiment_ids})
    clauses = parse_model_filter(req.filter)
    terms = parse_model_order_by(req.order_by)
    sort = model_sort_plan(terms)
    search = fingerprint("logged_models", experiment_ids, req.filter or "", datasets,
                         [(t.kind, t.key, t.ascending, t.dataset_name, t.dataset_digest) for t in terms])
    cursor = decode_token(req.page_token, search, len(sort.keys))
    if not experiment_ids:
        return None
    return SearchPlan(model_filter(experiment_ids, clauses, datasets), sort, limit, search, cursor)


async def search_logged_models(db: AsyncDatabase, req: rq.SearchLoggedModels) -> dict[str, Any]:
    plan = plan_logged_model_search(req)
    if plan is None:
        return {}
    rows, token = await fetch_page(db[LOGGED_MODELS], plan)
    out: dict[str, Any] = {}
    if rows:
        out["models"] = [documents.logged_model(doc) for doc in rows]
    if token:
        out["next_page_token"] = token
    return out
