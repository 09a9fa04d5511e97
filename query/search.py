"""One page of a search, as one MongoDB query.

A `SearchPlan` (pure, built by `runs.py` / `experiments.py`) says what to match, how to sort and
where the previous page stopped. `fetch_page` runs it: a plain `find` when the order uses stored
fields only (so an index can serve filter and sort together), otherwise one aggregation that
computes the sort keys (missing/NaN flags) and sorts on them. Either way one round trip, limited
to one row more than the page, which tells whether there is a next page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from query.paging import Scalar, after_condition, cursor_values, encode_token
from query.translate import SortPlan


@dataclass(frozen=True)
class SearchPlan:
    match: dict[str, Any]
    sort: SortPlan
    limit: int
    search: str  # fingerprint, carried by page tokens
    cursor: list[Scalar] | None = None  # sort-key values of the previous page's last row
    exclude: tuple[str, ...] = field(default=())  # stored fields the response never needs

    def after(self) -> dict[str, Any] | None:
        return after_condition(self.sort.keys, self.cursor) if self.cursor is not None else None

    def find_filter(self) -> dict[str, Any]:
        after = self.after()
        return {"$and": [self.match, after]} if after is not None else self.match

    def pipeline(self) -> list[dict[str, Any]]:
        # The index prefix (experiment, lifecycle) gets a $match of its own: MongoDB coalesces
        # adjacent $match stages anyway, and planners that only index a pure prefix match
        # (SecantusDB's) then use the index instead of scanning the collection.
        head = {k: v for k, v in self.match.items() if k != "$and"}
        stages: list[dict[str, Any]] = [{"$match": head}]
        if "$and" in self.match:
            stages.append({"$match": {"$and": self.match["$and"]}})
        stages.append({"$addFields": self.sort.computed})
        after = self.after()
        if after is not None:
            stages.append({"$match": after})
        stages += [{"$sort": self.sort.mongo_sort()}, {"$limit": self.limit + 1}]
        if self.exclude:
            stages.append({"$project": {f: 0 for f in self.exclude}})
        return stages

    def next_token(self, rows: list[dict[str, Any]]) -> str | None:
        """Token for the page after `rows` (already trimmed to `limit`), if one was fetched beyond it."""
        return encode_token(self.search, cursor_values(rows[-1], self.sort.keys)) if rows else None


async def fetch_page(collection: AsyncCollection, plan: SearchPlan) -> tuple[list[dict[str, Any]], str | None]:
    """(rows of this page, token of the next page or None)."""
    if plan.sort.computed:
        cursor = await collection.aggregate(plan.pipeline(), allowDiskUse=True)
    else:
        projection = {f: 0 for f in plan.exclude} or None
        cursor = collection.find(plan.find_filter(), projection, sort=list(plan.sort.mongo_sort().items()),
                                 limit=plan.limit + 1)
    rows = await cursor.to_list(None)
    if len(rows) <= plan.limit:
        return rows, None
    rows = rows[:plan.limit]
    return rows, plan.next_token(rows)
