"""The CloudFormation template generated from the monitoring definitions: structure, least
privilege, no secrets, cfn-lint clean, and the committed file equal to a fresh render."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from experimentation_platform.commands import cloud as cloud_cli
from experimentation_platform.telemetry import cloud as platform_cloud
from observability.cloud.provisioning import (
    LogGroupSpec,
    MetricFilterSpec,
    MonitoringDefinitions,
    SavedQuery,
    build_template,
    evaluate_condition,
    render_yaml,
    resolve,
)
from observability.cloud.verify import ResourceCheck, VerificationReport

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "deploy" / "cloudformation" / "monitoring.yaml"
CFN_LINT = Path(sys.executable).parent / "cfn-lint"

SAMPLE_ALARMS: list[dict[str, Any]] = [
    {
        "AlarmName": "http-5xx-burst",
        "AlarmDescription": "More than 10 server errors a minute for 3 of 5 minutes.",
        "Namespace": "ExperimentationPlatform",
        "MetricName": "log_http_5xx_total",
        "Statistic": "Sum",
        "Period": 60,
        "EvaluationPeriods": 5,
        "DatapointsToAlarm": 3,
        "Threshold": 10,
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching",
        "AlarmActions": [{"Ref": "AlertTopicCritical"}],
        "OKActions": [{"Ref": "AlertTopicCritical"}],
    },
    {
        "AlarmName": "slow-requests",
        "Namespace": "ExperimentationPlatform",
        "MetricName": "log_slow_requests_total",
        "Statistic": "Sum",
        "Period": 300,
        "EvaluationPeriods": 1,
        "Threshold": 50,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "AlarmActions": [{"Ref": "AlertTopicMedium"}],
    },
]
SAMPLE_QUERIES = [
    (
        "5xx by route",
        "fields @timestamp, route, status, request_id\n| filter status >= 500\n"
        "| stats count(*) as failures by route\n| sort failures desc",
        ["/experimentation-platform/api"],
    ),
    ("errors by logger", "fields logger, event\n| stats count(*) by logger", ["errors"]),
]
SAMPLE_DASHBOARD = {
    "widgets": [
        {
            "type": "metric",
            "x": 0,
            "y": 0,
            "width": 12,
            "height": 6,
            "properties": {
                "title": "5xx from logs",
                "region": "us-east-1",
                "metrics": [["ExperimentationPlatform", "log_http_5xx_total"]],
                "stat": "Sum",
                "period": 60,
            },
        },
        {
            "type": "log",
            "x": 12,
            "y": 0,
            "width": 12,
            "height": 6,
            "properties": {
                "title": "latest errors",
                "query": "SOURCE '/experimentation-platform/errors' | fields @timestamp, event"
                " | sort @timestamp desc | limit 20",
                "view": "table",
            },
        },
    ]
}


def sample_definitions() -> MonitoringDefinitions:
    """The platform's definitions with pinned saved queries, a dashboard and alarms, so the
    template holds every resource type whatever the sibling modules define today."""
    return platform_cloud.platform_definitions(
        saved_queries=MonitoringDefinitions.queries_from_tuples(SAMPLE_QUERIES),
        dashboards={"overview": SAMPLE_DASHBOARD},
        alarms=SAMPLE_ALARMS,
    )


def default_env(template: dict[str, Any], **overrides: str) -> dict[str, str]:
    """What deploy would resolve against, offline: defaults, fixed pseudo parameters."""
    env = {name: str(spec.get("Default", "")) for name, spec in template["Parameters"].items()}
    env.update(overrides)
    env.update({"AWS::Region": "eu-west-1", "AWS::AccountId": "111122223333"})
    env["AWS::Partition"] = "aws"
    for name, expression in template["Conditions"].items():
        env[f"Condition::{name}"] = str(evaluate_condition(expression, env)).lower()
    env["MonitoringKey"] = "1234abcd-12ab-34cd-56ef-1234567890ab"
    for lid, resource in template["Resources"].items():
        props = resource["Properties"]
        if resource["Type"] == "AWS::Logs::LogGroup":
            env[lid] = resolve(props["LogGroupName"], env)
        elif resource["Type"] == "AWS::SNS::Topic":
            env[lid] = "arn:aws:sns:eu-west-1:111122223333:" + resolve(props["TopicName"], env)
    return env


def of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return build_template(sample_definitions())


def test_every_resource_type_is_generated(template: dict[str, Any]) -> None:
    kinds = {r["Type"] for r in template["Resources"].values()}
    assert kinds == {
        "AWS::Logs::LogGroup",
        "AWS::Logs::MetricFilter",
        "AWS::Logs::QueryDefinition",
        "AWS::CloudWatch::Dashboard",
        "AWS::CloudWatch::Alarm",
        "AWS::SNS::Topic",
        "AWS::SNS::Subscription",
        "AWS::IAM::ManagedPolicy",
        "AWS::KMS::Key",
        "AWS::KMS::Alias",
    }
    assert set(template["Outputs"]) >= {
        "AlertTopicCriticalArn",
        "AlertTopicHighArn",
        "AlertTopicMediumArn",
        "AlertTopicLowArn",
        "ApplicationPolicyArn",
    }


def test_log_groups_names_and_retention_follow_the_parameters(template: dict[str, Any]) -> None:
    groups = of_type(template, "AWS::Logs::LogGroup")
    env = default_env(template)
    resolved = {resolve(g["Properties"]["LogGroupName"], env): g for g in groups.values()}
    retention = {
        name: int(resolve(g["Properties"]["RetentionInDays"], env)) for name, g in resolved.items()
    }
    assert retention == {
        "/experimentation-platform/api": 30,
        "/experimentation-platform/services": 90,
        "/experimentation-platform/errors": 180,
    }
    # Another prefix and retention through the parameters, no new template.
    env = default_env(template, LogGroupPrefix="/staging/ep", RetentionDaysApi="7")
    assert resolve(groups["LogGroupApi"]["Properties"]["LogGroupName"], env) == "/staging/ep/api"
    assert resolve(groups["LogGroupApi"]["Properties"]["RetentionInDays"], env) == "7"
    # Deleting the stack must keep the logs.
    assert {g["DeletionPolicy"] for g in groups.values()} == {"Retain"}


def test_metric_filters_read_the_json_log_fields(template: dict[str, Any]) -> None:
    filters = {
        f["Properties"]["FilterName"]: f["Properties"]
        for f in of_type(template, "AWS::Logs::MetricFilter").values()
    }
    five = filters["http-5xx"]
    assert five["LogGroupName"] == {"Ref": "LogGroupApi"}
    assert '$.event = "request_completed"' in five["FilterPattern"]
    assert "$.status >= 500" in five["FilterPattern"]
    slow = filters["slow-requests"]["FilterPattern"]
    assert f"$.duration_ms > {platform_cloud.SLOW_REQUEST_THRESHOLD_MS}" in slow
    by_level = filters["error-lines-by-level"]["MetricTransformations"][0]
    assert by_level["Dimensions"] == [{"Key": "level", "Value": "$.level"}]
    assert "DefaultValue" not in by_level  # CloudWatch refuses a default with dimensions
    for props in filters.values():
        (transformation,) = props["MetricTransformations"]
        assert transformation["MetricNamespace"] == "ExperimentationPlatform"
        # Log-derived metrics never share a name with the EMF metrics in the same namespace.
        assert transformation["MetricName"].startswith("log_")


def test_application_policy_is_least_privilege(template: dict[str, Any]) -> None:
    (policy,) = of_type(template, "AWS::IAM::ManagedPolicy").values()
    env = default_env(template)
    document = resolve(policy["Properties"]["PolicyDocument"], env)
    statements = {s["Sid"]: s for s in document["Statement"]}
    actions = [a for s in document["Statement"] for a in s["Action"]]
    assert all("*" not in action for action in actions), actions
    assert {s["Effect"] for s in statements.values()} == {"Allow"}

    logs = statements["WriteOwnLogGroups"]
    assert sorted(logs["Action"]) == [
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:DescribeLogStreams",
        "logs:PutLogEvents",
        "logs:PutRetentionPolicy",
    ]
    base = "arn:aws:logs:eu-west-1:111122223333:log-group:/experimentation-platform/"
    assert sorted(logs["Resource"]) == sorted(
        base + group + suffix for group in ("api", "services", "errors") for suffix in ("", ":*")
    )

    # Metrics travel as EMF inside log lines: nothing calls PutMetricData, so no grant.
    assert not any(a.startswith("cloudwatch:") for a in actions), actions

    sns = statements["PublishOwnAlerts"]
    assert sns["Action"] == ["sns:Publish"]
    assert sorted(sns["Resource"]) == sorted(
        f"arn:aws:sns:eu-west-1:111122223333:experimentation-platform-alerts-{s}"
        for s in ("critical", "high", "medium", "low")
    )
    kms = statements["EncryptOwnAlerts"]  # publishing to an encrypted topic needs its key
    assert sorted(kms["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert kms["Resource"] == ["arn:aws:kms:eu-west-1:111122223333:key/" + env["MonitoringKey"]]
    wildcard = [s["Sid"] for s in statements.values() if "*" in s["Resource"]]
    assert wildcard == []
    plain = resolve(
        policy["Properties"]["PolicyDocument"], default_env(template, KmsEncryption="disabled")
    )
    assert [s["Sid"] for s in plain["Statement"]] == ["WriteOwnLogGroups", "PublishOwnAlerts"]
    # Attached to the application's role only when one is named.
    roles = policy["Properties"]["Roles"]
    assert "Roles" not in resolve({"Roles": roles}, env)
    env = default_env(template, ApplicationRoleName="ep-app")
    assert resolve(roles, env) == ["ep-app"]


def test_alert_topics_and_subscriptions_carry_no_endpoints(template: dict[str, Any]) -> None:
    topics = of_type(template, "AWS::SNS::Topic")
    assert sorted(topics) == [
        "AlertTopicCritical",
        "AlertTopicHigh",
        "AlertTopicLow",
        "AlertTopicMedium",
    ]
    subscriptions = of_type(template, "AWS::SNS::Subscription")
    assert len(subscriptions) == 8  # email + https per severity, each only if its parameter is set
    for sub in subscriptions.values():
        endpoint = sub["Properties"]["Endpoint"]["Ref"]
        assert template["Parameters"][endpoint]["Default"] == ""
        assert sub["Condition"] == f"Has{endpoint}"
        if sub["Properties"]["Protocol"] == "https":
            assert template["Parameters"][endpoint]["NoEcho"] is True  # URLs may hold keys
    env = default_env(template, AlertEmailCritical="oncall@example.com")
    assert env["Condition::HasAlertEmailCritical"] == "true"
    assert env["Condition::HasAlertEmailHigh"] == "false"
    text = render_yaml(template)
    assert not re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", text), "an e-mail address in the template"
    assert "hooks." not in text
    assert "token" not in text.lower()


def test_kms_key_encrypts_log_groups_and_topics_unless_disabled(template: dict[str, Any]) -> None:
    assert template["Parameters"]["KmsEncryption"]["Default"] == "enabled"
    assert template["Parameters"]["KmsEncryption"]["AllowedValues"] == ["enabled", "disabled"]
    key = template["Resources"]["MonitoringKey"]
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["DeletionPolicy"] == "Retain"  # logs encrypted with it must stay readable
    env = default_env(template)
    arn = "arn:aws:kms:eu-west-1:111122223333:key/" + env["MonitoringKey"]
    for group in of_type(template, "AWS::Logs::LogGroup").values():
        assert resolve(group["Properties"], env)["KmsKeyId"] == arn
    for topic in of_type(template, "AWS::SNS::Topic").values():
        assert resolve(topic["Properties"], env)["KmsMasterKeyId"] == env["MonitoringKey"]
    # The key lets CloudWatch Logs use it for our groups only, and alarms/SNS for the topics.
    policy = resolve(key["Properties"]["KeyPolicy"], env)
    statements = {s["Sid"]: s for s in policy["Statement"]}
    logs = statements["CloudWatchLogsUsesTheKey"]
    assert logs["Principal"] == {"Service": "logs.eu-west-1.amazonaws.com"}
    assert logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"] == (
        "arn:aws:logs:eu-west-1:111122223333:log-group:/experimentation-platform/*"
    )
    alarms = statements["AlarmsAndSnsUseTheKey"]
    assert alarms["Principal"]["Service"] == ["cloudwatch.amazonaws.com", "sns.amazonaws.com"]
    alias = resolve(template["Resources"]["MonitoringKeyAlias"]["Properties"], env)
    assert alias["AliasName"] == "alias/experimentation-platform-monitoring"
    # Disabled: no key resources, no encryption properties.
    env = default_env(template, KmsEncryption="disabled")
    assert env["Condition::UseKmsEncryption"] == "false"
    assert key["Condition"] == template["Resources"]["MonitoringKeyAlias"]["Condition"]
    assert key["Condition"] == "UseKmsEncryption"
    for group in of_type(template, "AWS::Logs::LogGroup").values():
        assert "KmsKeyId" not in resolve(group["Properties"], env)
    for topic in of_type(template, "AWS::SNS::Topic").values():
        assert "KmsMasterKeyId" not in resolve(topic["Properties"], env)
    # The production profile turns it on; development spares the key.
    profiles = COMMITTED.parent / "profiles"
    production = json.loads((profiles / "production.json").read_text(encoding="utf-8"))
    development = json.loads((profiles / "development.json").read_text(encoding="utf-8"))
    assert production["KmsEncryption"] == "enabled"
    assert development["KmsEncryption"] == "disabled"
    assert set(production) | set(development) <= set(template["Parameters"])


def test_alarms_reference_topics_and_get_prefixed_names(template: dict[str, Any]) -> None:
    alarms = of_type(template, "AWS::CloudWatch::Alarm")
    props = alarms["AlarmHttp5xxBurst"]["Properties"]
    env = default_env(template)
    resolved = resolve(props, env)
    assert resolved["AlarmName"] == "experimentation-platform-http-5xx-burst"
    assert resolved["AlarmActions"] == [env["AlertTopicCritical"]]
    bad = [{**SAMPLE_ALARMS[0], "AlarmActions": [{"Ref": "AlertTopicUrgent"}]}]
    with pytest.raises(ValueError, match="AlertTopicUrgent"):
        build_template(platform_cloud.platform_definitions(alarms=bad, dashboards={}))


def test_saved_queries_point_at_the_templates_log_groups(template: dict[str, Any]) -> None:
    queries = of_type(template, "AWS::Logs::QueryDefinition")
    five = queries["QueryDefinition5xxByRoute"]["Properties"]
    assert five["LogGroupNames"] == [{"Ref": "LogGroupApi"}]
    assert five["QueryString"].startswith("fields @timestamp")
    env = default_env(template, ResourceNamePrefix="staging")
    assert resolve(five["Name"], env) == "staging/5xx by route"
    by_key = queries["QueryDefinitionErrorsByLogger"]["Properties"]
    assert by_key["LogGroupNames"] == [{"Ref": "LogGroupErrors"}]
    typo = [SavedQuery("typo", "fields @message", ("/experimentation-platform/apii",))]
    with pytest.raises(ValueError, match="apii"):
        build_template(platform_cloud.platform_definitions(saved_queries=typo, dashboards={}))


def test_dashboard_body_follows_region_and_prefix(template: dict[str, Any]) -> None:
    dashboard = of_type(template, "AWS::CloudWatch::Dashboard")["DashboardOverview"]
    env = default_env(template, LogGroupPrefix="/prod/ep")
    body = json.loads(resolve(dashboard["Properties"]["DashboardBody"], env))
    metric, log = body["widgets"]
    assert metric["properties"]["region"] == "eu-west-1"
    assert log["properties"]["region"] == "eu-west-1"  # added: log widgets need one
    assert log["properties"]["query"].startswith("SOURCE '/prod/ep/errors'")
    assert resolve(dashboard["Properties"]["DashboardName"], env) == (
        "experimentation-platform-overview"
    )


def test_literal_dollar_braces_survive_fn_sub() -> None:
    body = {
        "widgets": [
            {"type": "text", "properties": {"markdown": "cost ${x} /experimentation-platform/api"}}
        ]
    }
    defs = MonitoringDefinitions(
        namespace="Test", log_groups=(LogGroupSpec("api", 30),), dashboards={"d": body}
    )
    props = build_template(defs)["Resources"]["DashboardD"]["Properties"]
    env = default_env(build_template(defs))
    resolved = json.loads(resolve(props["DashboardBody"], env))
    assert resolved["widgets"][0]["properties"]["markdown"] == (
        "cost ${x} /experimentation-platform/api"
    )


def test_definition_mistakes_fail_at_render() -> None:
    with pytest.raises(ValueError, match="retention_days 31"):
        LogGroupSpec("api", 31)
    with pytest.raises(ValueError, match="default_value"):
        MetricFilterSpec("f", "api", "{ $.a = 1 }", "m", default_value=0, dimensions={"a": "$.a"})
    duplicate = (
        MetricFilterSpec("a-b", "api", "{ $.a = 1 }", "m1"),
        MetricFilterSpec("a b", "api", "{ $.a = 2 }", "m2"),
    )
    defs = MonitoringDefinitions(
        namespace="Test", log_groups=(LogGroupSpec("api", 30),), metric_filters=duplicate
    )
    with pytest.raises(ValueError, match="MetricFilterAB"):
        build_template(defs)


def test_yaml_round_trips_and_render_is_deterministic(template: dict[str, Any]) -> None:
    text = render_yaml(template, header="generated")
    assert text.startswith("# generated\n")
    assert yaml.safe_load(text) == template
    assert render_yaml(build_template(sample_definitions())) == render_yaml(template)


@pytest.mark.parametrize("which", ["sample", "committed"])
def test_cfn_lint_reports_no_errors_or_warnings(which: str, tmp_path: Path) -> None:
    if which == "sample":
        path = tmp_path / "sample.yaml"
        path.write_text(render_yaml(build_template(sample_definitions())), encoding="utf-8")
    else:
        path = COMMITTED
    result = subprocess.run(
        [str(CFN_LINT), "--regions", "us-east-1", "--format", "parseable", "-t", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Exit 0: no errors, no warnings (informational findings would set bit 8).
    assert result.returncode == 0, result.stdout + result.stderr


def test_committed_template_equals_a_fresh_render() -> None:
    result = CliRunner().invoke(cloud_cli.app, ["render", "--output", str(COMMITTED), "--check"])
    assert result.exit_code == 0, (
        f"{COMMITTED.relative_to(ROOT)} is stale: run "
        "`ep cloud render -o deploy/cloudformation/monitoring.yaml`\n" + result.output
    )


def test_render_prints_the_template_and_says_what_it_found() -> None:
    result = CliRunner().invoke(cloud_cli.app, ["render"])
    assert result.exit_code == 0
    assert yaml.safe_load(result.stdout)["Resources"]["LogGroupApi"]
    # What went into it, counted from the platform's definitions.
    defs = platform_cloud.platform_definitions()
    counts = f"{len(defs.saved_queries)} saved queries, {len(defs.dashboards)} dashboards"
    assert f"{counts}, {len(defs.alarms)} alarms" in result.stderr
    assert len(defs.dashboards) == 4
    assert defs.alarms
    assert defs.saved_queries


def test_verification_report_marks_and_exit_codes() -> None:
    report = VerificationReport(stack_name="s", region="eu-west-1")
    report.checks.append(ResourceCheck("LogGroupApi", "AWS::Logs::LogGroup", "/a", True))
    report.checks.append(
        ResourceCheck("Q", "AWS::Logs::QueryDefinition", "q", False, detail="x", unverified=True)
    )
    assert report.exit_code() == 0
    assert report.exit_code(strict=True) == 1
    report.checks.append(
        ResourceCheck("AlarmX", "AWS::CloudWatch::Alarm", "x", False, ("missing",))
    )
    table = report.render()
    assert report.exit_code() == 1
    assert re.search(r"✗\s+AWS::CloudWatch::Alarm\s+AlarmX\s+x\s+missing", table)
    assert re.search(r"✓\s+AWS::Logs::LogGroup\s+LogGroupApi", table)
    assert table.splitlines()[-1] == (
        "3 resources in eu-west-1: 1 missing or wrong, 1 could not be checked (?) through "
        "this endpoint"
    )
