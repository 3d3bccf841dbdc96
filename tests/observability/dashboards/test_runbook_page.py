"""The runbook as a page of the operations UI: Markdown rendered with GitHub's heading ids,
raw HTML and script links escaped, and the platform's real runbook served with every anchor
an alert links to."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from experimentation_platform.telemetry import alerts
from experimentation_platform.telemetry.runbook import runbook_path
from observability.alerting.rules import definitions
from observability.dashboards.data import DashboardData
from observability.metrics.windows import RollingWindows
from observability.web import build_ops_ui
from observability.web.runbook import render_markdown
from tests.test_docs import RUNBOOK, anchors

HOSTILE = """# Runbook

## disk_saturation

<script>alert(1)</script> and <img src=x onerror=alert(2)>

[click](javascript:alert(3)) [ok](https://example.org/page)

## Same name
## Same name

| a | b |
|---|---|
| `x` | <b>y</b> |
"""


def test_headings_get_github_ids_and_html_in_the_text_is_escaped() -> None:
    html = render_markdown(HOSTILE)
    assert '<h2 id="disk_saturation">' in html
    assert '<h2 id="same-name">' in html
    assert '<h2 id="same-name-1">' in html
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "<img" not in html
    assert 'href="javascript:' not in html  # markdown-it refuses the link
    assert 'href="https://example.org/page"' in html
    assert "<table>" in html
    assert "&lt;b&gt;y&lt;/b&gt;" in html


def _ui(path: Path | None) -> TestClient:
    app = FastAPI()

    def deny() -> None:
        raise AssertionError("the runbook page needs no key")

    app.include_router(
        build_ops_ui(DashboardData((), windows=RollingWindows()), auth=deny, runbook=path)
    )
    return TestClient(app)


def test_the_platforms_runbook_is_served_with_every_anchor_alerts_link_to() -> None:
    assert runbook_path().resolve() == RUNBOOK.resolve()  # a source checkout reads docs/
    with _ui(runbook_path()) as client:
        page = client.get("/ops/runbook")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Content-Security-Policy" in page.headers
    served = set(re.findall(r'<h\d id="([^"]+)"', page.text))
    assert anchors(RUNBOOK) <= served  # every heading id GitHub would give
    linked = {d.runbook for d in definitions(alerts.BASE_RULES)}
    assert linked <= served, linked - served


def test_links_to_sibling_documents_open_them_and_nothing_else_is_served() -> None:
    html = render_markdown(
        "[t](troubleshooting.md#redis-down) [x](https://e.org/a.md)", "/ops/docs"
    )
    assert 'href="/ops/docs/troubleshooting.md#redis-down"' in html
    assert 'href="https://e.org/a.md"' in html  # absolute links stay as written
    with _ui(runbook_path()) as client:
        page = client.get("/ops/runbook").text
        linked = set(re.findall(r'href="/ops/docs/([\w-]+\.md)(?:#([\w-]*))?"', page))
        assert linked  # the runbook links alerting.md, troubleshooting.md, ...
        for name, anchor in sorted(linked):
            doc = client.get(f"/ops/docs/{name}")
            assert doc.status_code == 200, name
            if anchor:
                assert f'id="{anchor}"' in doc.text, f"{name}#{anchor}"
        for bad in ("..%2Fpyproject.toml", "runbook.txt", "missing.md", "%2Fetc%2Fpasswd"):
            assert client.get(f"/ops/docs/{bad}").status_code == 404, bad


def test_a_missing_runbook_file_is_a_404_not_a_crash(tmp_path: Path) -> None:
    with _ui(tmp_path / "gone.md") as client:
        assert client.get("/ops/runbook").status_code == 404
    with _ui(None) as client:
        assert client.get("/ops/runbook").status_code == 404  # not configured: no route


def test_the_wheel_carries_the_runbook_where_the_platform_looks_for_it() -> None:
    # A normal install has no docs/: the wheel force-includes the file next to the module.
    root = Path(__file__).resolve().parents[3]
    build = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    included = build["targets"]["wheel"]["force-include"]
    packaged = root / "src" / included["docs"] / "runbook.md"
    import experimentation_platform.telemetry.runbook as module

    assert packaged.parent == Path(module.__file__).resolve().parent / "docs"
