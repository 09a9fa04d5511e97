"""A tiny check runner shared by the operator tools: named checks, timings, a JSON report."""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Result:
    name: str
    ok: bool
    seconds: float
    detail: str = ""


@dataclass
class Report:
    target: str
    results: list[Result] = field(default_factory=list)

    def check(self, name: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            value = fn()
            self.results.append(Result(name, True, round(time.perf_counter() - start, 4),
                                       "" if value is None else str(value)[:300]))
            return value
        except Exception as exc:  # a failed check is a result, not a crash
            detail = f"{type(exc).__name__}: {exc}"[:600]
            self.results.append(Result(name, False, round(time.perf_counter() - start, 4), detail))
            traceback.print_exc(limit=1)
            return None

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def print_table(self) -> None:
        for r in self.results:
            print(f"{'PASS' if r.ok else 'FAIL'}  {r.seconds:7.3f}s  {r.name}  {r.detail[:100]}")
        passed = sum(r.ok for r in self.results)
        print(f"{passed} passed, {len(self.results) - passed} failed")

    def write(self, path: str | None, **extra: Any) -> None:
        if path:
            with open(path, "w") as f:
                json.dump({"target": self.target, "ok": self.ok, **extra,
                           "results": [asdict(r) for r in self.results]}, f, indent=2)
