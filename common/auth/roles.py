"""Roles (MLflow 3's RBAC, without workspaces beyond a name): a role holds permissions on resource
patterns (an id, or ``*`` for every resource of the type) and is assigned to users.

A user's permission on a resource is their direct grant when one exists (an explicit per-user
decision, as MLflow 2.x's per-resource permissions were), else the highest permission any of their
roles gives on that resource or on ``*``, else the default permission.

* ``auth_roles``: ``_id`` = role id (int); ``name``, ``workspace``, ``description``.
* ``auth_role_permissions``: ``_id`` = id (int); ``role_id``, ``resource_type``, ``resource_pattern``,
  ``permission``.
* ``auth_role_users``: ``_id`` = assignment id (int); ``role_id``, ``user_id``, ``username``.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from common.auth.permissions import LEVELS, check_resource_type
from common.errors import RESOURCE_ALREADY_EXISTS, MlflowError

ROLES = "auth_roles"
ROLE_PERMISSIONS = "auth_role_permissions"
ROLE_USERS = "auth_role_users"
GRANTABLE = ("READ", "USE", "EDIT", "MANAGE")

INDEXES: dict[str, list[IndexModel]] = {
    ROLES: [IndexModel([("workspace", ASCENDING), ("name", ASCENDING)], name="workspace_name", unique=True)],
    ROLE_PERMISSIONS: [IndexModel([("role_id", ASCENDING)], name="role")],
    ROLE_USERS: [IndexModel([("username", ASCENDING), ("role_id", ASCENDING)], name="user_role", unique=True),
                 IndexModel([("role_id", ASCENDING)], name="role")],
}


def role_id_of(value: Any, name: str = "role_id") -> int:
    if isinstance(value, bool):
        raise MlflowError.invalid(f"Invalid value for parameter '{name}' supplied: expected an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        if value is None:
            raise MlflowError.invalid(f"Missing value for required parameter '{name}'.") from None
        raise MlflowError.invalid(f"Invalid value for parameter '{name}' supplied: expected an integer") from None


def _text(value: Any, name: str, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 500:
        raise MlflowError.invalid(f"Parameter '{name}' must be a non-empty string.")
    return value


def _permission_json(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": doc["_id"], "role_id": doc["role_id"], "resource_type": doc["resource_type"],
            "resource_pattern": doc["resource_pattern"], "permission": doc["permission"]}


class RoleStore:
    def __init__(self, db: AsyncDatabase):
        self.db = db

    async def ensure_indexes(self) -> None:
        for collection, models in INDEXES.items():
            await self.db[collection].create_indexes(models)

    async def _next_id(self, name: str) -> int:
        doc = await self.db["counters"].find_one_and_update({"_id": name}, {"$inc": {"seq": 1}}, upsert=True,
                                                            return_document=ReturnDocument.AFTER)
        return int(doc["seq"])

    async def role_json(self, doc: dict[str, Any]) -> dict[str, Any]:
        perms = [_permission_json(p) async for p in self.db[ROLE_PERMISSIONS].find({"role_id": doc["_id"]})]
        return {"id": doc["_id"], "name": doc["name"], "workspace": doc["workspace"],
                "description": doc.get("description"), "permissions": perms}

    async def _role(self, role_id: int) -> dict[str, Any]:
        doc = await self.db[ROLES].find_one({"_id": role_id})
        if doc is None:
            raise MlflowError.not_found(f"Role with id={role_id} not found")
        return doc

    async def create(self, name: Any, workspace: Any, description: Any) -> dict[str, Any]:
        doc = {"_id": await self._next_id("auth_role_id"), "name": _text(name, "name"),
               "workspace": _text(workspace, "workspace"), "description": _text(description, "description", False)}
        try:
            await self.db[ROLES].insert_one(doc)
        except DuplicateKeyError:
            raise MlflowError(f"Role (name={name}, workspace={workspace}) already exists.",
                              RESOURCE_ALREADY_EXISTS) from None
        return await self.role_json(doc)

    async def get(self, role_id: int) -> dict[str, Any]:
        return await self.role_json(await self._role(role_id))

    async def list(self, workspace: str | None) -> list[dict[str, Any]]:
        query = {} if workspace is None else {"workspace": workspace}
        return [await self.role_json(d) async for d in self.db[ROLES].find(query).sort("_id", ASCENDING)]

    async def update(self, role_id: int, name: Any, description: Any) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if name is not None:
            fields["name"] = _text(name, "name")
        if description is not None:
            fields["description"] = _text(description, "description")
        await self._role(role_id)
        if fields:
            try:
                await self.db[ROLES].update_one({"_id": role_id}, {"$set": fields})
            except DuplicateKeyError:
                raise MlflowError(f"Role (name={name}) already exists.", RESOURCE_ALREADY_EXISTS) from None
        return await self.get(role_id)

    async def delete(self, role_id: int) -> None:
        await self._role(role_id)
        await self.db[ROLE_PERMISSIONS].delete_many({"role_id": role_id})
        await self.db[ROLE_USERS].delete_many({"role_id": role_id})
        await self.db[ROLES].delete_one({"_id": role_id})

    async def add_permission(self, role_id: int, resource_type: Any, pattern: Any, permission: Any) -> dict[str, Any]:
        await self._role(role_id)
        rtype = check_resource_type(resource_type)
        if permission not in GRANTABLE:
            raise MlflowError.invalid(f"Invalid permission '{permission}'. Valid permissions are: {GRANTABLE}")
        doc = {"_id": await self._next_id("auth_role_permission_id"), "role_id": role_id, "resource_type": rtype,
               "resource_pattern": _text(pattern, "resource_pattern"), "permission": permission}
        await self.db[ROLE_PERMISSIONS].insert_one(doc)
        return _permission_json(doc)

    async def _permission(self, permission_id: int) -> dict[str, Any]:
        doc = await self.db[ROLE_PERMISSIONS].find_one({"_id": permission_id})
        if doc is None:
            raise MlflowError.not_found(f"Role permission with id={permission_id} not found")
        return doc

    async def remove_permission(self, permission_id: int) -> None:
        await self._permission(permission_id)
        await self.db[ROLE_PERMISSIONS].delete_one({"_id": permission_id})

    async def update_permission(self, permission_id: int, permission: Any) -> dict[str, Any]:
        if permission not in GRANTABLE:
            raise MlflowError.invalid(f"Invalid permission '{permission}'. Valid permissions are: {GRANTABLE}")
        await self._permission(permission_id)
        await self.db[ROLE_PERMISSIONS].update_one({"_id": permission_id}, {"$set": {"permission": permission}})
        return _permission_json(await self._permission(permission_id))

    async def list_permissions(self, role_id: int) -> list[dict[str, Any]]:
        await self._role(role_id)
        return [_permission_json(p) async for p in self.db[ROLE_PERMISSIONS].find({"role_id": role_id})]

    async def assign(self, username: str, user_id: int, role_id: int) -> dict[str, Any]:
        await self._role(role_id)
        doc = {"_id": await self._next_id("auth_assignment_id"), "role_id": role_id, "user_id": user_id,
               "username": username}
        try:
            await self.db[ROLE_USERS].insert_one(doc)
        except DuplicateKeyError:
            raise MlflowError(f"User {username} already has role {role_id}.", RESOURCE_ALREADY_EXISTS) from None
        return {"id": doc["_id"], "user_id": user_id, "role_id": role_id}

    async def unassign(self, username: str, role_id: int) -> None:
        result = await self.db[ROLE_USERS].delete_one({"username": username, "role_id": role_id})
        if result.deleted_count == 0:
            raise MlflowError.not_found(f"User {username} does not have role {role_id}")

    async def roles_of(self, username: str) -> list[dict[str, Any]]:
        ids = [a["role_id"] async for a in self.db[ROLE_USERS].find({"username": username})]
        return [await self.role_json(d) async for d in self.db[ROLES].find({"_id": {"$in": ids}}).sort("_id", 1)]

    async def users_of(self, role_id: int) -> list[dict[str, Any]]:
        await self._role(role_id)
        return [{"id": a["_id"], "user_id": a["user_id"], "role_id": a["role_id"]}
                async for a in self.db[ROLE_USERS].find({"role_id": role_id})]

    async def forget_user(self, username: str) -> None:
        await self.db[ROLE_USERS].delete_many({"username": username})

    async def grants_of(self, username: str) -> dict[tuple[str, str], str]:
        """(resource type, id or "*") -> the highest permission any of the user's roles gives."""
        ids = [a["role_id"] async for a in self.db[ROLE_USERS].find({"username": username})]
        best: dict[tuple[str, str], str] = {}
        if ids:
            async for p in self.db[ROLE_PERMISSIONS].find({"role_id": {"$in": ids}}):
                rtype = "registered_model" if p["resource_type"] == "prompt" else p["resource_type"]
                key = (rtype, p["resource_pattern"])
                if LEVELS.get(p["permission"], 0) > LEVELS.get(best.get(key, "NO_PERMISSIONS"), 0):
                    best[key] = p["permission"]
        return best
