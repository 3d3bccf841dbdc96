"""`ep serve` as a real server process, driven by `ep demo` for a few seconds."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from tests.support.platform import CLI, create_key, home_env
from tests.support.servers import ManagedProcess, free_port, wait_for_http


def test_serve_then_demo_traffic(tmp_path: Path) -> None:
    env = home_env(tmp_path)
    cli = CLI
    key = create_key(env, "admin")
    port = free_port()
    with ManagedProcess(
        [*cli, "serve", "--port", str(port)], env=env, log_path=tmp_path / "server.out"
    ):
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/health/ready", timeout=30)
        demo = subprocess.run(
            [
                *cli,
                "demo",
                "--base-url",
                base,
                "--admin-key",
                key,
                "--rate",
                "60",
                "--duration",
                "4",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert demo.returncode == 0, demo.stderr
        summary = demo.stdout.strip().splitlines()[-1]
        assert summary.startswith("demo finished:")
        experiments = httpx.get(
            f"{base}/api/v1/experiments", headers={"Authorization": f"Bearer {key}"}
        ).json()
        assert {e["key"] for e in experiments["items"]} >= {
            "checkout-button-color",
            "onboarding-flow",
        }
        assert all(e["status"] == "running" for e in experiments["items"])
        results = httpx.get(
            f"{base}/api/v1/experiments/checkout-button-color/results",
            headers={"Authorization": f"Bearer {key}"},
        ).json()
        assert sum(v["exposures"] for v in results["variants"]) > 0
