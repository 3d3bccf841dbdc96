"""ObservabilityConfig: typed defaults, validation naming the field, and from_env naming the
variable (without echoing secrets)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from observability import AlertSettings, ConfigError, LogSettings, ObservabilityConfig
from observability.alerting.rules import ThresholdRule
from observability.query.model import ErrorRatio
from observability.severity import Severity


def test_defaults_work_on_one_machine(tmp_path: Path) -> None:
    config = ObservabilityConfig(service="orders", data_dir=tmp_path)
    assert config.resolved_database_url == f"sqlite:///{tmp_path}/observability.db"
    assert config.log_directory == tmp_path / "log"
    assert config.log_file_stem == "orders"
    assert ":" in config.instance_id  # host:pid
    assert (config.metrics_token, config.admin_token, config.access) == ("", "", None)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"service": " "}, "service must not be empty"),
        ({"sentry_sample_rate": 2.0}, "sentry_sample_rate must be in"),
        ({"ops_prefix": "ops"}, "ops_prefix must start with '/'"),
    ],
)
def test_a_bad_value_names_its_field(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        ObservabilityConfig(**kwargs)  # type: ignore[arg-type]


def test_a_bad_group_value_names_its_group_and_field() -> None:
    with pytest.raises(ConfigError, match=r"log\.sample_rate must be between 0 and 1"):
        LogSettings(sample_rate=1.5)


def test_from_env_reads_scalars_and_groups_and_keeps_code_only_parts() -> None:
    rule = ThresholdRule(
        name="x_high",
        expr=ErrorRatio(window_s=60),
        comparison=">",
        threshold=0.5,
        severity=Severity.LOW,
        summary="x",
    )
    env = {
        "APP_SERVICE": "orders",
        "APP_DATA_DIR": "/srv/orders",
        "APP_IN_APP": "orders, billing",
        "APP_LOG_LEVEL": "DEBUG",
        "APP_LOG_SAMPLE_RATE": "0.25",
        "APP_NOTIFY_SLACK_WEBHOOK_URL": "http://127.0.0.1:9/hook",
        "APP_CLOUDWATCH_ENABLED": "true",
        "APP_ALERTS_WINDOW_SCALE": "0.5",
        "OTHER_SERVICE": "ignored",
    }
    config = ObservabilityConfig.from_env(
        "APP_", environ=env, alerts=AlertSettings(rules=(rule,)), metrics_token="t"
    )
    assert config.service == "orders"
    assert config.data_dir == Path("/srv/orders")
    assert config.in_app == ("orders", "billing")
    assert (config.log.level, config.log.sample_rate) == ("DEBUG", 0.25)
    assert config.notify.slack_webhook_url == "http://127.0.0.1:9/hook"
    assert config.cloudwatch.enabled is True
    # The group given in code keeps its rules and takes the environment's scalar on top.
    assert config.alerts.window_scale == 0.5
    assert config.alerts.rules == (rule,)
    assert config.metrics_token == "t"


def test_from_env_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"APP_LOG_SAMPLE_RATE: .*\(got 'lots'\)"):
        ObservabilityConfig.from_env("APP_", environ={"APP_LOG_SAMPLE_RATE": "lots"})
    with pytest.raises(
        ConfigError, match=r"APP_LOG_SAMPLE_RATE: must be between 0 and 1 \(got 3\.0\)"
    ):
        ObservabilityConfig.from_env("APP_", environ={"APP_LOG_SAMPLE_RATE": "3"})
    with pytest.raises(ConfigError, match="APP_NOTIFY_SMTP_PORT"):
        ObservabilityConfig.from_env("APP_", environ={"APP_NOTIFY_SMTP_PORT": "twenty-five"})


def test_a_code_only_field_in_the_environment_is_refused() -> None:
    with pytest.raises(ConfigError, match="APP_DASHBOARDS: dashboards can only be given in code"):
        ObservabilityConfig.from_env("APP_", environ={"APP_DASHBOARDS": "x"})


def test_workers_sharing_an_instance_id_are_distinct_fleet_members(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = ObservabilityConfig(service="s", instance="c")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert config.member_id == "c"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # `ep serve --workers N`
    assert config.member_id == f"c/{os.getpid()}"  # one lease holder, one heartbeat each
    assert config.instance_id == "c"  # logs and streams keep the operator's name
