"""Users, API tokens and permission grants in MongoDB.

Both HTTP tiers read and write these collections directly, not through the event queue: they are
small, admin-rate collections (a handful of writes when an operator adds a user or a grant), not
the metric firehose the queue exists for, and a grant must take effect before the call that made
it returns. Every write is a single-document operation keyed by a unique ``_id``, so replicas of
either tier can serve them concurrently without conflicts.

* ``auth_users``: ``_id`` = username; ``id`` (int, MLflow's user id), ``password_hash``, ``is_admin``.
* ``auth_tokens``: ``_id`` = SHA-256 of the token; ``username``, ``name``, ``created``.
* ``auth_grants``: ``_id`` = ``<type>/<resource id>/<username>``; ``username``, ``resource_type``,
  ``resource_id``, ``permission``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from common.auth.passwords import MIN_PASSWORD_LENGTH, hash_password, new_token, token_digest, verify_password
from common.errors import RESOURCE_ALREADY_EXISTS, MlflowError

USERS = "auth_users"
TOKENS = "auth_tokens"
GRANTS = "auth_grants"
COUNTERS = "counters"

INDEXES: dict[str, list[IndexModel]] = {
    GRANTS: [IndexModel([("username", ASCENDING)], name="user"),
             IndexModel([("resource_type", ASCENDING), ("resource_id", ASCENDING)], name="resource")],
    TOKENS: [IndexModel([("username", ASCENDING)], name="user")],
}


@dataclass(frozen=True)
class User:
    id: int
    username: str
    is_admin: bool

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "username": self.username, "is_admin": self.is_admin}


def _user(doc: dict[str, Any]) -> User:
    return User(id=int(doc.get("id", 0)), username=doc["_id"], is_admin=bool(doc.get("is_admin")))


def check_username(username: object) -> str:
    if not isinstance(username, str) or not username or len(username) > 256 or any(c in username for c in ":\x00\r\n"):
        raise MlflowError.invalid("Username must be a non-empty string of at most 256 characters without ':'.")
    return username


def check_password(password: object) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH or len(password) > 1024:
        raise MlflowError.invalid(f"Password must be a string of at least {MIN_PASSWORD_LENGTH} characters.")
    return password


def grant_id(resource_type: str, resource_id: str, username: str) -> str:
    return f"{resource_type}/{resource_id}/{username}"


class AuthStore:
    def __init__(self, db: AsyncDatabase):
        self.db = db

    async def ensure_indexes(self) -> None:
        for collection, models in INDEXES.items():
            await self.db[collection].create_indexes(models)

    # --- users ---
    async def create_user(self, username: str, password: str, is_admin: bool = False) -> User:
        check_username(username)
        check_password(password)
        counter = await self.db[COUNTERS].find_one_and_update(
            {"_id": "auth_user_id"}, {"$inc": {"seq": 1}}, upsert=True, return_document=ReturnDocument.AFTER)
        doc = {"_id": username, "id": int(counter["seq"]), "password_hash": hash_password(password),
               "is_admin": is_admin, "created": int(time.time() * 1000)}
        try:
            await self.db[USERS].insert_one(doc)
        except DuplicateKeyError:
            raise MlflowError(f"User (name={username}) already exists.", RESOURCE_ALREADY_EXISTS) from None
        return _user(doc)

    async def ensure_admin(self, username: str, password: str) -> None:
        """The first admin from MLFLOW_AUTH_ADMIN_USERNAME/PASSWORD; an existing user is left alone."""
        if await self.db[USERS].find_one({"_id": username}, {"_id": 1}) is None:
            try:
                await self.create_user(username, password, is_admin=True)
            except MlflowError as err:
                if err.error_code != RESOURCE_ALREADY_EXISTS:  # another replica won the race
                    raise

    async def find_user(self, username: str) -> User | None:
        doc = await self.db[USERS].find_one({"_id": username}, {"password_hash": 0})
        return _user(doc) if doc else None

    async def get_user(self, username: object) -> User:
        user = await self.find_user(check_username(username))
        if user is None:
            raise MlflowError.not_found(f"User with username={username} not found")
        return user

    async def list_users(self) -> list[User]:
        return [_user(doc) async for doc in self.db[USERS].find({}, {"password_hash": 0}).sort("id", ASCENDING)]

    async def authenticate(self, username: str, password: str) -> User | None:
        doc = await self.db[USERS].find_one({"_id": username})
        if doc is None or not verify_password(password, doc.get("password_hash", "")):
            return None
        return _user(doc)

    async def update_password(self, username: str, password: str) -> None:
        check_password(password)
        await self._update(username, {"password_hash": hash_password(password)})

    async def update_admin(self, username: str, is_admin: bool) -> None:
        await self._update(username, {"is_admin": is_admin})

    async def _update(self, username: str, fields: dict[str, Any]) -> None:
        result = await self.db[USERS].update_one({"_id": check_username(username)}, {"$set": fields})
        if result.matched_count == 0:
            raise MlflowError.not_found(f"User with username={username} not found")

    async def delete_user(self, username: str) -> None:
        result = await self.db[USERS].delete_one({"_id": check_username(username)})
        if result.deleted_count == 0:
            raise MlflowError.not_found(f"User with username={username} not found")
        await self.db[GRANTS].delete_many({"username": username})
        await self.db[TOKENS].delete_many({"username": username})

    # --- API tokens ---
    async def create_token(self, username: str, name: str) -> str:
        token = new_token()
        digest = token_digest(token)
        await self.db[TOKENS].insert_one({"_id": digest, "token_id": digest[:12], "username": username, "name": name,
                                          "created": int(time.time() * 1000)})
        return token

    async def list_tokens(self, username: str) -> list[dict[str, Any]]:
        return [{"id": doc["token_id"], "name": doc.get("name", ""), "created": doc.get("created")}
                async for doc in self.db[TOKENS].find({"username": username})]

    async def delete_token(self, username: str, token_id: str) -> None:
        result = await self.db[TOKENS].delete_one({"username": username, "token_id": str(token_id)})
        if result.deleted_count == 0:
            raise MlflowError.not_found(f"Token {token_id} not found")

    async def user_for_token(self, token: str) -> User | None:
        doc = await self.db[TOKENS].find_one({"_id": token_digest(token)})
        return None if doc is None else await self.find_user(doc["username"])

    # --- grants ---
    async def grants_of(self, username: str) -> dict[tuple[str, str], str]:
        return {(d["resource_type"], d["resource_id"]): d["permission"]
                async for d in self.db[GRANTS].find({"username": username})}

    async def grant(self, username: str, resource_type: str, resource_id: str, permission: str) -> None:
        await self.db[GRANTS].update_one(
            {"_id": grant_id(resource_type, resource_id, username)},
            {"$set": {"username": username, "resource_type": resource_type, "resource_id": resource_id,
                      "permission": permission}}, upsert=True)

    async def find_grant(self, username: str, resource_type: str, resource_id: str) -> str | None:
        doc = await self.db[GRANTS].find_one({"_id": grant_id(resource_type, resource_id, username)})
        return None if doc is None else doc["permission"]

    async def revoke(self, username: str, resource_type: str, resource_id: str) -> bool:
        result = await self.db[GRANTS].delete_one({"_id": grant_id(resource_type, resource_id, username)})
        return result.deleted_count > 0

    async def rename_resource(self, resource_type: str, old: str, new: str) -> None:
        async for doc in self.db[GRANTS].find({"resource_type": resource_type, "resource_id": old}):
            await self.grant(doc["username"], resource_type, new, doc["permission"])
            await self.db[GRANTS].delete_one({"_id": doc["_id"]})
