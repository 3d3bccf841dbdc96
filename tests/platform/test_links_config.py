"""Where alert links point: the instance's own runbook page and bound port by default,
EP_RUNBOOK_BASE_URL and EP_PUBLIC_BASE_URL when set."""

from __future__ import annotations

import socket
from pathlib import Path

from observability.core import Observability
from tests.support.platform import backend_settings, running_instance


def _links(tmp_path: Path, **settings: object) -> tuple[str | None, str | None]:
    base = backend_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}", False, "x:")
    with running_instance(base.model_copy(update=settings)) as api:
        observability: Observability = api.client.app.state.observability  # type: ignore[attr-defined]
        evaluator = observability.evaluator
        definition = next(d for d in evaluator.definitions if d.name == "dependency_not_ready")
        return evaluator.config.links(definition)


def test_links_default_to_this_instances_host_and_port(tmp_path: Path) -> None:
    runbook, dashboard = _links(tmp_path, host="127.0.0.1", port=8123)
    assert runbook == "http://127.0.0.1:8123/ops/runbook#dependency_not_ready"
    assert dashboard == "http://127.0.0.1:8123/ops/dashboards/system-health"


def test_public_base_url_and_runbook_base_url_override_them(tmp_path: Path) -> None:
    runbook, dashboard = _links(
        tmp_path,
        public_base_url="https://ep.example.org/",
        runbook_base_url="https://wiki.example.org/ep-runbook",
    )
    assert runbook == "https://wiki.example.org/ep-runbook#dependency_not_ready"
    assert dashboard == "https://ep.example.org/ops/dashboards/system-health"


def test_the_base_url_names_a_host_another_machine_can_reach(tmp_path: Path) -> None:
    settings = backend_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}", False, "x:")
    wildcard = settings.model_copy(update={"host": "0.0.0.0", "port": 9000})
    assert wildcard.base_url == f"http://{socket.gethostname()}:9000"
    assert settings.model_copy(update={"host": "::1"}).base_url.startswith("http://[::1]:")
    public = settings.model_copy(update={"public_base_url": "https://ep.example.org/"})
    assert public.base_url == "https://ep.example.org"
