"""Every error a client sees is JSON: a code, a message naming the field or problem, and the
request_id to quote to support. Never a stack trace."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from experimentation_platform.errors import PlatformError
from observability.context import current

__all__ = ["install_error_handlers"]


def _request_id() -> str | None:
    ctx = current()
    return None if ctx is None else ctx.request_id


def error_response(
    status: int, code: str, message: str, field: str | None = None, **extra: Any
) -> JSONResponse:
    error: dict[str, Any] = {"code": code, "message": message}
    if field:
        error["field"] = field
    error.update(extra)
    return JSONResponse({"error": error, "request_id": _request_id()}, status_code=status)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:] if parts[0] == "body" else parts
    text = ""
    for part in parts:
        text += f"[{part}]" if part.isdigit() else (f".{part}" if text else part)
    return text or "body"


async def _platform_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PlatformError)
    return error_response(exc.status_code, exc.code, exc.message, exc.field)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = []
    for item in exc.errors():
        field = _field(item.get("loc", ()))
        if item.get("type") == "json_invalid":
            field = "body"
        # The input is not echoed back: it could be a secret sent in the wrong field.
        details.append({"field": field, "message": str(item.get("msg", "invalid value"))})
    first = details[0] if details else {"field": "body", "message": "invalid request"}
    return error_response(
        422,
        "validation_error",
        f"{first['field']}: {first['message']}",
        first["field"],
        details=details,
    )


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    response = error_response(exc.status_code, code, str(exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(PlatformError, _platform_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
