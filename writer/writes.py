"""A planned MongoDB write: what `writer/plan.py` and `writer/registry_plan.py` produce and
`writer/store.py` executes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Write:
    collection: str
    filter: dict[str, Any]
    update: dict[str, Any] | None = None  # update operators
    replacement: dict[str, Any] | None = None  # whole document (upsert)
    many: bool = False
    delete: bool = False
    insert: bool = False  # `replacement` is a new document (InsertOne), not an upsert
    # Writes of one event that must apply in event order, alone (experiment and registry writes):
    event_id: str | None = None
    on_duplicate: str | None = None  # that event's error when a unique index refuses this write
    # A duplicate-key error means an earlier attempt at this batch already applied the write.
    already_applied_if_duplicate: bool = False
    upsert: bool = False  # an update that creates the document when missing
