"""Operator endpoints (admin key only): self-tests now; log levels, windows, errors later."""

from __future__ import annotations

from fastapi import APIRouter

from experimentation_platform.api.deps import AdminKey

router = APIRouter(prefix="/ops", tags=["ops"])


class SelfTestError(RuntimeError):
    """Raised on purpose to prove the error pipeline end to end."""


@router.post("/selftest/error", status_code=500)
def selftest_error(_: AdminKey) -> None:
    """Raise an unhandled exception on purpose: the client gets a 500 with its request_id,
    the error appears in the logs, the error store and (when configured) Sentry."""
    raise SelfTestError("self-test: deliberate unhandled exception")
