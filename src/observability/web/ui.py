"""The built-in operations UI: dashboards, errors (with drill-down to a request's log lines),
alerts and each alert's incident evidence. A FastAPI ``APIRouter`` the host includes under a
prefix (``/ops`` by default).

Authentication (documented in docs/dashboards.md): the HTML pages and static files are public
shells that hold no data; every ``/api/...`` route runs the host's ``auth`` dependency. The
login page keeps the admin key in the tab's ``sessionStorage`` and the script sends it as
``Authorization: Bearer`` on each fetch - never in a URL, never in a cookie (so no CSRF
surface), gone when the tab closes. A strict Content-Security-Policy (no inline script, no
third-party origin) limits what an injected script could do with it.
"""

from __future__ import annotations

import dataclasses
import hmac
import mimetypes
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as FastApiPath
from fastapi.responses import RedirectResponse, Response

from observability.dashboards.data import RANGES, DashboardData
from observability.web.pages import CSP, render_document, render_page
from observability.web.runbook import MarkdownDocument

__all__ = [
    "STATIC_DIR",
    "AlertsProvider",
    "IncidentProvider",
    "LogLookup",
    "alerts_from_evaluator",
    "build_ops_ui",
    "requests_sharing_id",
    "static_token_check",
    "token_auth",
]

STATIC_DIR = Path(__file__).resolve().parent / "static"
LogLookup = Callable[[str], Sequence[Mapping[str, Any]]]
AlertsProvider = Callable[[], Mapping[str, Any]]
# alert name or key -> incident evidence (`IncidentEvidence.to_dict()`, optionally with
# "links": {"runbook": url, "dashboard": url}), None for an alert it does not know.
IncidentProvider = Callable[[str], Mapping[str, Any] | None]
_SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_MAX_LOG_LINES = 500
Range = Annotated[str, Query(pattern="^(" + "|".join(RANGES) + ")$")]
# One instance of the fleet (absent: the whole fleet); an id as the registry lists it.
Instance = Annotated[str | None, Query(min_length=1, max_length=160)]
ErrorAction = Annotated[str, FastApiPath(pattern="^(resolve|ignore|reopen)$")]
# An alert's name, or its key (name and label values, which may contain "/").
AlertRef = Annotated[str, FastApiPath(min_length=1, max_length=300)]


def token_auth(check: Callable[[str], bool]) -> Callable[[Request], None]:
    """A ready-made ``auth`` dependency: ``Authorization: Bearer <token>`` accepted by ``check``.

    Hosts with their own key store (the platform's admin keys) pass their own dependency.
    """

    def dependency(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token or not check(token.strip()):
            raise HTTPException(401, "missing or invalid bearer token")

    return dependency


def static_token_check(expected: str) -> Callable[[str], bool]:
    """``check`` for :func:`token_auth` comparing against one secret in constant time."""
    want = expected.encode()
    return lambda token: hmac.compare_digest(token.encode(), want)


def alerts_from_evaluator(evaluator: Any, *, notifications: int = 50) -> dict[str, Any]:
    """An ``alerts_provider`` body for ``observability.alerting.evaluator`` (duck-typed:
    ``active_alerts()``, ``silences()``, ``notification_log.recent(n)``)."""
    active = list(evaluator.active_alerts())
    log = evaluator.notification_log
    records = log.recent(notifications) if log is not None else []
    return {
        "firing": [a for a in active if a.get("state") == "firing"],
        "pending": [a for a in active if a.get("state") == "pending"],
        "silences": [s.to_dict() for s in evaluator.silences()],
        "notifications": [
            dataclasses.asdict(r) if dataclasses.is_dataclass(r) and not isinstance(r, type) else r
            for r in records
        ],
    }


def requests_sharing_id(lines: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The distinct requests behind one request id's log lines, in order of first line: each
    request has its own span id; its caller is the client address and principal its lines
    carry, and `request_id_source` says whether the id came from the client."""
    found: dict[str, dict[str, Any]] = {}
    for line in lines:
        span = str(line.get("span_id") or "")
        entry = found.setdefault(
            span,
            {
                "span_id": span or None,
                "client_ip": None,
                "principal": None,
                "request_id_source": "server",
                "lines": 0,
            },
        )
        entry["lines"] += 1
        for key in ("client_ip", "principal"):
            if entry[key] is None and line.get(key) is not None:
                entry[key] = line[key]
        if line.get("request_id_source") == "client":
            entry["request_id_source"] = "client"
    return list(found.values())


def _json(content: Any, status: int = 200) -> Response:
    # orjson: NaN/inf become null, datetimes serialise; no-store: live data, never cached.
    return Response(
        orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS),
        status_code=status,
        media_type="application/json",
        headers={**_SECURITY_HEADERS, "Cache-Control": "no-store"},
    )


def _html(text: str) -> Response:
    return Response(
        text,
        media_type="text/html; charset=utf-8",
        headers={**_SECURITY_HEADERS, "Cache-Control": "no-cache"},
    )


def _jsonable(value: Any) -> Any:
    try:
        return orjson.loads(orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS))
    except (TypeError, orjson.JSONEncodeError):
        return str(value)


def build_ops_ui(
    data: DashboardData,
    *,
    auth: Callable[..., Any],
    admin_auth: Callable[..., Any] | None = None,
    log_lookup: LogLookup | None = None,
    alerts_provider: AlertsProvider | None = None,
    incident_provider: IncidentProvider | None = None,
    instances_provider: Callable[[], Sequence[Mapping[str, Any]]] | None = None,
    runbook: Path | None = None,
    prefix: str = "/ops",
    refresh_seconds: int = 30,
    title: str = "Operations",
) -> APIRouter:
    """The UI as a router with its paths under ``prefix``; include it with ``include_router``.

    ``auth`` is a FastAPI dependency that raises (401/403) unless the caller is an operator;
    ``admin_auth`` the same for the routes that change something (an error group's status:
    ``POST /api/errors/{fingerprint}/resolve|ignore|reopen``); without it those routes are off.
    ``log_lookup(request_id)`` returns that request's log events (dicts) for the drill-down;
    ``alerts_provider()`` returns ``{"firing": [...], "pending": [...], "silences": [...],
    "notifications": [...]}``; ``incident_provider(alert)`` returns the incident evidence of an
    alert by name or key (``observability.incident.IncidentEvidence.to_dict()``, plus optional
    ``"links"``), or None when it knows no such alert (the page says so); ``instances_provider()``
    the fleet's instances (``InstanceInfo.to_dict()``: instance, host, pid, version, started_at,
    last_seen, state up/stopped/lost, up). ``runbook``, a Markdown file, is served rendered at
    ``<prefix>/runbook`` (public like the page shells: documentation, no data), and the Markdown
    files beside it at ``<prefix>/docs/<name>.md``, where its links to them point.
    ``refresh_seconds`` is the default auto-refresh interval; a page URL may override it with
    ``?refresh=N`` (tests use a short one).
    """
    base = prefix.rstrip("/")
    if refresh_seconds < 1:
        raise ValueError("refresh_seconds must be >= 1")
    router = APIRouter(prefix=base, include_in_schema=False)
    protected = [Depends(auth)]
    nav = [(name, board.title) for name, board in data.dashboards.items()]
    first = next(iter(data.dashboards), None)

    def page(page_name: str, page_title: str, lead: str = "", name: str = "") -> Response:
        return _html(
            render_page(
                base=base,
                page=page_name,
                title=page_title,
                lead=lead,
                name=name,
                refresh_seconds=refresh_seconds,
                dashboards=nav,
                app_title=title,
            )
        )

    # -- pages (public shells) -------------------------------------------------------------------
    @router.get("")
    @router.get("/")
    def index() -> Response:
        target = f"{base}/dashboards/{first}" if first else f"{base}/errors"
        return RedirectResponse(target, status_code=307, headers=_SECURITY_HEADERS)

    @router.get("/login")
    def login_page() -> Response:
        return page("login", "Log in", "Operators only: paste an admin or viewer API key.")

    @router.get("/dashboards/{name}")
    def dashboard_page(name: str) -> Response:
        board = data.dashboards.get(name)
        if board is None:
            raise HTTPException(404, "no such dashboard")
        return page("dashboard", board.title, board.description, name)

    @router.get("/routes")
    def route_page() -> Response:
        return page("route", "Route latency", "One route's latency and traffic over time.")

    @router.get("/errors")
    def errors_page() -> Response:
        return page("errors", "Errors", "Error groups: click one for its occurrences.")

    @router.get("/errors/{fingerprint}")
    def error_page(fingerprint: str) -> Response:
        return page("error", "Error group", "Occurrences: click a request id for its logs.")

    @router.get("/requests/{request_id}")
    def request_page(request_id: str) -> Response:
        return page("request", "Request logs", "Every log line this request wrote.")

    @router.get("/alerts")
    def alerts_page() -> Response:
        return page("alerts", "Alerts", "Firing and pending alerts, silences, notifications.")

    @router.get("/incidents/{alert:path}")
    def incident_page(alert: AlertRef) -> Response:
        return page(
            "incident",
            "Incident",
            "What to look at first for this alert, in one view.",
            alert,
        )

    if runbook is not None:
        folder = runbook.parent
        documents: dict[str, MarkdownDocument] = {}

        def document_page(path: Path, page_title: str) -> Response:
            document = documents.get(path.name)
            if document is None:
                document = documents[path.name] = MarkdownDocument(path, f"{base}/docs")
            try:
                body = document.html()
            except OSError:  # a deployment without the file: say so, not a 500
                raise HTTPException(404, "no such document at this instance") from None
            return _html(
                render_document(
                    base=base, title=page_title, body_html=body, dashboards=nav, app_title=title
                )
            )

        @router.get("/runbook")
        def runbook_page() -> Response:
            return document_page(runbook, "Runbook")

        @router.get("/docs/{name}")
        def doc_page(name: str) -> Response:
            # Only a plain file name of this folder: no path, no other extension.
            if not re.fullmatch(r"[\w-]+\.md", name):
                raise HTTPException(404, "no such document")
            return document_page(folder / name, name.removesuffix(".md"))

    @router.get("/static/{path:path}")
    def static(path: str) -> Response:
        target = (STATIC_DIR / path).resolve()
        if not target.is_relative_to(STATIC_DIR) or not target.is_file():
            raise HTTPException(404, "not found")
        media = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if target.suffix == ".js":
            media = "text/javascript"
        return Response(
            target.read_bytes(),
            media_type=media,
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"},
        )

    # -- JSON API (auth required) -----------------------------------------------------------------
    @router.get("/api/session", dependencies=protected)
    def session() -> Response:
        return _json({"ok": True, "dashboards": data.dashboard_list()})

    @router.get("/api/dashboards", dependencies=protected)
    def dashboards() -> Response:
        return _json(data.dashboard_list())

    @router.get("/api/dashboards/{name}", dependencies=protected)
    def dashboard(name: str, range: Range = "1h", instance: Instance = None) -> Response:
        if name not in data.dashboards:
            raise HTTPException(404, "no such dashboard")
        return _json(data.dashboard(name, range, instance))

    @router.get("/api/routes", dependencies=protected)
    def route(
        route: Annotated[str, Query(min_length=1, max_length=300)],
        range: Range = "1h",
        instance: Instance = None,
    ) -> Response:
        return _json(data.route_detail(route, range, instance))

    @router.get("/api/errors", dependencies=protected)
    def errors(
        status: Annotated[str, Query(pattern="^(open|resolved|ignored|all)$")] = "open",
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> Response:
        groups = data.error_groups(status=None if status == "all" else status, limit=limit)
        return _json({"groups": groups, "available": data.errors is not None})

    @router.get("/api/errors/{fingerprint}", dependencies=protected)
    def error_group(fingerprint: str) -> Response:
        detail = data.error_group(fingerprint)
        if detail is None:
            raise HTTPException(404, "no such error group")
        return _json(detail)

    if admin_auth is not None and data.errors is not None:
        store = data.errors

        @router.post("/api/errors/{fingerprint}/{action}", dependencies=[Depends(admin_auth)])
        def change_error_group(
            fingerprint: str,
            action: Annotated[str, FastApiPath(pattern="^(resolve|ignore|reopen)$")],
        ) -> Response:
            change = {"resolve": store.resolve, "ignore": store.ignore, "reopen": store.reopen}
            changed = change[action](fingerprint)
            detail = store.get_group(fingerprint, occurrences=0)
            if detail is None:
                raise HTTPException(404, "no such error group")
            return _json({**detail.group.to_dict(), "changed": changed})

    @router.get("/api/requests/{request_id}/logs", dependencies=protected)
    def request_logs(request_id: str) -> Response:
        if log_lookup is None:
            return _json(
                {"request_id": request_id, "lines": [], "requests": [], "available": False}
            )
        lines = [_jsonable(dict(line)) for line in log_lookup(request_id)[:_MAX_LOG_LINES]]
        requests = requests_sharing_id(lines)
        return _json(
            {
                "request_id": request_id,
                "lines": lines,
                # A client may send any X-Request-ID: when several requests (callers) used
                # this one, the page shows each request's lines apart, with who sent it.
                "requests": requests,
                "shared": len(requests) > 1,
                "available": True,
            }
        )

    @router.get("/api/alerts", dependencies=protected)
    def alerts() -> Response:
        state: Mapping[str, Any] = alerts_provider() if alerts_provider else {}
        keys = ("firing", "pending", "silences", "notifications")
        body = {key: _jsonable(list(state.get(key, ()))) for key in keys}
        body["available"] = alerts_provider is not None
        return _json(body)

    @router.get("/api/instances", dependencies=protected)
    def instances() -> Response:
        if instances_provider is None:
            return _json({"instances": [], "available": False})
        return _json({"instances": _jsonable(list(instances_provider())), "available": True})

    @router.get("/api/incidents/{alert:path}", dependencies=protected)
    def incident(alert: AlertRef) -> Response:
        if incident_provider is None:
            return _json({"available": False})
        evidence = incident_provider(alert)
        if evidence is None:
            raise HTTPException(404, "no such alert")
        return _json({**_jsonable(dict(evidence)), "available": True})

    return router
