"""MLflow's permission levels (mlflow/server/auth/permissions.py), ordered
NO_PERMISSIONS < READ < USE < EDIT < MANAGE, and the actions each allows."""

from __future__ import annotations

from typing import Literal

Action = Literal["read", "use", "update", "delete", "manage"]

LEVELS: dict[str, int] = {"NO_PERMISSIONS": 0, "READ": 1, "USE": 2, "EDIT": 3, "MANAGE": 4}
# The lowest level that allows each action (READ reads; USE also uses; EDIT updates; MANAGE deletes
# and manages permissions), as in MLflow's Permission dataclasses.
_NEEDED: dict[str, int] = {"read": 1, "use": 2, "update": 3, "delete": 4, "manage": 4}

RESOURCE_TYPES = ("experiment", "registered_model", "prompt")


def allows(permission: str, action: Action) -> bool:
    return LEVELS.get(permission, 0) >= _NEEDED[action]


def check_permission_name(permission: object) -> str:
    from common.errors import MlflowError

    if not isinstance(permission, str) or permission not in LEVELS:
        raise MlflowError.invalid(f"Invalid permission '{permission}'. Valid permissions are: {tuple(LEVELS)}")
    return permission


def check_resource_type(resource_type: object) -> str:
    from common.errors import MlflowError

    if not isinstance(resource_type, str) or resource_type not in RESOURCE_TYPES:
        raise MlflowError.invalid(
            f"Invalid resource type '{resource_type}'. Valid resource types are: {RESOURCE_TYPES}")
    return resource_type
