"""Every link a real `ep serve` hands out opens a page that exists.

`ep serve --port P` with no EP_PUBLIC_BASE_URL: the links in notifications (Slack and
PagerDuty payloads at local recording receivers) and in incident evidence
(`GET /api/v1/ops/incidents/{alert}`) must name that port, answer 200, and, when they carry an
anchor (the runbook's `#alert`), the page must hold an element with that id.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.platform import CLI, create_key, home_env
from tests.support.servers import (
    LOOPBACK,
    ManagedProcess,
    RecordingHTTPServer,
    free_port,
    wait_for_http,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_URL = re.compile(r"https?://[^\s\"'<>|)\]]+")


def _urls(value: Any) -> set[str]:
    """Every URL in a JSON document (Slack's mrkdwn `<url|text>` included)."""
    return set(_URL.findall(json.dumps(value)))


def test_links_in_notifications_and_evidence_open_real_pages(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://{LOOPBACK}:{port}"
    with RecordingHTTPServer() as slack, RecordingHTTPServer() as pagerduty:
        env = home_env(
            tmp_path,
            EP_FAULT_INJECTION="true",
            EP_ALERT_WINDOW_SCALE="0.01",
            EP_ALERT_INTERVAL_SECONDS="1",
            EP_SLACK_WEBHOOK_URL=f"{slack.url}/hook",
            EP_PAGERDUTY_ROUTING_KEY="links-test-routing-key",
            EP_PAGERDUTY_URL=f"{pagerduty.url}/v2/enqueue",
        )
        admin = {"Authorization": f"Bearer {create_key(env, 'admin')}"}
        server = ManagedProcess(
            [*CLI, "serve", "--port", str(port)], env=env, log_path=tmp_path / "server.out"
        )
        with server, httpx.Client(base_url=base, timeout=30) as http:
            wait_for_http(f"{base}/health/live", timeout=60)
            # Every statement 300 ms slower: database_latency_high (Slack) and the API
            # latency page (PagerDuty) fire within seconds at this window scale.
            put = http.put("/api/v1/ops/faults", json={"db_latency_ms": 300}, headers=admin)
            assert put.status_code == 200, put.text
            stop = threading.Event()

            def traffic() -> None:
                with httpx.Client(base_url=base, timeout=30) as client:
                    while not stop.is_set():
                        client.get("/api/v1/experiments", headers=admin)

            workers = [threading.Thread(target=traffic) for _ in range(3)]
            for worker in workers:
                worker.start()
            try:
                slack_calls = slack.wait_for(1, timeout=90)
                pagerduty_calls = pagerduty.wait_for(1, timeout=90)
            finally:
                stop.set()
                for worker in workers:
                    worker.join(timeout=60)
            http.delete("/api/v1/ops/faults", headers=admin)
            assert slack_calls, "no Slack notification"
            assert pagerduty_calls, "no PagerDuty event"

            payloads = [json.loads(r.body) for r in (*slack_calls, *pagerduty_calls)]
            links = set().union(*(_urls(p) for p in payloads))
            alerts = {
                name
                for p in payloads
                for name in re.findall(r"incidents/([a-z0-9_]+)", json.dumps(p))
            }
            assert alerts, "the notifications link no incident evidence"
            for alert in alerts:
                evidence = http.get(f"/api/v1/ops/incidents/{alert}", headers=admin)
                assert evidence.status_code == 200, (alert, evidence.text[:300])
                links |= _urls(evidence.json().get("links", {}))

            for kind in ("/ops/runbook#", "/ops/dashboards/", "/ops/incidents/"):
                assert any(kind in link for link in links), f"no {kind} link in {sorted(links)}"
            assert not [link for link in links if "github.com/example" in link]
            for link in sorted(links):
                if link.startswith((slack.url, pagerduty.url)):
                    continue  # a receiver's own address, not a link for people
                page_url, _, anchor = link.partition("#")
                assert page_url.startswith(f"{base}/"), f"{link} does not name this instance"
                page = http.get(page_url, headers=admin)
                assert page.status_code == 200, (link, page.status_code)
                if anchor:
                    assert f'id="{anchor}"' in page.text, f"{link}: no element with that id"
