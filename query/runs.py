"""Run reads: get one run, search runs. Both read the `runs` collection alone: info, params, tags
and latest metrics are embedded in the run document."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from common import documents
from common.errors import MlflowError
from common.mongo import RUNS
from common.validation import run_not_found_message
from query import requests as rq
from query.filters import parse_experiment_id, parse_run_filter, parse_run_order_by
from query.paging import decode_token, fingerprint
from query.search import SearchPlan, fetch_page
from query.translate import metrics_present, run_filter, run_sort_plan

# The writer's bucket bookkeeping: never part of a response.
WRITER_ONLY_FIELDS = ("mb",)


async def get_run(db: AsyncDatabase, run_id: str) -> dict[str, Any]:
    doc = await db[RUNS].find_one({"_id": run_id}, {f: 0 for f in WRITER_ONLY_FIELDS})
    if doc is None:
        raise MlflowError.not_found(run_not_found_message(run_id))
    return {"run": documents.run(doc)}


def plan_run_search(req: rq.SearchRuns) -> SearchPlan | None:
    """Validate the request and decide the query (None: no experiment named, nothing to find)."""
    limit = rq.max_results(req.max_results, rq.SEARCH_MAX_RESULTS_DEFAULT)
    experiment_ids = sorted({parse_experiment_id(str(e)) for e in req.experiment_ids})
    stages = rq.view_stages(req.run_view_type)
    clauses = parse_run_filter(req.filter)
    sort = run_sort_plan(parse_run_order_by(req.order_by), metrics_present(clauses))
    search = fingerprint("runs", experiment_ids, req.filter or "", req.order_by, stages)
    cursor = decode_token(req.page_token, search, len(sort.keys))
    if not experiment_ids:
        return None
    match = run_filter(experiment_ids, stages, clauses)
    return SearchPlan(match, sort, limit, search, cursor, exclude=WRITER_ONLY_FIELDS)


async def search_runs(db: AsyncDatabase, req: rq.SearchRuns) -> dict[str, Any]:
    plan = plan_run_search(req)
    if plan is None:
        return {}
    rows, token = await fetch_page(db[RUNS], plan)
    out: dict[str, Any] = {}
    if rows:
        out["runs"] = [documents.run(doc, with_model_inputs=False) for doc in rows]
    if token:
        out["next_page_token"] = token
    return out
