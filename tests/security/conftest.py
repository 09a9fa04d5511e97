"""Stacks with authentication on (GENESIS_FLOW_AUTH=basic), both ways: standalone, and the
distributed tiers behind nginx with the shipped router config."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.services import Services
from tests.stack import Stack, make_stack, start_stack

ADMIN = "admin"
ADMIN_PASSWORD = "admin-password-0123"  # >= 12 characters, as the server requires
AUTH_ENV = {
    "GENESIS_FLOW_AUTH": "basic",
    "MLFLOW_AUTH_ADMIN_USERNAME": ADMIN,
    "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
    # grants and verified credentials are cached per process; short here so a change made on one
    # tier is seen by the other within the test's patience
    "GENESIS_FLOW_AUTH_CACHE_TTL_S": "1",
}


@pytest.fixture(scope="module", params=["standalone", "distributed"])
def auth_stack(request, services: Services) -> Iterator[Stack]:
    stack = make_stack(services, "au" + request.param[:2], **AUTH_ENV)
    try:
        yield start_stack(stack, request.param)
    finally:
        stack.stop()
