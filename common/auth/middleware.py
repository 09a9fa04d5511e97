"""The aiohttp middleware that authenticates every non-public request and authorizes it by
its route's rule (common/auth/rules.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from common.auth.authorize import Authorizer, denied, read_params
from common.auth.identity import Authenticator
from common.auth.rules import find_rule, is_public
from common.errors import UNAUTHENTICATED, MlflowError
from common.ratelimit import client_address
from common.web import error_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CHALLENGE = {"WWW-Authenticate": 'Basic realm="mlflow"'}


def auth_middleware(authn: Authenticator, authz: Authorizer):
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "OPTIONS" or is_public(request.path):
            return await handler(request)
        try:
            identity = await authn.identify(request.headers.get("Authorization"), client_address(request))
        except MlflowError as err:
            if err.error_code != UNAUTHENTICATED:
                raise
            response = error_response(err)
            response.headers.update(CHALLENGE)
            return response
        request["identity"] = identity
        if request.match_info.http_exception is not None:
            return await handler(request)  # unknown route or method: the bare 404 / 405
        rule = find_rule(request.method, request.match_info.route.resource.canonical)
        if rule is None:  # fail closed: a route nobody wrote a rule for is for admins only
            if not identity.is_admin:
                raise denied()
            return await handler(request)
        if identity.is_admin and rule.hook is None:
            return await handler(request)  # admins pass every rule; nothing to record afterwards
        params = await read_params(request, rule)
        await authz.check(identity, rule, params)
        response = await handler(request)
        if rule.kind == "search" and not identity.is_admin:
            response = await authz.filter_search(identity, rule, response)
        if rule.hook is not None:
            await authz.after(identity, rule, params, response)
        return response

    return middleware
