"""Milliseconds since the epoch, the unit of every MLflow timestamp."""

import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000
