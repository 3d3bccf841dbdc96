"""A gentle, bounded traffic generator so a newcomer sees live data on every dashboard.

It creates sample experiments and flags (idempotently), then drives realistic traffic:
assignments, flag evaluations, conversion events, a few client mistakes (4xx) and, rarely,
a call to the admin self-test endpoint that raises a real unhandled exception (5xx), so the
error pipeline has something to show. It only talks to the base URL it is given.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["DemoRejected", "DemoTraffic", "seed"]


class DemoRejected(Exception):
    """The platform refused the demo's own key: nothing the demo does can work."""


EXPERIMENTS: list[dict[str, Any]] = [
    {
        "key": "checkout-button-color",
        "name": "Checkout button colour",
        "variants": [{"key": "control", "weight": 50}, {"key": "green", "weight": 50}],
    },
    {
        "key": "onboarding-flow",
        "name": "Three-step onboarding",
        "variants": [
            {"key": "control", "weight": 34},
            {"key": "short", "weight": 33},
            {"key": "guided", "weight": 33},
        ],
        "traffic_allocation": 80.0,
    },
    {
        "key": "pricing-page-eu",
        "name": "Pricing page for EU visitors",
        "variants": [{"key": "control", "weight": 50}, {"key": "annual-first", "weight": 50}],
        "targeting": [{"attribute": "region", "operator": "eq", "value": "eu"}],
    },
]
FLAGS: list[dict[str, Any]] = [
    {"key": "new-search", "enabled": True, "rollout_percentage": 25.0},
    {"key": "dark-mode", "enabled": True, "rollout_percentage": 100.0},
    {
        "key": "beta-reports",
        "enabled": True,
        "rollout_percentage": 0.0,
        "rules": [
            {
                "conditions": [{"attribute": "plan", "operator": "eq", "value": "pro"}],
                "enabled": True,
            }
        ],
    },
]


def seed(client: httpx.Client, admin_headers: dict[str, str]) -> None:
    """Create the sample experiments (started) and flags; existing ones are left as they are."""
    for experiment in EXPERIMENTS:
        response = client.post("/api/v1/experiments", json=experiment, headers=admin_headers)
        if response.status_code == 201:
            client.post(f"/api/v1/experiments/{experiment['key']}/start", headers=admin_headers)
    for flag in FLAGS:
        client.post("/api/v1/flags", json=flag, headers=admin_headers)


@dataclass
class DemoTraffic:
    base_url: str
    admin_key: str
    rate_per_second: float = 5.0
    duration: float | None = None
    seed_value: int = 7
    # Share of calls to the self-test endpoint (a deliberate 500). Kept well under the
    # availability SLO's error budget (0.1%) so demo traffic never pages anyone by itself.
    selftest_rate: float = 0.0002
    statuses: Counter[int] = field(default_factory=Counter)
    # Answers 401/403 to requests made with the demo's own key (its deliberate wrong-key calls
    # are client mistakes on purpose and not counted here).
    rejected: Counter[int] = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        self._stop.set()

    def run(
        self,
        on_progress: Callable[[Counter[int]], None] | None = None,
        progress_every: float = 10.0,
    ) -> Counter[int]:
        rng = random.Random(self.seed_value)
        headers = {"Authorization": f"Bearer {self.admin_key}"}
        deadline = time.monotonic() + self.duration if self.duration else None
        own = headers["Authorization"]

        def watch(response: httpx.Response) -> None:
            if (
                response.status_code in (401, 403)
                and response.request.headers.get("authorization") == own
            ):
                self.rejected[response.status_code] += 1

        with httpx.Client(
            base_url=self.base_url, timeout=10.0, event_hooks={"response": [watch]}
        ) as client:
            self._check_key(client, headers)
            seed(client, headers)
            users = [f"user-{n:05d}" for n in range(2_000)]
            last_report = time.monotonic()
            while not self._stop.is_set() and (deadline is None or time.monotonic() < deadline):
                try:
                    status = self._one_call(client, headers, rng, rng.choice(users))
                    self.statuses[status] += 1
                except httpx.HTTPError:
                    self.statuses[0] += 1  # the server is down or restarting: keep trying
                if on_progress and time.monotonic() - last_report >= progress_every:
                    on_progress(self.statuses)
                    last_report = time.monotonic()
                self._stop.wait(rng.expovariate(self.rate_per_second))
        return self.statuses

    def _check_key(self, client: httpx.Client, headers: dict[str, str]) -> None:
        """Fail at once, naming the reason, when the platform refuses the key (an unreachable
        platform raises httpx's own error, naming the URL)."""
        probe = client.get("/api/v1/keys", headers=headers)  # admin only: proves the role
        if probe.status_code in (401, 403, 429):
            try:
                reason = str(probe.json()["error"]["message"])
            except (ValueError, KeyError, TypeError):
                reason = probe.reason_phrase
            raise DemoRejected(
                f"the platform at {self.base_url} refused the admin key "
                f"({probe.status_code}: {reason}); give an admin key with --admin-key "
                "or EP_DEMO_ADMIN_KEY (ep keys create --role admin)"
            )

    def _one_call(
        self, client: httpx.Client, headers: dict[str, str], rng: random.Random, user: str
    ) -> int:
        roll = rng.random()
        attributes = {
            "region": rng.choice(["eu", "us", "apac"]),
            "plan": rng.choice(["free", "pro"]),
        }
        if roll < 0.45:
            experiment = rng.choice(EXPERIMENTS)["key"]
            body = {"experiment_key": experiment, "user_id": user, "attributes": attributes}
            response = client.post("/api/v1/assignments", json=body, headers=headers)
            data = response.json()
            if data.get("in_experiment") and rng.random() < (
                0.12 if data["variant"] == "control" else 0.15
            ):
                event = {
                    "user_id": user,
                    "name": "purchase",
                    "experiment_key": experiment,
                    "value": round(rng.uniform(5, 120), 2),
                }
                client.post("/api/v1/events", json={"events": [event]}, headers=headers)
            return response.status_code
        if roll < 0.75:
            flag = rng.choice(FLAGS)["key"]
            response = client.get(
                f"/api/v1/flags/{flag}/evaluation", params={"user_id": user}, headers=headers
            )
            return response.status_code
        if roll < 0.88:
            response = client.post(
                "/api/v1/flags/evaluations",
                json={"user_id": user, "attributes": attributes},
                headers=headers,
            )
            return response.status_code
        if roll < 0.95:
            events = [
                {"user_id": user, "name": rng.choice(["page_view", "search", "signup"])}
                for _ in range(rng.randint(1, 20))
            ]
            return client.post(
                "/api/v1/events", json={"events": events}, headers=headers
            ).status_code
        if roll < 0.985:
            # Client mistakes an operator should see as 4xx, not as errors of ours.
            mistake = rng.randrange(3)
            if mistake == 0:
                return client.post(
                    "/api/v1/assignments",
                    json={"experiment_key": "no-such-test", "user_id": user},
                    headers=headers,
                ).status_code
            if mistake == 1:
                return client.get(
                    "/api/v1/experiments", headers={"Authorization": "Bearer wrong"}
                ).status_code
            return client.post("/api/v1/events", json={"events": []}, headers=headers).status_code
        if roll < 1.0 - self.selftest_rate:
            return client.get(
                "/api/v1/experiments", params={"limit": 20}, headers=headers
            ).status_code
        return client.post("/api/v1/ops/selftest/error", headers=headers).status_code
