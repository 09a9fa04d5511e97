"""runs/search latency as an experiment grows, with the query plan MongoDB chose.

Stores N runs in the production layout (the writer's own documents), then runs the search the
design names: a metric filter, a param filter and a metric sort, through the query tier's own
code (`query.runs.plan_run_search` + `query.search.fetch_page`), and prints p50/p95 and the
`explain` of the query.

    python bench/search_scale.py --runs 5000 50000 [--mongodb-uri ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

from pymongo import AsyncMongoClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.documents import new_run_document  # noqa: E402
from common.mongo import RUNS, ensure_indexes  # noqa: E402
from query import requests as rq  # noqa: E402
from query.runs import plan_run_search  # noqa: E402
from query.search import fetch_page  # noqa: E402

FILTER = "metrics.rmse < 0.5 and params.model = 'tree'"
ORDER = ["metrics.rmse DESC"]


def run_doc(i: int, exp: str, experiments: int = 1) -> dict:
    doc = new_run_document(run_id=uuid.uuid4().hex, experiment_id=exp, user_id="bench", run_name=f"r{i}",
                           start_time=1_700_000_000_000 + i, artifact_uri="x", tags=[("mlflow.runName", f"r{i}")])
    nth = i // experiments  # position within its experiment: half of each experiment is "tree"
    doc["params"] = {"model": "tree" if nth % 2 else "linear", "lr": str(i % 7)}
    doc["metrics"] = {"rmse": {"v": (i * 7919 % 1000) / 1000, "t": 1, "s": 0, "nan": False},
                      "acc": {"v": 0.5, "t": 1, "s": 0, "nan": False}}
    doc["mb"] = {"rmse": {"seq": 0, "n": 1, "tc": -1}, "acc": {"seq": 0, "n": 1, "tc": -1}}
    return doc


async def measure(db, exp: str, queries: int) -> tuple[list[float], int, dict]:
    req = rq.SearchRuns(experiment_ids=[exp], filter=FILTER, order_by=ORDER, max_results=100)
    plan = plan_run_search(req)
    assert plan is not None
    timings = []
    rows: list = []
    for _ in range(queries):
        start = time.perf_counter()
        rows, _token = await fetch_page(db[RUNS], plan)
        timings.append((time.perf_counter() - start) * 1000)
    explain = await db.command("aggregate", RUNS, pipeline=plan.pipeline(), explain=True) if plan.sort.computed \
        else await db[RUNS].find(plan.find_filter()).explain()
    return timings, len(rows), explain


def winning_plan(explain: dict) -> object:
    stages = explain.get("stages")
    if stages:
        return stages[0].get("$cursor", {}).get("queryPlanner", {}).get("winningPlan", stages[0])
    return explain.get("queryPlanner", {}).get("winningPlan", explain)


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, nargs="+", default=[5000, 50000])
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--experiments", type=int, default=1,
                        help="spread the runs over this many experiments; the search names one of them")
    parser.add_argument("--mongodb-uri", default="mongodb://127.0.0.1:27017/?directConnection=true")
    args = parser.parse_args()
    client = AsyncMongoClient(args.mongodb_uri)
    db = client[f"bench_search_{uuid.uuid4().hex[:8]}"]
    try:
        build = await client.admin.command("buildInfo")
        print(f"MongoDB server: {build.get('version')} {build.get('gitVersion', '')[:20]}")
        await ensure_indexes(db)
        exp, stored = "1", 0
        for target in sorted(args.runs):
            start = time.perf_counter()
            while stored < target:
                batch = [run_doc(i, str(1 + i % args.experiments), args.experiments)
                         for i in range(stored, min(target, stored + 2000))]
                await db[RUNS].insert_many(batch, ordered=False)
                stored += len(batch)
            load_s = time.perf_counter() - start
            timings, n, explain = await measure(db, exp, args.queries)
            print(f"\n{target:>7} runs, {target // args.experiments} in the searched experiment (loaded in {load_s:.1f}s): "
                  f"p50 {statistics.median(timings):.1f} ms, p95 {sorted(timings)[int(len(timings) * 0.95) - 1]:.1f} ms, "
                  f"{n} rows on the first page")
            print("winning plan:", json.dumps(winning_plan(explain), default=str)[:1500])
    finally:
        await client.drop_database(db.name)
        await client.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
