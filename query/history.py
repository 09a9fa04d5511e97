"""Metric history from buckets: `get-history` (paged) and `get-history-bulk-interval` (sampled).

A bucket (see `writer/plan.py`) holds up to `metric_bucket_size` points `[step, timestamp,
value (None = NaN), {extras}?]` of one (run, key) with its time range `t0..t1`. History is read
with one query per request:

* get-history orders points by (timestamp, step, value), like the SQL store, which stores NaN as
  value 0 (and is_nan breaks the remaining tie). Buckets arrive in `t0` order and reading stops as
  soon as no later bucket can hold a point of this page. The page token is a keyset cursor (the
  last point's sort key) plus, for an ordered history, the bucket to resume from.
  When the writer recorded the history as ordered (no point older than a point of an earlier
  bucket: the run's `mb.<key>.o`), bucket order is time order and buckets are fetched by id,
  a few at a time from the resume bucket, so a page costs about one page of points. Otherwise one
  query asks for the buckets that reach past the cursor (`t1 >= cursor timestamp`) in `t0` order,
  which the MongoDB-wire server here answers by reading all of them: a million points paged
  25,000 at a time (the stock client) re-read most buckets forty times.
* bulk-interval samples each run's points like the SQL store's NTILE query: up to `max_results`
  evenly spaced points in (step, timestamp, value) order, always ending with the last one.

A run without the metric, or with no such run, has an empty history (the SQL store does not
check that the run exists here).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from common.documents import metric_point
from common.errors import MlflowError
from common.keys import encode_key
from common.mongo import METRICS, RUNS
from query import requests as rq
from query.paging import decode_token, encode_token, fingerprint

Point = list[Any]
SortKey = tuple[int, int, float, bool]

_API_DOCS = " See the API docs for more information about request parameters."
BUCKETS_PER_FETCH = 16  # an ordered history's buckets fetched by id per round trip


def time_order(p: Point) -> SortKey:
    """get-history's order: (timestamp, step, value with NaN as 0, is_nan)."""
    return (p[1], p[0], 0.0 if p[2] is None else p[2], p[2] is None)


def step_order(p: Point) -> SortKey:
    """bulk-interval's order: (step, timestamp, value with NaN as 0, is_nan)."""
    return (p[0], p[1], 0.0 if p[2] is None else p[2], p[2] is None)


class PageCollector:
    """Collects the first `limit` points after a cursor from buckets fed in `t0` order.

    It keeps at most about twice the page in memory, and once it holds more than a page it knows
    a timestamp bound: a bucket starting after it cannot contribute, and neither can any later one.
    """

    def __init__(self, after: SortKey | None, limit: int | None):
        self.after = after
        self.limit = limit
        self.points: list[Point] = []
        self.bound: int | None = None
        self._trim_at = None if limit is None else limit + 1

    def wants(self, bucket_t0: int) -> bool:
        return self.bound is None or bucket_t0 <= self.bound

    def add(self, points: Iterable[Point]) -> None:
        after = self.after
        self.points.extend(p for p in points if after is None or time_order(p) > after)
        if self._trim_at is not None and len(self.points) >= self._trim_at:
            self._trim()

    def _trim(self) -> None:
        assert self.limit is not None
        keep = self.limit + 1  # one more than the page says whether another page follows
        self.points.sort(key=time_order)
        del self.points[keep:]
        self.bound = self.points[-1][1]
        self._trim_at = 2 * keep  # amortise: sort again only after another page worth of points

    def page(self) -> tuple[list[Point], bool]:
        """(points of the page in order, whether more follow)."""
        self.points.sort(key=time_order)
        if self.limit is None or len(self.points) <= self.limit:
            return self.points, False
        return self.points[:self.limit], True


def _cursor(token: str | None, search: str) -> tuple[SortKey | None, int]:
    """(the last point's sort key, the bucket to resume from or -1) of a page token."""
    values = decode_token(token, search, (4, 5))
    if values is None:
        return None, -1
    t, s, v, nan, *rest = values
    resume = rest[0] if rest else -1
    if not (isinstance(t, int) and isinstance(s, int) and isinstance(v, (int, float)) and isinstance(nan, bool)
            and isinstance(resume, int)) or any(isinstance(x, bool) for x in (t, s, v, resume)):
        raise MlflowError.invalid("Invalid page token: not a token issued by this server")
    return (t, s, float(v), nan), resume


def _check_page_size(max_results: int | None) -> None:
    if max_results is not None and max_results <= 0:
        raise MlflowError.invalid(
            f"Invalid value {max_results} for parameter 'max_results' supplied. It must be a positive integer."
        )


async def get_metric_history(db: AsyncDatabase, req: rq.GetMetricHistory) -> dict[str, Any]:
    run_id, key = req.id, req.metric_key or ""
    _check_page_size(req.max_results)
    search = fingerprint("history", run_id, key)
    after, resume = _cursor(req.page_token, search)
    enc = encode_key(key)
    collector = PageCollector(after, req.max_results)
    run = await db[RUNS].find_one({"_id": run_id}, {f"mb.{enc}": 1})
    recorded = ((run or {}).get("mb") or {}).get(enc) or {}
    read: list[tuple[int, int]] = []  # (seq, t1) of the buckets read, ordered histories only
    if recorded.get("o"):
        read = await _read_by_bucket(db, run_id, enc, int(recorded.get("seq", 0)), max(resume, 0), collector)
    else:
        await _read_by_time(db, run_id, enc, after, collector)
    points, more = collector.page()
    out: dict[str, Any] = {}
    if points:
        out["metrics"] = [metric_point(key, p) for p in points]
    if more:
        last_t = points[-1][1]
        # the first bucket that can hold a point after the cursor (earlier ones end before it)
        resume = min((seq for seq, t1 in read if t1 >= last_t), default=-1)
        out["next_page_token"] = encode_token(search, [*time_order(points[-1]), resume])
    return out


async def _read_by_time(db: AsyncDatabase, run_id: str, enc: str, after: SortKey | None,
                        collector: PageCollector) -> None:
    query: dict[str, Any] = {"run_id": run_id, "key": enc}
    if after is not None:
        query["t1"] = {"$gte": after[0]}
    # allow_disk_use: without an index on (run_id, key, t0) a huge history is a blocking sort
    cursor = db[METRICS].find(query, {"_id": 0, "t0": 1, "p": 1}, sort=[("t0", 1)], allow_disk_use=True)
    try:
        async for bucket in cursor:
            if not collector.wants(bucket.get("t0", 0)):
                break
            collector.add(bucket.get("p") or ())
    finally:
        await cursor.close()


async def _read_by_bucket(db: AsyncDatabase, run_id: str, enc: str, last_seq: int, start: int,
                          collector: PageCollector) -> list[tuple[int, int]]:
    """Buckets `start..last_seq` in order (for an ordered history, time order), fetched by id a few
    at a time until no later bucket can hold a point of the page."""
    read: list[tuple[int, int]] = []
    for first in range(start, last_seq + 1, BUCKETS_PER_FETCH):
        ids = [f"{run_id}:{enc}:{s}" for s in range(first, min(first + BUCKETS_PER_FETCH, last_seq + 1))]
        buckets = await db[METRICS].find({"_id": {"$in": ids}, "run_id": run_id},
                                         {"_id": 0, "seq": 1, "t0": 1, "t1": 1, "p": 1}).to_list(None)
        for bucket in sorted(buckets, key=lambda b: b["seq"]):
            if not collector.wants(bucket.get("t0", 0)):
                return read
            collector.add(bucket.get("p") or ())
            read.append((bucket["seq"], bucket.get("t1", 0)))
    return read


# --- bulk interval -----------------------------------------------------------------------------


def sample_points(points: list[Point], max_results: int) -> list[Point]:
    """The first point of each of `max_results` NTILE groups over `points` (already in step order),
    with the last point kept (replacing the last sample when the sample is full)."""
    total = len(points)
    if total <= max_results:
        return list(points)
    size, rest = divmod(total, max_results)
    chosen = [points[g * size + min(g, rest)] for g in range(max_results)]
    if chosen[-1] is not points[-1]:
        chosen[-1] = points[-1]
    return chosen


def bulk_interval_window(req: rq.GetMetricHistoryBulkInterval) -> tuple[int, int | None, int | None]:
    """(max_results, start_step, end_step), checked with the reference handler's messages."""
    if len(req.run_ids) > rq.MAX_RUNS_GET_METRIC_HISTORY_BULK:
        raise MlflowError.invalid(
            f"GetMetricHistoryBulkInterval request must specify at most {rq.MAX_RUNS_GET_METRIC_HISTORY_BULK}"
            f" run_ids. Received {len(req.run_ids)} run_ids." + _API_DOCS
        )
    max_results = rq.MAX_RESULTS_PER_RUN if req.max_results is None else req.max_results
    if not 1 <= max_results <= rq.MAX_RESULTS_PER_RUN:
        raise MlflowError.invalid(f"max_results must be between 1 and {rq.MAX_RESULTS_PER_RUN}." + _API_DOCS)
    start, end = req.start_step, req.end_step
    if (start is None) != (end is None):
        raise MlflowError.invalid("If either start step or end step are specified, both must be specified.")
    if start is not None and end is not None and start > end:
        raise MlflowError.invalid(
            f"end_step must be greater than start_step. Found start_step={start} and end_step={end}."
        )
    return max_results, start, end


async def get_metric_history_bulk_interval(db: AsyncDatabase, req: rq.GetMetricHistoryBulkInterval) -> dict[str, Any]:
    max_results, start, end = bulk_interval_window(req)
    metrics = await sampled_histories(db, req.run_ids, req.metric_key or "", max_results, start, end)
    return {"metrics": metrics} if metrics else {}


async def sampled_histories(db: AsyncDatabase, run_ids: list[str], key: str, max_results: int,
                            start: int | None, end: int | None) -> list[dict[str, Any]]:
    """Up to `max_results` sampled points of `key` per run (steps in [start, end] when given), run by
    run in the order of `run_ids`, a repeated id repeated; the window is the caller's to check."""
    query: dict[str, Any] = {"run_id": {"$in": sorted(set(run_ids))}, "key": encode_key(key)}
    if start is not None:
        query["s1"] = {"$gte": start}
        query["s0"] = {"$lte": end}
    by_run: dict[str, list[Point]] = defaultdict(list)
    async for bucket in db[METRICS].find(query, {"_id": 0, "run_id": 1, "p": 1}):
        points = bucket.get("p") or ()
        if start is not None:
            points = [p for p in points if start <= p[0] <= end]  # type: ignore[operator]
        by_run[bucket["run_id"]].extend(points)
    metrics: list[dict[str, Any]] = []
    for run_id in run_ids:  # request order, as the SQL store loops over them
        points = sorted(by_run.get(run_id, ()), key=step_order)
        metrics.extend(metric_point(key, p, run_id=run_id) for p in sample_points(points, max_results))
    return metrics
