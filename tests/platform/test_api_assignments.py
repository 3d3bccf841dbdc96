"""Assignment, exposures, flags, events and results over HTTP, on every backend."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from experimentation_platform.settings import Settings
from tests.support.platform import Instance, running_instance

VARIANTS = [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}]


def running_experiment(api: Instance, key: str = "exp", **extra: object) -> None:
    body = {"key": key, "name": "n", "variants": VARIANTS, **extra}
    assert api.client.post("/api/v1/experiments", json=body, headers=api.admin).status_code == 201
    assert api.client.post(f"/api/v1/experiments/{key}/start", headers=api.admin).status_code == 200


def assign(api: Instance, user: str, key: str = "exp", **attributes: object) -> dict[str, object]:
    response = api.client.post(
        "/api/v1/assignments",
        json={"experiment_key": key, "user_id": user, "attributes": attributes},
        headers=api.user,
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_assignment_is_sticky_and_exposure_recorded_once(api: Instance) -> None:
    running_experiment(api)
    first = assign(api, "alice")
    assert first["in_experiment"] is True
    assert all(assign(api, "alice")["variant"] == first["variant"] for _ in range(3))
    results = api.client.get("/api/v1/experiments/exp/results", headers=api.user).json()
    assert sum(v["exposures"] for v in results["variants"]) == 1


def test_outside_targeting_or_not_running_is_an_answer_not_an_error(api: Instance) -> None:
    running_experiment(api, targeting=[{"attribute": "country", "operator": "eq", "value": "FR"}])
    assert assign(api, "bob", country="US") == {
        "experiment_key": "exp",
        "user_id": "bob",
        "in_experiment": False,
        "variant": None,
        "reason": "targeting",
    }
    api.client.post("/api/v1/experiments/exp/pause", headers=api.admin)
    assert assign(api, "bob", country="FR")["reason"] == "not_running"
    unknown = api.client.post(
        "/api/v1/assignments", json={"experiment_key": "nope", "user_id": "bob"}, headers=api.user
    )
    assert unknown.status_code == 404
    assert unknown.json()["error"]["field"] == "experiment_key"


def test_same_variant_after_restart_and_on_a_second_instance(
    backend: Settings, tmp_path: Path
) -> None:
    with running_instance(backend) as first:
        running_experiment(first)
        keys = (first.admin["Authorization"][7:], first.user["Authorization"][7:])
        before = {f"u{n}": assign(first, f"u{n}")["variant"] for n in range(200)}
        # A second instance over the same database (and Redis, when configured).
        with running_instance(backend, keys) as second:
            assert {u: assign(second, u)["variant"] for u in before} == before
    with running_instance(backend, keys) as restarted:
        assert {u: assign(restarted, u)["variant"] for u in before} == before
        results = restarted.client.get(
            "/api/v1/experiments/exp/results", headers=restarted.user
        ).json()
        assert sum(v["exposures"] for v in results["variants"]) == 200


def test_config_change_reaches_a_second_instance(backend: Settings) -> None:
    """Invalidation: a flag switched off on one instance is off on the other at once with Redis,
    and within the documented in-process TTL otherwise (0 s in this test's settings)."""
    settings = backend.model_copy(
        update={"cache_ttl_seconds": 0.0 if not backend.redis_url else 5.0}
    )
    with running_instance(settings) as one:
        keys = (one.admin["Authorization"][7:], one.user["Authorization"][7:])
        one.client.post(
            "/api/v1/flags",
            json={"key": "f", "enabled": True, "rollout_percentage": 100},
            headers=one.admin,
        )
        with running_instance(settings, keys) as two:
            url = "/api/v1/flags/f/evaluation?user_id=u1"
            assert two.client.get(url, headers=two.user).json()["enabled"] is True
            one.client.patch("/api/v1/flags/f", json={"enabled": False}, headers=one.admin)
            assert two.client.get(url, headers=two.user).json() == {
                "key": "f",
                "user_id": "u1",
                "enabled": False,
                "reason": "disabled",
                "version": 2,
            }


def test_flags_single_and_batch_evaluation(api: Instance) -> None:
    for body in (
        {"key": "everyone", "enabled": True, "rollout_percentage": 100},
        {"key": "nobody", "enabled": True, "rollout_percentage": 0},
        {
            "key": "pro-only",
            "enabled": True,
            "rules": [{"conditions": [{"attribute": "plan", "value": "pro"}], "enabled": True}],
        },
    ):
        assert api.client.post("/api/v1/flags", json=body, headers=api.admin).status_code == 201
    single = api.client.get("/api/v1/flags/everyone/evaluation?user_id=u1", headers=api.user).json()
    assert (single["enabled"], single["reason"]) == (True, "rollout")
    batch = api.client.post(
        "/api/v1/flags/evaluations",
        json={"user_id": "u1", "attributes": {"plan": "pro"}},
        headers=api.user,
    ).json()
    assert {k: (v["enabled"], v["reason"]) for k, v in batch["flags"].items()} == {
        "everyone": (True, "rollout"),
        "nobody": (False, "rollout_excluded"),
        "pro-only": (True, "rule_match"),
    }
    assert (
        api.client.get("/api/v1/flags/missing/evaluation?user_id=u1", headers=api.user).status_code
        == 404
    )
    assert api.client.get("/api/v1/flags/everyone/evaluation", headers=api.user).status_code == 422


def test_events_results_and_sample_ratio(api: Instance) -> None:
    running_experiment(api)
    variants = Counter()
    converters = Counter()
    for n in range(400):
        variant = assign(api, f"u{n}")["variant"]
        variants[variant] += 1
        if n % 4 == 0:
            converters[variant] += 1
            event = {"user_id": f"u{n}", "name": "purchase", "experiment_key": "exp", "value": 10.0}
            assert (
                api.client.post(
                    "/api/v1/events", json={"events": [event]}, headers=api.user
                ).status_code
                == 202
            )
    page_views = [{"user_id": f"u{n}", "name": "page_view"} for n in range(1000)]
    accepted = api.client.post("/api/v1/events", json={"events": page_views}, headers=api.user)
    assert accepted.json() == {"accepted": 1000}
    results = api.client.get(
        "/api/v1/experiments/exp/results?event=purchase", headers=api.user
    ).json()
    by_key = {v["key"]: v for v in results["variants"]}
    for variant in ("control", "treatment"):
        assert by_key[variant]["exposures"] == variants[variant]
        assert by_key[variant]["conversions"] == converters[variant]
        assert by_key[variant]["conversion_rate"] == converters[variant] / variants[variant]
        assert by_key[variant]["value_sum"] == 10.0 * converters[variant]
    assert results["sample_ratio_mismatch"]["mismatch"] is False


def test_event_batch_limits_and_atomicity(api: Instance) -> None:
    running_experiment(api)
    too_many = [{"user_id": "u", "name": "e"}] * 1001
    response = api.client.post("/api/v1/events", json={"events": too_many}, headers=api.user)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "events"
    mixed = [
        {"user_id": "u", "name": "purchase", "experiment_key": "exp"},
        {"user_id": "u", "name": "purchase", "experiment_key": "ghost"},
    ]
    rejected = api.client.post("/api/v1/events", json={"events": mixed}, headers=api.user)
    assert rejected.status_code == 422
    assert rejected.json()["error"]["field"] == "events[1].experiment_key"
    assign(api, "u")
    results = api.client.get("/api/v1/experiments/exp/results", headers=api.user).json()
    assert sum(v["conversions"] for v in results["variants"]) == 0  # nothing half-written
