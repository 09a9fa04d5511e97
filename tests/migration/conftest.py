"""Fixtures of the migration tests: a distributed Genesis-Flow to migrate into, and helpers that
build MLflow sources with the stock client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.services import Services
from tests.stack import Stack, make_stack


def distributed_stack(services: Services, name: str) -> Stack:
    """nginx in front of separate ingest, writer and query processes; artifacts on Azurite."""
    stack = make_stack(services, name)
    stack.start("writer")
    stack.start("ingest")
    stack.start("query")
    stack.start_router()
    stack.ports["uri"] = stack.ports["router"]
    return stack


@pytest.fixture(autouse=True)
def _mlflow_sandbox(tmp_path, monkeypatch) -> None:
    """The sources are built with MLflow's file store, which MLflow 3.x builds only when allowed
    (teams migrating have them); its fluent API falls back to ./mlflow.db in places: not in the
    checkout."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def target(services: Services) -> Iterator[Stack]:
    stack = distributed_stack(services, "mig")
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def shared_target(services: Services) -> Iterator[Stack]:
    """One target for a module whose tests use their own experiments."""
    stack = distributed_stack(services, "migs")
    try:
        yield stack
    finally:
        stack.stop()
