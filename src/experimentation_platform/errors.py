"""The platform's domain errors; the API turns each into a 4xx JSON body."""

from __future__ import annotations

__all__ = ["Conflict", "InvalidInput", "InvalidState", "NotFound", "PlatformError"]


class PlatformError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(PlatformError):
    status_code = 404
    code = "not_found"


class Conflict(PlatformError):
    status_code = 409
    code = "conflict"


class InvalidState(PlatformError):
    status_code = 409
    code = "invalid_state"


class InvalidInput(PlatformError):
    status_code = 422
    code = "invalid_input"
