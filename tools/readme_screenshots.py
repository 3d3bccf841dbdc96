"""Walk the README's "first 10 minutes" for real and take its screenshots (docs/images/first-*).

    .venv/bin/python -m tools.readme_screenshots

A real `ep serve` (fault injection on) with `ep demo` traffic, on a free loopback port under a
temporary home; the README's own API calls; Debian's chromium driven by Playwright at a small
viewport, so the PNGs stay small. Run by hand when the UI changes; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import sync_playwright
from tests.support.platform import CLI, create_key, home_env
from tests.support.servers import LOOPBACK, ManagedProcess, free_port, wait_for_http

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1100, "height": 680}


def shoot(page: Any, name: str) -> None:
    path = IMAGES / f"first-{name}.png"
    page.screenshot(path=str(path))  # the viewport only: what a person sees first
    print(f"{path.relative_to(ROOT)}: {path.stat().st_size // 1024} KiB")


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="ep-walkthrough-"))
    env = home_env(home, EP_FAULT_INJECTION="true")
    key = create_key(env, "admin")
    port = free_port()
    base = f"http://{LOOPBACK}:{port}"
    auth = {"Authorization": f"Bearer {key}"}
    demo = [*CLI, "demo", "--base-url", base, "--admin-key", key, "--rate", "15"]
    with ManagedProcess([*CLI, "serve", "--port", str(port)], env=env, log_path=home / "out"):
        wait_for_http(f"{base}/health/ready", timeout=60)
        with (
            ManagedProcess([*demo, "--duration", "300"], env=env, log_path=home / "demo"),
            httpx.Client(base_url=base, headers=auth, timeout=10) as api,
            sync_playwright() as playwright,
        ):
            # Step 3 of the README: an experiment, started, with assignments and conversions.
            api.post(
                "/api/v1/experiments",
                json={
                    "key": "cta-color",
                    "name": "CTA colour",
                    "variants": [{"key": "control", "weight": 50}, {"key": "green", "weight": 50}],
                },
            ).raise_for_status()
            api.post("/api/v1/experiments/cta-color/start").raise_for_status()
            for n in range(200):
                api.post(
                    "/api/v1/assignments",
                    json={"experiment_key": "cta-color", "user_id": f"u-{n}"},
                ).raise_for_status()
            time.sleep(40)  # a few refreshes of traffic on the dashboards

            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_context(viewport=VIEWPORT).new_page()
            page.goto(f"{base}/ops")
            page.wait_for_url("**/ops/login*")
            page.fill("#token", key)
            page.click("button[type=submit]")
            page.wait_for_load_state("networkidle")
            page.goto(f"{base}/ops/dashboards/business-metrics?range=15m")
            page.wait_for_selector("canvas", timeout=30_000)
            time.sleep(3)
            shoot(page, "business-dashboard")

            # Step 5: break something.
            api.put("/api/v1/ops/faults", json={"assignment_error_rate": 0.5}).raise_for_status()
            time.sleep(20)
            page.goto(f"{base}/ops/errors")
            page.wait_for_selector("#panel-groups a", timeout=30_000)
            time.sleep(2)
            shoot(page, "errors")
            page.locator("#panel-groups a", has_text="FaultInjectedError").first.click()
            page.wait_for_selector("a.request-link", timeout=30_000)
            time.sleep(2)
            shoot(page, "error-group")
            page.locator("a.request-link").first.click()
            page.wait_for_url("**/ops/requests/*")
            page.wait_for_selector("tr.log-line", timeout=30_000)
            time.sleep(1)
            shoot(page, "request-logs")
            api.delete("/api/v1/ops/faults").raise_for_status()
            browser.close()


if __name__ == "__main__":
    main()
