"""Fields a client controls are checked or marked, on a real `ep serve`.

Issue 14: event timestamps were not range-checked (9999-12-31 and 0001-01-01 accepted); any
client could reuse another request's X-Request-ID and graft lines onto its drill-down.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.support.platform import create_key, home_env
from tests.support.raw_http import Served, served
from tests.support.servers import in_ci


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, dict[str, str]]]:
    home = tmp_path_factory.mktemp("untrusted")
    env = home_env(home, EP_EVENT_MAX_FUTURE_SECONDS="600", EP_EVENT_MAX_AGE_DAYS="7")
    keys = {role: create_key(env, role) for role in ("admin", "client", "viewer")}
    with served(env, home) as server:
        yield server, keys


def _post_events(server: Served, key: str, stamps: list[datetime | str | None]) -> httpx.Response:
    events = []
    for stamp in stamps:
        event: dict[str, object] = {"user_id": "u-1", "name": "page_view"}
        if stamp is not None:
            event["timestamp"] = stamp if isinstance(stamp, str) else stamp.isoformat()
        events.append(event)
    return httpx.post(
        f"{server.base}/api/v1/events",
        json={"events": events},
        headers={"Authorization": f"Bearer {key}"},
    )


@pytest.mark.parametrize(
    ("stamp", "why"),
    [
        ("9999-12-31T00:00:00Z", "in the future"),
        ("0001-01-01T00:00:00Z", "older than 7 days"),
    ],
)
def test_implausible_timestamps_are_rejected_naming_the_field(
    platform: tuple[Served, dict[str, str]], stamp: str, why: str
) -> None:
    server, keys = platform
    now = datetime.now(UTC)
    response = _post_events(server, keys["client"], [now, None, stamp])
    assert response.status_code == 422
    body = response.json()
    assert body["error"]["field"] == "events[2].timestamp"
    assert why in body["error"]["message"]
    assert body["request_id"] == response.headers["x-request-id"]


def test_timestamps_within_the_bounds_are_all_accepted(
    platform: tuple[Served, dict[str, str]],
) -> None:
    server, keys = platform
    now = datetime.now(UTC)
    accepted = _post_events(
        server,
        keys["client"],
        [
            now,
            None,
            now + timedelta(seconds=590),  # a client clock a few minutes fast
            now - timedelta(days=6, hours=23),  # an offline batch from last week
            (now - timedelta(hours=1)).astimezone(),  # another time zone
        ],
    )
    assert accepted.status_code == 202, accepted.text
    assert accepted.json() == {"accepted": 5}


def test_a_request_id_reused_by_another_caller_is_shown_apart(
    platform: tuple[Served, dict[str, str]],
) -> None:
    server, keys = platform
    shared = f"shared-{time.time_ns()}"
    for role in ("admin", "client"):
        response = httpx.get(
            f"{server.base}/api/v1/experiments",
            headers={"Authorization": f"Bearer {keys[role]}", "X-Request-ID": shared},
        )
        assert response.status_code == 200
        assert response.headers["x-request-id"] == shared  # kept: clients correlate with it
    own = httpx.get(
        f"{server.base}/api/v1/experiments", headers={"Authorization": f"Bearer {keys['admin']}"}
    )
    time.sleep(0.5)
    lookup = f"{server.base}/ops/api/requests/{{}}/logs"
    viewer = {"Authorization": f"Bearer {keys['viewer']}"}
    data = httpx.get(lookup.format(shared), headers=viewer).json()
    assert data["shared"] is True
    principals = [r["principal"] for r in data["requests"]]
    ids = {role: keys[role].removeprefix("epk_").split(".", 1)[0] for role in keys}
    assert principals == [ids["admin"], ids["client"]]
    assert {r["request_id_source"] for r in data["requests"]} == {"client"}
    assert len({r["span_id"] for r in data["requests"]}) == 2
    for line in data["lines"]:
        assert line["request_id_source"] == "client"
    alone = httpx.get(lookup.format(own.headers["x-request-id"]), headers=viewer).json()
    assert alone["shared"] is False
    assert alone["requests"][0]["request_id_source"] == "server"
    assert alone["requests"][0]["principal"] == ids["admin"]


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
]


def test_the_drill_down_page_shows_each_caller_apart_in_a_browser(
    platform: tuple[Served, dict[str, str]],
) -> None:
    if not Path(CHROMIUM).exists():
        if in_ci():
            pytest.fail("chromium is not installed")
        pytest.skip("chromium is not installed")
    from playwright.sync_api import sync_playwright

    server, keys = platform
    shared = f"page-{time.time_ns()}"
    for role in ("admin", "client"):
        httpx.get(
            f"{server.base}/api/v1/flags",
            headers={"Authorization": f"Bearer {keys[role]}", "X-Request-ID": shared},
        )
    time.sleep(0.5)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.goto(f"{server.base}/ops/requests/{shared}")
            page.wait_for_url("**/ops/login?next=*")
            page.fill("#token", keys["viewer"])  # a viewer may read the drill-down
            page.click("button[type=submit]")
            page.wait_for_url(f"**/ops/requests/{shared}")
            page.wait_for_selector("#panel-logs-1", timeout=30_000)
            titles = page.locator("section.card h2").all_inner_texts()
            banner = page.locator("#banner").inner_text()
        finally:
            browser.close()
    ids = {role: keys[role].removeprefix("epk_").split(".", 1)[0] for role in keys}
    assert problems == []
    assert "2 different requests used this request id" in banner
    assert len(titles) == 2
    assert f"key {ids['admin']}" in titles[0]
    assert f"key {ids['client']}" in titles[1]
    assert all("id supplied by the client" in title for title in titles)
