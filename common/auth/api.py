"""The basic-auth app's REST API at MLflow's paths and shapes (mlflow/server/auth/routes.py,
client.py), so `mlflow.server.get_app_client("basic-auth", tracking_uri=...)` works; plus
per-user API tokens for `MLFLOW_TRACKING_TOKEN` under /api/2.0/genesis-flow/tokens/.

Who may call what is decided by the rules (common/auth/rules.py) before these handlers run;
handlers only re-check what depends on the body (self-service password changes)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from common.auth.authorize import Authorizer, storage_type
from common.auth.identity import Authenticator, Identity
from common.auth.permissions import allows, check_permission_name, check_resource_type
from common.auth.roles import RoleStore, role_id_of
from common.auth.store import AuthStore, check_password, check_username
from common.errors import BAD_REQUEST, MlflowError
from common.web import json_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow", "/api/3.0/mlflow", "/ajax-api/3.0/mlflow")
TOKENS = "/api/2.0/genesis-flow/tokens"


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = msgspec.json.decode(await request.read() or b"{}")
    except (msgspec.DecodeError, RecursionError):
        raise MlflowError.invalid("Malformed request body: expected a JSON object.") from None
    if not isinstance(body, dict):
        raise MlflowError.invalid("Malformed request body: expected a JSON object.")
    return body


def _param(request: web.Request, body: dict[str, Any] | None, name: str) -> str:
    value = body.get(name) if body is not None else request.query.get(name)
    if value is None:
        raise MlflowError.invalid(f"Missing value for required parameter '{name}'.")
    if not isinstance(value, str) or not value:
        raise MlflowError.invalid(f"Invalid value for parameter '{name}' supplied")
    return value


def _identity(request: web.Request) -> Identity:
    return request["identity"]


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise MlflowError.invalid("Invalid value for parameter 'is_admin' supplied: expected true or false")


def _permission_rows(user_id: int, grants: dict[tuple[str, str], str]) -> list[dict[str, Any]]:
    return [{"role_id": 0, "role_name": f"__user_{user_id}__", "workspace": "default", "resource_type": rtype,
             "resource_pattern": rid, "permission": perm} for (rtype, rid), perm in sorted(grants.items())]


def auth_api_routes(store: AuthStore, authn: Authenticator, authz: Authorizer,
                    roles: RoleStore) -> list[tuple[str, str, Handler]]:
    async def create_user(request: web.Request) -> web.Response:
        body = await _body(request)
        user = await store.create_user(check_username(body.get("username")), check_password(body.get("password")))
        return json_response({"user": user.to_json()})

    async def get_user(request: web.Request) -> web.Response:
        return json_response({"user": (await store.get_user(_param(request, None, "username"))).to_json()})

    async def current_user(request: web.Request) -> web.Response:
        user = await store.get_user(_identity(request).username)
        return json_response({"user": user.to_json(), "is_basic_auth": True})

    async def list_users(_: web.Request) -> web.Response:
        return json_response({"users": [{**u.to_json(), "roles": []} for u in await store.list_users()]})

    async def update_password(request: web.Request) -> web.Response:
        body = await _body(request)
        username, password = _param(request, body, "username"), check_password(body.get("password"))
        if username == _identity(request).username:  # self-service re-asserts the current password
            current = body.get("current_password")
            if not isinstance(current, str) or not current:
                raise MlflowError.invalid("Current password is required when changing your own password.")
            if await store.authenticate(username, current) is None:
                raise MlflowError.invalid("Current password does not match.")
            if current == password:
                raise MlflowError.invalid("New password must differ from the current password.")
        await store.update_password(username, password)
        authn.forget(username)
        return json_response({})

    async def update_admin(request: web.Request) -> web.Response:
        body = await _body(request)
        username = _param(request, body, "username")
        await store.update_admin(username, _bool(body.get("is_admin")))
        authn.forget(username)
        return json_response({})

    async def delete_user(request: web.Request) -> web.Response:
        body = await _body(request)
        username = _param(request, body, "username")
        if username == _identity(request).username:
            raise MlflowError("Users cannot delete their own account. Ask another admin to delete this user "
                              "instead.", BAD_REQUEST)
        await store.delete_user(username)
        await roles.forget_user(username)
        authn.forget(username)
        authz.forget(username)
        return json_response({})

    async def permissions_of(username: str) -> web.Response:
        user = await store.get_user(username)
        rows = _permission_rows(user.id, await store.grants_of(username))
        for role in await roles.roles_of(username):
            rows += [{"role_id": role["id"], "role_name": role["name"], "workspace": role["workspace"],
                      "resource_type": p["resource_type"], "resource_pattern": p["resource_pattern"],
                      "permission": p["permission"]} for p in role["permissions"]]
        return json_response({"is_admin": user.is_admin, "permissions": rows})

    async def current_permissions(request: web.Request) -> web.Response:
        return await permissions_of(_identity(request).username)

    async def list_permissions(request: web.Request) -> web.Response:
        return await permissions_of(_param(request, None, "username"))

    def _resource(request: web.Request, body: dict[str, Any] | None) -> tuple[str, str]:
        source = body if body is not None else request.query
        return storage_type(check_resource_type(source.get("resource_type"))), _param(request, body, "resource_id")

    async def grant(request: web.Request) -> web.Response:
        body = await _body(request)
        username = _param(request, body, "username")
        rtype, rid = _resource(request, body)
        permission = check_permission_name(body.get("permission"))
        await store.get_user(username)
        await store.grant(username, rtype, rid, permission)
        authz.forget(username)
        return json_response({})

    async def revoke(request: web.Request) -> web.Response:
        body = await _body(request)
        username = _param(request, body, "username")
        rtype, rid = _resource(request, body)
        await store.get_user(username)
        await store.revoke(username, rtype, rid)
        authz.forget(username)
        return json_response({})

    async def get_permission(request: web.Request) -> web.Response:
        username = _param(request, None, "username")
        rtype, rid = _resource(request, None)
        user = await store.get_user(username)
        identity = Identity(user.username, user.is_admin, user.id)
        permission = await authz.permission(identity, rtype, rid) if user.is_admin else \
            (await store.find_grant(username, rtype, rid) or authz.default)
        return json_response({"allowed": allows(permission, "use"), "permission": permission})

    # MLflow 2.x's per-resource endpoints (experiments/permissions/*, registered-models/permissions/*).
    def legacy(resource_type: str, id_param: str, key: str) -> list[tuple[str, str, Handler]]:
        def shape(rid: str, user_id: int, permission: str) -> dict[str, Any]:
            return {key: {id_param: rid, "user_id": user_id, "permission": permission}}

        async def write(request: web.Request) -> web.Response:
            body = await _body(request)
            rid, username = _param(request, body, id_param), _param(request, body, "username")
            user = await store.get_user(username)
            if request.method == "DELETE":
                if not await store.revoke(username, resource_type, rid):
                    raise MlflowError.not_found(f"Permission for {resource_type} {rid} and user {username} not found")
                authz.forget(username)
                return json_response({})
            permission = check_permission_name(body.get("permission"))
            if request.method == "PATCH" and await store.find_grant(username, resource_type, rid) is None:
                raise MlflowError.not_found(f"Permission for {resource_type} {rid} and user {username} not found")
            await store.grant(username, resource_type, rid, permission)
            authz.forget(username)
            return json_response(shape(rid, user.id, permission))

        async def read(request: web.Request) -> web.Response:
            rid, username = _param(request, None, id_param), _param(request, None, "username")
            user = await store.get_user(username)
            permission = await store.find_grant(username, resource_type, rid)
            if permission is None:
                raise MlflowError.not_found(f"Permission for {resource_type} {rid} and user {username} not found")
            return json_response(shape(rid, user.id, permission))

        base = "/experiments/permissions" if resource_type == "experiment" else "/registered-models/permissions"
        return [("POST", base + "/create", write), ("GET", base + "/get", read),
                ("PATCH", base + "/update", write), ("DELETE", base + "/delete", write)]

    async def create_token(request: web.Request) -> web.Response:
        body = await _body(request)
        identity = _identity(request)
        username = body.get("username") or identity.username
        if username != identity.username and not identity.is_admin:
            raise MlflowError("Only admins create tokens for other users.", "PERMISSION_DENIED")
        await store.get_user(username)
        name = body.get("name", "")
        token = await store.create_token(username, name if isinstance(name, str) else "")
        return json_response({"token": token, "username": username})

    async def list_tokens(request: web.Request) -> web.Response:
        return json_response({"tokens": await store.list_tokens(_identity(request).username)})

    async def delete_token(request: web.Request) -> web.Response:
        body = await _body(request)
        identity = _identity(request)
        await store.delete_token(identity.username, _param(request, body, "id"))
        authn.forget(identity.username)
        return json_response({})

    # --- roles (MLflow 3 RBAC; common/auth/roles.py) ---
    async def create_role(request: web.Request) -> web.Response:
        body = await _body(request)
        return json_response({"role": await roles.create(body.get("name"), body.get("workspace"),
                                                         body.get("description"))})

    async def get_role(request: web.Request) -> web.Response:
        return json_response({"role": await roles.get(role_id_of(request.query.get("role_id")))})

    async def list_roles(request: web.Request) -> web.Response:
        return json_response({"roles": await roles.list(request.query.get("workspace"))})

    async def update_role(request: web.Request) -> web.Response:
        body = await _body(request)
        return json_response({"role": await roles.update(role_id_of(body.get("role_id")), body.get("name"),
                                                         body.get("description"))})

    async def delete_role(request: web.Request) -> web.Response:
        await roles.delete(role_id_of((await _body(request)).get("role_id")))
        authz.forget()
        return json_response({})

    async def add_role_permission(request: web.Request) -> web.Response:
        body = await _body(request)
        created = await roles.add_permission(role_id_of(body.get("role_id")), body.get("resource_type"),
                                             body.get("resource_pattern"), body.get("permission"))
        authz.forget()
        return json_response({"role_permission": created})

    async def remove_role_permission(request: web.Request) -> web.Response:
        body = await _body(request)
        await roles.remove_permission(role_id_of(body.get("role_permission_id"), "role_permission_id"))
        authz.forget()
        return json_response({})

    async def list_role_permissions(request: web.Request) -> web.Response:
        return json_response({"role_permissions": await roles.list_permissions(
            role_id_of(request.query.get("role_id")))})

    async def update_role_permission(request: web.Request) -> web.Response:
        body = await _body(request)
        updated = await roles.update_permission(role_id_of(body.get("role_permission_id"), "role_permission_id"),
                                                body.get("permission"))
        authz.forget()
        return json_response({"role_permission": updated})

    async def assign_role(request: web.Request) -> web.Response:
        body = await _body(request)
        user = await store.get_user(body.get("username"))
        assignment = await roles.assign(user.username, user.id, role_id_of(body.get("role_id")))
        authz.forget(user.username)
        return json_response({"assignment": assignment})

    async def unassign_role(request: web.Request) -> web.Response:
        body = await _body(request)
        username = _param(request, body, "username")
        await roles.unassign(username, role_id_of(body.get("role_id")))
        authz.forget(username)
        return json_response({})

    async def list_user_roles(request: web.Request) -> web.Response:
        user = await store.get_user(request.query.get("username"))
        return json_response({"roles": await roles.roles_of(user.username)})

    async def list_role_users(request: web.Request) -> web.Response:
        return json_response({"assignments": await roles.users_of(role_id_of(request.query.get("role_id")))})

    routes: list[tuple[str, str, Handler]] = [
        ("POST", "/users/create", create_user), ("GET", "/users/get", get_user),
        ("GET", "/users/current", current_user), ("GET", "/users/list", list_users),
        ("PATCH", "/users/update-password", update_password), ("PATCH", "/users/update-admin", update_admin),
        ("DELETE", "/users/delete", delete_user),
        ("GET", "/users/current/permissions", current_permissions),
        ("GET", "/users/permissions/list", list_permissions),
        ("POST", "/users/permissions/grant", grant), ("POST", "/users/permissions/revoke", revoke),
        ("GET", "/users/permissions/get", get_permission),
        ("POST", "/roles/create", create_role), ("GET", "/roles/get", get_role), ("GET", "/roles/list", list_roles),
        ("PATCH", "/roles/update", update_role), ("DELETE", "/roles/delete", delete_role),
        ("POST", "/roles/permissions/add", add_role_permission),
        ("DELETE", "/roles/permissions/remove", remove_role_permission),
        ("GET", "/roles/permissions/list", list_role_permissions),
        ("PATCH", "/roles/permissions/update", update_role_permission),
        ("POST", "/roles/assign", assign_role), ("DELETE", "/roles/unassign", unassign_role),
        ("GET", "/users/roles/list", list_user_roles), ("GET", "/roles/users/list", list_role_users),
        *legacy("experiment", "experiment_id", "experiment_permission"),
        *legacy("registered_model", "name", "registered_model_permission"),
    ]
    return [(method, prefix + path, handler) for prefix in PREFIXES for method, path, handler in routes] + [
        ("POST", TOKENS + "/create", create_token), ("GET", TOKENS + "/list", list_tokens),
        ("DELETE", TOKENS + "/delete", delete_token)]
