"""Experiments over HTTP, on every storage backend."""

from __future__ import annotations

from typing import Any

from tests.support.platform import Instance

VARIANTS = [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}]


def create(api: Instance, key: str = "exp", **extra: Any) -> dict[str, Any]:
    body = {"key": key, "name": "An experiment", "variants": VARIANTS, **extra}
    response = api.client.post("/api/v1/experiments", json=body, headers=api.admin)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_create_get_list_and_paginate(api: Instance) -> None:
    created = create(api, "exp-0", traffic_allocation=50.0)
    assert created["status"] == "draft"
    assert created["traffic_allocation"] == 50.0
    for n in range(1, 5):
        create(api, f"exp-{n}")
    assert api.client.get("/api/v1/experiments/exp-0", headers=api.user).json()["key"] == "exp-0"
    page = api.client.get("/api/v1/experiments?offset=2&limit=2", headers=api.user).json()
    assert page["total"] == 5
    assert [item["key"] for item in page["items"]] == ["exp-2", "exp-3"]


def test_lifecycle_transitions_are_validated(api: Instance) -> None:
    create(api)
    post = lambda action: api.client.post(f"/api/v1/experiments/exp/{action}", headers=api.admin)  # noqa: E731
    bad = post("pause")
    assert bad.status_code == 409
    assert (
        bad.json()["error"]["message"]
        == "cannot pause an experiment that is draft; pause needs status running"
    )
    assert post("start").json()["status"] == "running"
    assert post("pause").json()["status"] == "paused"
    assert post("start").json()["status"] == "running"
    done = post("complete").json()
    assert done["status"] == "completed"
    assert done["completed_at"] is not None
    assert post("start").status_code == 409
    listed = api.client.get("/api/v1/experiments?status=completed", headers=api.user).json()
    assert listed["total"] == 1


def test_update_only_while_draft(api: Instance) -> None:
    create(api)
    changed = api.client.patch(
        "/api/v1/experiments/exp",
        json={
            "name": "Renamed",
            "variants": [{"key": "a", "weight": 30}, {"key": "b", "weight": 70}],
        },
        headers=api.admin,
    )
    assert changed.status_code == 200
    assert changed.json()["version"] == 2
    assert changed.json()["variants"][1] == {"key": "b", "weight": 70}
    api.client.post("/api/v1/experiments/exp/start", headers=api.admin)
    refused = api.client.patch("/api/v1/experiments/exp", json={"name": "x"}, headers=api.admin)
    assert refused.status_code == 409
    assert "only draft experiments can be edited" in refused.json()["error"]["message"]


def test_bad_input_names_the_field_and_writes_nothing(api: Instance) -> None:
    bad_weights = {
        "key": "w",
        "name": "n",
        "variants": [{"key": "a", "weight": 50}, {"key": "b", "weight": 40}],
    }
    response = api.client.post("/api/v1/experiments", json=bad_weights, headers=api.admin)
    assert response.status_code == 422
    body = response.json()
    assert body["error"]["field"] == "variants"
    assert "sum to 100 (they sum to 90)" in body["error"]["message"]
    assert body["request_id"] == response.headers["x-request-id"]
    missing = api.client.post("/api/v1/experiments", json={"key": "m"}, headers=api.admin)
    assert {d["field"] for d in missing.json()["error"]["details"]} == {"name", "variants"}
    malformed = api.client.post(
        "/api/v1/experiments",
        content=b'{"key": ',
        headers={**api.admin, "content-type": "application/json"},
    )
    assert malformed.status_code == 422
    assert malformed.json()["error"]["message"] == "body: JSON decode error"
    assert api.client.get("/api/v1/experiments", headers=api.user).json()["total"] == 0


def test_duplicate_key_conflicts(api: Instance) -> None:
    create(api)
    again = api.client.post(
        "/api/v1/experiments",
        json={"key": "exp", "name": "n", "variants": VARIANTS},
        headers=api.admin,
    )
    assert again.status_code == 409
    assert again.json()["error"]["field"] == "key"


def test_unknown_experiment_is_404(api: Instance) -> None:
    response = api.client.get("/api/v1/experiments/nope", headers=api.user)
    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "not_found",
        "message": "experiment 'nope' not found",
        "field": "key",
    }


def test_keys_and_roles(api: Instance) -> None:
    assert api.client.get("/api/v1/experiments").status_code == 401
    wrong = api.client.get(
        "/api/v1/experiments", headers={"Authorization": "Bearer epk_000000000000.nope"}
    )
    assert wrong.status_code == 401
    key = api.admin["Authorization"].removeprefix("Bearer ")
    assert api.client.get("/api/v1/experiments", headers={"X-API-Key": key}).status_code == 200
    forbidden = api.client.post(
        "/api/v1/experiments",
        json={"key": "c", "name": "n", "variants": VARIANTS},
        headers=api.user,
    )
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["message"] == "this operation needs an admin key"
