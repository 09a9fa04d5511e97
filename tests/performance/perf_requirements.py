"""The production checklist's performance requirements and the check of a load test against them.

Plain code (no Locust, no gevent): `load_test.py` uses it, and the tests call it directly.
"""

from __future__ import annotations

from typing import Any

# The checklist's `performance_requirements`, verbatim.
PERFORMANCE_REQUIREMENTS: dict[str, float] = {
    "experiment_creation_time": 2.0,  # seconds
    "run_creation_time": 1.0,         # seconds
    "metric_logging_rate": 100,       # metrics/second
    "search_response_time": 5.0,      # seconds
    "concurrent_users": 50,           # simultaneous users
}


def validate_performance_requirements(requirements: dict[str, float], measured: dict[str, Any]) -> dict[str, bool]:
    """One bool per requirement: does `measured` (what `load_test.measure` reports) satisfy it?

    Latencies are judged on their 95th percentile. A latency requirement needs at least one
    successful measurement: an endpoint never exercised (or always failing) does not pass by
    default, and the concurrency requirement also needs a run without failed requests."""
    def under(value: float | None, limit: float) -> bool:
        return value is not None and value < limit

    checks = {
        "experiment_creation_time": lambda limit: under(measured.get("experiment_creation_p95_s"), limit),
        "run_creation_time": lambda limit: under(measured.get("run_creation_p95_s"), limit),
        "metric_logging_rate": lambda limit: measured.get("metric_logging_rate", 0.0) >= limit,
        "search_response_time": lambda limit: under(measured.get("search_p95_s"), limit),
        "concurrent_users": lambda limit: measured.get("concurrent_users", 0) >= limit
        and measured.get("failures", 1) == 0,
    }
    unknown = set(requirements) - set(checks)
    if unknown:
        raise ValueError(f"unknown requirements: {', '.join(sorted(unknown))}")
    return {name: bool(checks[name](limit)) for name, limit in requirements.items()}
