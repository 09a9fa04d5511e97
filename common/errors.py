"""The MLflow error model: error codes, their HTTP statuses, and the JSON body the client reads."""

from __future__ import annotations

import msgspec

INVALID_PARAMETER_VALUE = "INVALID_PARAMETER_VALUE"
RESOURCE_ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"
RESOURCE_DOES_NOT_EXIST = "RESOURCE_DOES_NOT_EXIST"
INVALID_STATE = "INVALID_STATE"
BAD_REQUEST = "BAD_REQUEST"
UNAUTHENTICATED = "UNAUTHENTICATED"
PERMISSION_DENIED = "PERMISSION_DENIED"
REQUEST_LIMIT_EXCEEDED = "REQUEST_LIMIT_EXCEEDED"
TEMPORARILY_UNAVAILABLE = "TEMPORARILY_UNAVAILABLE"
INTERNAL_ERROR = "INTERNAL_ERROR"

# Mirrors mlflow.protos.databricks_pb2 ERROR_CODE_TO_HTTP_STATUS for the codes we emit.
HTTP_STATUS: dict[str, int] = {
    INVALID_PARAMETER_VALUE: 400,
    RESOURCE_ALREADY_EXISTS: 400,
    INVALID_STATE: 400,
    BAD_REQUEST: 400,
    RESOURCE_DOES_NOT_EXIST: 404,
    UNAUTHENTICATED: 401,
    PERMISSION_DENIED: 403,
    REQUEST_LIMIT_EXCEEDED: 429,
    TEMPORARILY_UNAVAILABLE: 503,
    INTERNAL_ERROR: 500,
}


class ErrorBody(msgspec.Struct):
    error_code: str
    message: str


class MlflowError(Exception):
    """An error the client sees as `{"error_code", "message"}` with the matching HTTP status."""

    def __init__(self, message: str, error_code: str = INVALID_PARAMETER_VALUE, *, retry_after: int | None = None):
        super().__init__(message)
        self.message = message
        self.error_code = error_code
        self.retry_after = retry_after

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.error_code, 500)

    def body(self) -> bytes:
        return msgspec.json.encode(ErrorBody(self.error_code, self.message))

    @classmethod
    def invalid(cls, message: str) -> "MlflowError":
        return cls(message, INVALID_PARAMETER_VALUE)

    @classmethod
    def not_found(cls, message: str) -> "MlflowError":
        return cls(message, RESOURCE_DOES_NOT_EXIST)

    @classmethod
    def unavailable(cls, message: str, retry_after: int = 1) -> "MlflowError":
        return cls(message, TEMPORARILY_UNAVAILABLE, retry_after=retry_after)
