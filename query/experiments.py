"""Experiment reads: by id, by name, and search."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from common import documents
from common.errors import MlflowError
from common.mongo import EXPERIMENTS
from common.validation import experiment_not_found_message
from query import requests as rq
from query.filters import parse_experiment_filter, parse_experiment_id, parse_experiment_order_by
from query.paging import decode_token, fingerprint
from query.search import SearchPlan, fetch_page
from query.translate import experiment_filter, experiment_sort_plan


async def get_experiment(db: AsyncDatabase, experiment_id: str) -> dict[str, Any]:
    eid = parse_experiment_id(experiment_id)  # "007" is experiment 7, as in the SQL store
    doc = await db[EXPERIMENTS].find_one({"_id": eid})
    if doc is None:
        raise MlflowError.not_found(experiment_not_found_message(eid))
    return {"experiment": documents.experiment(doc)}


async def get_experiment_by_name(db: AsyncDatabase, name: str) -> dict[str, Any]:
    doc = await db[EXPERIMENTS].find_one({"name": name})
    if doc is None:
        # The client turns this 404 into `None`.
        raise MlflowError.not_found(f"Could not find experiment with name '{name}'")
    return {"experiment": documents.experiment(doc)}


def plan_experiment_search(req: rq.SearchExperiments) -> SearchPlan:
    """Validate the request and decide the query; pure, so every rule is unit-testable."""
    limit = rq.max_results(req.max_results, rq.SEARCH_MAX_RESULTS_DEFAULT)
    stages = rq.view_stages(req.view_type)
    clauses = parse_experiment_filter(req.filter)
    sort = experiment_sort_plan(parse_experiment_order_by(req.order_by))
    search = fingerprint("experiments", req.filter or "", req.order_by, stages)
    cursor = decode_token(req.page_token, search, len(sort.keys))
    return SearchPlan(experiment_filter(stages, clauses), sort, limit, search, cursor)


async def search_experiments(db: AsyncDatabase, req: rq.SearchExperiments) -> dict[str, Any]:
    plan = plan_experiment_search(req)
    rows, token = await fetch_page(db[EXPERIMENTS], plan)
    out: dict[str, Any] = {}
    if rows:
        out["experiments"] = [documents.experiment(doc) for doc in rows]
    if token:
        out["next_page_token"] = token
    return out
