"""Shared fixtures: the real test servers, and Genesis-Flow tiers running as processes."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
from pymongo import MongoClient

from tests.query_support import QueryEnv, query_env
from tests.services import (DEFAULT_MONGODB_URI, ENV_MONGODB_URI, Services, describe_mongo_server, start_services,
                            uses_docker)
from tests.stack import Stack, make_stack, start_stack

_MONGO_SERVER = pytest.StashKey[str]()

# The stock client retries 5xx for minutes by default; tests want a failure to show quickly.
# (Tests of retry behaviour set their own values.)
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")


def _mongo_server_line() -> str:
    if uses_docker():
        return "MongoDB wire server: mongo:7 (testcontainers)"
    return "MongoDB wire server: " + describe_mongo_server(os.environ.get(ENV_MONGODB_URI) or DEFAULT_MONGODB_URI)


def pytest_report_header(config: pytest.Config) -> str:
    config.stash[_MONGO_SERVER] = line = _mongo_server_line()
    return line


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Also at the end (the header is hidden under -q): which server the suite ran against."""
    terminalreporter.write_line(config.stash.get(_MONGO_SERVER, None) or _mongo_server_line())


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    svc, cleanup = start_services()
    yield svc
    cleanup()


@pytest.fixture(scope="module")
async def env(services: Services) -> AsyncIterator[QueryEnv]:
    """The query tier in-process on a database of its own, filled through the writer's code."""
    async with query_env(services.mongodb_uri) as env:
        yield env


@pytest.fixture(scope="module")
def write_stack(services: Services) -> Iterator[Stack]:
    """ingest + writer processes on their own database and queues (shared by a test module)."""
    stack = make_stack(services, "wp")
    stack.start("writer")
    stack.start("ingest")
    yield stack
    stack.stop()


@pytest.fixture(scope="module", params=["standalone", "distributed"])
def tracking_stack(request, services: Services) -> Iterator[Stack]:
    """One tracking URI, both ways: `standalone` (one process, files for artifacts) and
    `distributed` (nginx with the shipped config in front of separate ingest, writer and query
    processes; Azure Blob on Azurite). `stack.url("uri")` is what a client points at."""
    stack = make_stack(services, request.param[:4])
    try:
        yield start_stack(stack, request.param)
    finally:
        stack.stop()


@pytest.fixture
def fresh_stack(services: Services) -> Iterator[Stack]:
    """A stack of its own for tests that kill or starve processes; the test starts the tiers."""
    stack = make_stack(services, "fs")
    yield stack
    stack.stop()


def mongo_db(stack: Stack):
    return MongoClient(stack.services.mongodb_uri)[stack.db_name]
