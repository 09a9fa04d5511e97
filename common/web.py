"""aiohttp pieces every tier shares: JSON responses, the MLflow error middleware, and the
operational routes `/health`, `/ready`, `/metrics`."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from pymongo.errors import ConnectionFailure, ExecutionTimeout, PyMongoError

from common.codec import bson_enc_hook
from common.errors import INTERNAL_ERROR, MlflowError
from common.logs import log_request
from common.outage import Outage

log = logging.getLogger(__name__)

_json = msgspec.json.Encoder(enc_hook=bson_enc_hook)



def json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=_json.encode(payload), status=status, content_type="application/json")


def require_json_content_type(request: web.Request) -> None:
    """MLflow's `_validate_content_type(request, ["application/json"])` for POST/PUT handlers."""
    if request.method not in ("POST", "PUT"):
        return
    if "Content-Type" not in request.headers:
        raise MlflowError.invalid("Bad Request. Content-Type header is missing.")
    if request.content_type != "application/json":
        raise MlflowError.invalid("Bad Request. Content-Type must be one of ['application/json'].")


def error_response(err: MlflowError) -> web.Response:
    headers = {"Retry-After": str(err.retry_after)} if err.retry_after is not None else None
    return web.Response(body=err.body(), status=err.http_status, content_type="application/json", headers=headers)


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry, tier: str):
        self.tier = tier
        self.requests = Counter(
            "genesis_http_requests", "HTTP requests handled", ["tier", "route", "method", "status"], registry=registry,
        )
        self.latency = Histogram(
            "genesis_http_request_duration_seconds", "HTTP request latency", ["tier", "route", "method"],
            registry=registry, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )


def is_store_outage(exc: BaseException) -> bool:
    """MongoDB unreachable, or an operation that ran out of time (pymongo's `timeoutMS`)."""
    return isinstance(exc, (ConnectionFailure, ExecutionTimeout)) or (
        isinstance(exc, PyMongoError) and exc.timeout)


def mlflow_middleware(metrics: HttpMetrics):
    """MlflowError -> its JSON body and status; unknown routes -> bare 404; MongoDB unreachable or
    timing out -> 503 with a Retry-After that grows with the outage (the client retries it);
    crashes -> 500 JSON."""
    store = Outage()

    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
        start = time.perf_counter()
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        try:
            response = await handler(request)
        except MlflowError as err:
            response = error_response(err)
        except web.HTTPNotFound:
            response = web.Response(status=404)  # the client reads a bare 404 as "endpoint not found"
        except web.HTTPRequestEntityTooLarge as exc:  # a body over client_max_size: MLflow's error JSON
            response = error_response(MlflowError.invalid(exc.text or "Request body too large."))
            response.set_status(413)
        except web.HTTPException as exc:
            response = web.Response(status=exc.status, text=exc.text, headers=exc.headers)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as exc:
            if is_store_outage(exc):
                store.failed()
                response = error_response(MlflowError.unavailable(
                    f"The metadata store is unavailable, retry later ({type(exc).__name__}).",
                    retry_after=store.retry_after()))
            else:
                log.exception("unhandled error in %s %s", request.method, request.path)
                response = error_response(MlflowError("Internal server error.", INTERNAL_ERROR))
        if response.status < 500:
            store.recovered()
        elapsed = time.perf_counter() - start
        metrics.requests.labels(metrics.tier, route, request.method, str(response.status)).inc()
        metrics.latency.labels(metrics.tier, route, request.method).observe(elapsed)
        log_request(request.method, route, response.status, elapsed)
        return response

    return middleware


Probes = dict[str, Callable[[], Awaitable[Any]]]

# user:password@ in URIs, and the key fields of Azure connection strings
_SECRETS = re.compile(r"(?P<scheme>[a-zA-Z][\w+.-]*://)[^/@\s]+@|(?P<field>(?:AccountKey|SharedAccessSignature|"
                      r"password|pwd)=)[^;&\s]+", re.IGNORECASE)


def redact_secrets(text: str) -> str:
    """Credentials out of a dependency's error message before /ready shows it."""
    return _SECRETS.sub(lambda m: f"{m['scheme']}***@" if m["scheme"] else f"{m['field']}***", text)


def tier_app(tier: str, registry: CollectorRegistry, *, client_max_size: int = 1024**2) -> web.Application:
    """An empty app with the shared middleware; each tier's `install` adds its routes."""
    return web.Application(middlewares=[mlflow_middleware(HttpMetrics(registry, tier))],
                           client_max_size=client_max_size)


def add_ops_routes(app: web.Application, registry: CollectorRegistry, probes: Probes) -> None:
    """`/health` (the process answers), `/ready` (every probe passes), `/metrics`."""

    async def health(_: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def ready_handler(_: web.Request) -> web.Response:
        checks = await run_checks(probes)
        ok = all(v == "ok" for v in checks.values())
        return json_response({"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503)

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        resp = web.Response(body=body)
        resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return resp

    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready_handler)
    app.router.add_get("/metrics", metrics)


async def run_checks(checks: dict[str, Callable[[], Awaitable[Any]]], timeout: float = 2.0) -> dict[str, str]:
    """Run dependency probes concurrently; each reports "ok" or its error."""

    async def one(probe: Callable[[], Awaitable[Any]]) -> str:
        try:
            await asyncio.wait_for(probe(), timeout)
            return "ok"
        except Exception as exc:  # a failing dependency is a status, not an error
            return redact_secrets(f"{type(exc).__name__}: {exc}")[:200]

    results = await asyncio.gather(*(one(p) for p in checks.values()))
    return dict(zip(checks.keys(), results))
