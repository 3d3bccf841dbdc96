"""Expected failures of `ep` commands as one line an operator can act on, never a traceback.

Commands wrap their database work in `database_step(url, "EP_...")`, which names the setting
and the URL (password hidden) when the database cannot be reached. `explain(exc)` turns the
rest of the expected failures (a server, Redis or AWS out of reach, a missing or read-only
directory) into a sentence; `ep`'s entry point prints it as ``error: ...`` and exits 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from observability.terminal import safe_text

__all__ = ["CommandFailed", "database_step", "explain", "hide_password"]


class CommandFailed(Exception):
    """A command's expected failure; the message is the whole story (one line)."""


def hide_password(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable URL>"


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).strip().splitlines()
    return safe_text(text[0][:240]) if text else type(cause).__name__


@contextmanager
def database_step(url: str, setting: str) -> Iterator[None]:
    """Turn "the database is not there" into one line naming `setting` and the URL."""
    try:
        yield
    except DBAPIError as exc:
        raise CommandFailed(
            f"cannot use the database at {hide_password(url)} ({setting}): {_first_line(exc)}"
        ) from None
    except SQLAlchemyError as exc:
        raise CommandFailed(
            f"database error at {hide_password(url)} ({setting}): {_first_line(exc)}"
        ) from None


def explain(exc: BaseException) -> str | None:
    """One line for an expected failure, None for a bug (which keeps its traceback)."""
    if isinstance(exc, CommandFailed):
        return str(exc)
    if isinstance(exc, httpx.TransportError):
        where = str(exc.request.url) if _has_request(exc) else "the server"
        return f"cannot reach {where}: {type(exc).__name__} {_first_line(exc)}".rstrip()
    if isinstance(exc, DBAPIError):
        return (
            f"cannot use the database: {_first_line(exc)} "
            "(check EP_DATABASE_URL and EP_OBSERVABILITY_DATABASE_URL)"
        )
    if _is_redis_error(exc):
        return f"cannot reach Redis (EP_REDIS_URL): {_first_line(exc)}"
    if isinstance(
        exc, PermissionError | FileNotFoundError | NotADirectoryError | IsADirectoryError
    ):
        where = exc.filename or "a file"
        return (
            f"{safe_text(where)}: {exc.strerror or type(exc).__name__} "
            "(check EP_VAR_DIR and EP_LOG_DIR)"
        )
    if isinstance(exc, OSError) and exc.errno is not None and exc.filename:
        return f"{safe_text(exc.filename)}: {exc.strerror} (check EP_VAR_DIR and EP_LOG_DIR)"
    return None


def _has_request(exc: httpx.TransportError) -> bool:
    try:
        exc.request  # noqa: B018 - raises RuntimeError when the error has no request
    except RuntimeError:
        return False
    return True


def _is_redis_error(exc: BaseException) -> bool:
    try:
        import redis.exceptions
    except ImportError:  # pragma: no cover - redis is a dependency
        return False
    return isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError)
