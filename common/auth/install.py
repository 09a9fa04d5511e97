"""`install_security(app, settings, db)`: the cross-cutting security pieces, built once here and
installed by every HTTP tier (ingest, query; standalone composes both into one app, and the
pieces are installed once)."""

from __future__ import annotations

import logging

from aiohttp import web
from pymongo.asynchronous.database import AsyncDatabase

from common.auth.api import auth_api_routes
from common.auth.authorize import Authorizer
from common.auth.identity import Authenticator
from common.auth.middleware import auth_middleware
from common.auth.passwords import MIN_PASSWORD_LENGTH
from common.auth.roles import RoleStore
from common.auth.rules import find_rule, route_class
from common.auth.store import AuthStore
from common.browser_policy import browser_policy
from common.ratelimit import parse_limit, rate_limit_middleware
from common.settings import Settings

log = logging.getLogger(__name__)
_INSTALLED = web.AppKey("genesis_security_installed", bool)


def _classify(request: web.Request) -> str:
    if request.match_info.http_exception is not None:
        return "search"
    canonical = request.match_info.route.resource.canonical
    return route_class(request.method, canonical, find_rule(request.method, canonical))


async def bootstrap_admin(store: AuthStore, username: str, password: str) -> None:
    """The first admin from MLflow's MLFLOW_AUTH_ADMIN_USERNAME / MLFLOW_AUTH_ADMIN_PASSWORD."""
    await store.ensure_indexes()
    username = username or "admin"
    if not password:
        if not await store.list_users():
            log.warning("auth is on but no user exists and MLFLOW_AUTH_ADMIN_PASSWORD is not set: nobody can log in")
        return
    if len(password) < MIN_PASSWORD_LENGTH:
        raise SystemExit(
            f"genesis-flow: MLFLOW_AUTH_ADMIN_PASSWORD must have at least {MIN_PASSWORD_LENGTH} characters")
    await store.ensure_admin(username, password)


def install_security(app: web.Application, settings: Settings, db: AsyncDatabase) -> None:
    if app.get(_INSTALLED):
        return
    app[_INSTALLED] = True
    browser_policy(app, settings.allowed_hosts, settings.cors_allowed_origins, settings.x_frame_options)
    if settings.auth == "basic":
        store, roles = AuthStore(db), RoleStore(db)
        authn = Authenticator(store, settings.auth_cache_ttl_s)
        authz = Authorizer(store, db, settings.auth_default_permission, settings.auth_cache_ttl_s, roles)
        app.middlewares.append(auth_middleware(authn, authz))
        for method, path, handler in auth_api_routes(store, authn, authz, roles):
            app.router.add_route(method, path, handler)
        async def startup(_: web.Application) -> None:
            await roles.ensure_indexes()
            await bootstrap_admin(store, settings.auth_admin_username, settings.auth_admin_password)

        app.on_startup.append(startup)
    limits = {"writes": parse_limit(settings.rate_limit_writes), "search": parse_limit(settings.rate_limit_search),
              "artifacts": parse_limit(settings.rate_limit_artifacts)}
    if any(limits.values()):
        app.middlewares.append(rate_limit_middleware(limits, _classify))
