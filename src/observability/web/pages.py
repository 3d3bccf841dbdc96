"""HTML shells of the operations UI, from plain Python string templates.

Why no Jinja2: it is not a dependency of the toolkit (FastAPI does not pull it in), and the pages
are static shells - a header, navigation and an empty ``<main>`` that ``ops.js`` fills from the
JSON API. Everything interpolated goes through ``html.escape``. The pages carry no data and no
token; the script reads its settings from ``data-*`` attributes (no inline script, so the
Content-Security-Policy can forbid inline code).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

__all__ = ["CSP", "render_document", "render_page"]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{title} - {app_title}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{base}/static/vendor/uplot/uPlot.min.css">
<link rel="stylesheet" href="{base}/static/ops.css">
<script defer src="{base}/static/vendor/uplot/uPlot.iife.min.js"></script>
<script defer src="{base}/static/ops.js"></script>
</head>
<body data-base="{base}" data-page="{page}" data-name="{name}" data-refresh="{refresh}">
<header class="top">
  <div class="brand"><a href="{base}/">{app_title}</a></div>
  <nav class="nav">{nav}</nav>
  <div class="controls" id="controls" hidden>
    <div class="ranges" role="group" aria-label="Time range">{ranges}</div>
    <label class="instance-pick" hidden>Instances
      <select id="instance"><option value="">all (the fleet)</option></select></label>
    <label class="auto"><input type="checkbox" id="auto-refresh" checked>
      Auto-refresh <span id="refresh-every"></span></label>
    <span class="updated" id="updated" aria-live="polite"></span>
    <button type="button" class="link" id="logout">Log out</button>
  </div>
</header>
<div class="banner" id="banner" hidden></div>
<main id="main">
  <h1 id="page-title">{title}</h1>
  <p class="lead" id="page-lead">{lead}</p>
  {content}
</main>
</body>
</html>
"""

_LOGIN = """<form class="login" id="login-form" autocomplete="off">
  <label for="token">Admin API key</label>
  <input type="password" id="token" name="token" required autofocus
         autocomplete="current-password" spellcheck="false">
  <button type="submit">Log in</button>
  <p class="hint">The key stays in this browser tab (sessionStorage) and is sent as
  <code>Authorization: Bearer</code> on each request. Closing the tab forgets it.</p>
  <p class="error" id="login-error" hidden></p>
</form>"""

RANGE_KEYS = ("15m", "1h", "6h", "24h", "7d")


def render_page(
    *,
    base: str,
    page: str,
    title: str,
    lead: str = "",
    name: str = "",
    refresh_seconds: int,
    dashboards: Sequence[tuple[str, str]],
    app_title: str,
) -> str:
    """One page shell. ``dashboards`` are (name, title) pairs for the navigation."""
    links = [
        (f"{base}/dashboards/{n}", t, page == "dashboard" and n == name) for n, t in dashboards
    ]
    links += [
        (f"{base}/errors", "Errors", page in ("errors", "error", "request")),
        (f"{base}/alerts", "Alerts", page in ("alerts", "incident")),
    ]
    current = ' aria-current="page"'
    nav = "".join(
        f'<a href="{escape(href)}"{current if active else ""}>{escape(text)}</a>'
        for href, text, active in links
    )
    ranges = "".join(
        f'<button type="button" data-range="{key}">{key}</button>' for key in RANGE_KEYS
    )
    content = _LOGIN if page == "login" else '<div class="grid" id="content"></div>'
    return _PAGE.format(
        base=escape(base),
        page=escape(page),
        name=escape(name),
        refresh=int(refresh_seconds),
        title=escape(title),
        lead=escape(lead),
        app_title=escape(app_title),
        nav="" if page == "login" else nav,
        ranges=ranges,
        content=content,
    )


_DOCUMENT = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{title} - {app_title}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{base}/static/ops.css">
</head>
<body data-base="{base}" data-page="document">
<header class="top">
  <div class="brand"><a href="{base}/">{app_title}</a></div>
  <nav class="nav">{nav}</nav>
</header>
<main id="main" class="document">
{body}
</main>
</body>
</html>
"""


def render_document(
    *, base: str, title: str, body_html: str, dashboards: Sequence[tuple[str, str]], app_title: str
) -> str:
    """A static document page (the runbook): no script, no data. ``body_html`` must already
    be safe (rendered with raw HTML escaped); everything else is escaped here."""
    links = [(f"{base}/dashboards/{n}", t) for n, t in dashboards]
    links += [(f"{base}/errors", "Errors"), (f"{base}/alerts", "Alerts")]
    nav = "".join(f'<a href="{escape(href)}">{escape(text)}</a>' for href, text in links)
    return _DOCUMENT.format(
        base=escape(base),
        title=escape(title),
        app_title=escape(app_title),
        nav=nav,
        body=body_html,
    )
