"""MLflow 3's security middleware (mlflow/server/security.py), with its settings and defaults:

* ``MLFLOW_SERVER_ALLOWED_HOSTS``: Host header allow-list (fnmatch patterns) against DNS
  rebinding; other hosts get 403. Unset: any Host (MLflow defaults to localhost and private
  addresses; a backend behind a router whose service names vary cannot, so operators set it).
* ``MLFLOW_SERVER_CORS_ALLOWED_ORIGINS``: cross-origin state-changing API requests (POST, PUT,
  PATCH, DELETE with an ``Origin`` that is neither localhost nor listed) are refused with 403;
  allowed origins get CORS headers and preflight answers; ``*`` allows any origin without
  credentials.
* ``X-Frame-Options`` (``MLFLOW_SERVER_X_FRAME_OPTIONS``, default SAMEORIGIN, NONE drops it) and
  ``X-Content-Type-Options: nosniff`` on every response.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

from common.errors import PERMISSION_DENIED, MlflowError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_LOCALHOST = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
_API = re.compile(r"^/(?:ajax-)?api/")
_HOST_EXEMPT = frozenset({"/health", "/version"})


def split_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def host_allowed(allowed: list[str], host: str) -> bool:
    if not host:
        return False
    return any(fnmatch.fnmatch(host, pattern) if "*" in pattern else host == pattern for pattern in allowed)


def origin_allowed(allowed: list[str], origin: str) -> bool:
    try:
        if urlsplit(origin).hostname in _LOCALHOST:
            return True
    except ValueError:
        return False
    return "*" in allowed or any(fnmatch.fnmatch(origin, p) if "*" in p else origin == p for p in allowed)


def browser_policy(app: web.Application, allowed_hosts: str, cors_origins: str, x_frame_options: str) -> None:
    """Install the middleware and the response headers on `app`."""
    hosts = split_list(allowed_hosts)
    origins = split_list(cors_origins)
    frame = x_frame_options.strip().upper()
    wildcard = "*" in origins

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if hosts and "*" not in hosts and request.path not in _HOST_EXEMPT \
                and not host_allowed(hosts, request.headers.get("Host", "")):
            raise MlflowError("Invalid Host header - possible DNS rebinding attack detected", PERMISSION_DENIED)
        origin = request.headers.get("Origin")
        if origin and _API.match(request.path):
            if request.method == "OPTIONS":
                return web.Response(status=204)  # preflight; CORS headers are added below when allowed
            if request.method in STATE_CHANGING and not wildcard and not origin_allowed(origins, origin):
                raise MlflowError(f"Cross-origin request from {origin[:200]} blocked by the CORS policy",
                                  PERMISSION_DENIED)
        return await handler(request)

    async def headers(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if frame and frame != "NONE":
            response.headers.setdefault("X-Frame-Options", frame)
        origin = request.headers.get("Origin")
        if origin and _API.match(request.path) and origin_allowed(origins, origin):
            response.headers["Access-Control-Allow-Origin"] = "*" if wildcard else origin
            response.headers["Vary"] = "Origin"
            if not wildcard:
                response.headers["Access-Control-Allow-Credentials"] = "true"
            if request.method == "OPTIONS":
                response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, DELETE, OPTIONS, PATCH"
                response.headers["Access-Control-Allow-Headers"] = request.headers.get(
                    "Access-Control-Request-Headers", "Content-Type, Authorization")

    app.middlewares.append(middleware)
    app.on_response_prepare.append(headers)
