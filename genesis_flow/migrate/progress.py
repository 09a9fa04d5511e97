"""A progress bar per phase: tqdm or rich when installed (neither is a dependency), else one plain
line on stderr every few seconds; nothing at all when disabled (tests, --quiet)."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Self


class Progress:
    """`update(n)` is thread-safe; use as a context manager around one phase."""

    def __init__(self, label: str, total: int | None, unit: str = "", *, enabled: bool = True,
                 unit_scale: bool = False):
        self.label, self.total, self.unit = label, total, unit
        self.done = 0
        self._lock = threading.Lock()
        self._bar: Any = None
        self._last = 0.0
        self._enabled = enabled
        self._started = time.monotonic()
        if not enabled:
            return
        try:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=label, unit=unit or "it", unit_scale=unit_scale, file=sys.stderr)
        except ImportError:
            self._bar = None

    def update(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
            if self._bar is not None:
                self._bar.update(n)
            elif self._enabled and time.monotonic() - self._last > 2.0:
                self._last = time.monotonic()
                self._line()

    def _line(self) -> None:
        of = f"/{self.total}" if self.total else ""
        pct = f" {100 * self.done / self.total:5.1f}%" if self.total else ""
        print(f"[{self.label}] {self.done}{of} {self.unit}{pct} ({time.monotonic() - self._started:.0f}s)",
              file=sys.stderr, flush=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._enabled:
            self._line()
