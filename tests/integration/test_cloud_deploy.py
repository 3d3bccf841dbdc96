"""`ep cloud deploy` and `ep cloud verify` against a real moto server.

moto's CloudFormation creates log groups, dashboards, topics and the managed policy, and reports
CREATE_COMPLETE for metric filters, alarms, subscriptions and query definitions without creating
them; deploy's --ensure-direct (on for a non-AWS endpoint) creates those through the service
APIs, and verify reads every resource back through its own API. moto has no query-definition
API at all, so verify shows those as "?" (could not be checked), never as ✓.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from experimentation_platform.commands import cloud as cloud_cli
from observability.cloud.provisioning import build_template, render_yaml
from tests.observability.cloud.test_provisioning import COMMITTED, sample_definitions
from tests.support.servers import MotoServer

pytestmark = pytest.mark.integration

STACK = "ep-monitoring-test"
PREFIX = "experimentation-platform"


def run(moto: MotoServer, *args: str) -> Any:
    common = ["--endpoint-url", moto.url, "--region", "us-east-1", "--stack-name", STACK]
    result = CliRunner().invoke(cloud_cli.app, [*args, *common])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def rows(output: str) -> dict[str, tuple[str, str]]:
    """logical id -> (mark, whole line) from verify's table."""
    table = {}
    for line in output.splitlines():
        match = re.match(r"^([✓✗?])\s+(AWS::\S+)\s+(\S+)\s", line)
        if match:
            table[match.group(3)] = (match.group(1), line)
    return table


def client(moto: MotoServer, service: str) -> Any:
    return boto3.client(service, endpoint_url=moto.url, region_name="us-east-1")


@pytest.fixture
def sample_template(tmp_path: Path) -> Path:
    """Every resource type, whatever the sibling modules define today."""
    path = tmp_path / "monitoring.yaml"
    path.write_text(render_yaml(build_template(sample_definitions())), encoding="utf-8")
    return path


def test_deploy_verify_redeploy_and_drift(moto: MotoServer, sample_template: Path) -> None:
    moto.reset()
    template = ["--template-file", str(sample_template)]
    email = ["-p", "AlertEmailCritical=oncall@example.com"]
    hook = ["-p", "AlertHttpsEndpointHigh=https://hooks.example.com/services/T0/B0/secretpath"]

    deployed = run(moto, "deploy", *template, *email, *hook, "--poll", "0.1")
    assert deployed.exit_code == 0, deployed.output
    assert f"stack {STACK}: CREATE_COMPLETE" in deployed.stdout
    # The change set was shown before anything changed, then progress as events arrived.
    assert re.search(r"Add\s+AWS::Logs::LogGroup\s+LogGroupApi", deployed.stderr)
    assert "CREATE_COMPLETE" in deployed.stderr
    # What moto's CloudFormation skipped was created through the service APIs.
    assert re.search(r"direct\s+AWS::Logs::MetricFilter\s+MetricFilterHttp5xx", deployed.stderr)
    assert re.search(r"direct\s+AWS::CloudWatch::Alarm\s+AlarmHttp5xxBurst", deployed.stderr)
    assert "secretpath" not in deployed.output

    verified = run(moto, "verify", *template)
    assert verified.exit_code == 0, verified.output
    table = rows(verified.stdout)
    assert {lid for lid, (mark, _) in table.items() if mark != "✓"} == {
        # moto 5.2.5 has no DescribeQueryDefinitions: "?", not a false ✓
        "QueryDefinition5xxByRoute",
        "QueryDefinitionErrorsByLogger",
        # its DescribeKey fails on a key its CloudFormation made (HTTP 500), and its
        # CloudFormation drops a log group's KmsKeyId: unconfirmed, so "?"
        "MonitoringKey",
        "LogGroupApi",
        "LogGroupServices",
        "LogGroupErrors",
    }
    assert {table[lid][0] for lid in ("MonitoringKey", "LogGroupApi")} == {"?"}
    assert "KMS key expected but not reported" in table["LogGroupApi"][1]
    # The topics carry the stack's key, found through its alias.
    assert table["AlertTopicCritical"][0] == "✓"
    assert table["MonitoringKeyAlias"][0] == "✓"
    assert "retention 30 days" in table["LogGroupApi"][1]
    assert "retention 180 days" in table["LogGroupErrors"][1]
    assert "AlertSubscriptionEmailCritical" in table
    assert "AlertSubscriptionHttpsHigh" in table
    assert "AlertSubscriptionEmailHigh" not in table  # no endpoint given: no subscription
    assert "oncall@example.com" not in verified.output  # endpoints are masked in the table
    assert "secretpath" not in verified.output
    assert "could not be checked" in verified.stdout.splitlines()[-1]
    assert run(moto, "verify", *template, "--strict").exit_code == 1

    # The stack's parameters are kept: a second deploy with none given changes nothing.
    again = run(moto, "deploy", *template, "--poll", "0.1")
    assert again.exit_code == 0, again.output
    assert f"stack {STACK}: no changes" in again.stdout
    assert "direct check: every metric filter, alarm, subscription and query in place" in (
        again.stdout
    )

    # Behind the stack's back: a dashboard and a metric filter deleted, a retention changed.
    client(moto, "cloudwatch").delete_dashboards(DashboardNames=[f"{PREFIX}-overview"])
    logs = client(moto, "logs")
    logs.delete_metric_filter(logGroupName=f"/{PREFIX}/api", filterName="slow-requests")
    logs.put_retention_policy(logGroupName=f"/{PREFIX}/services", retentionInDays=1)
    # ... and a topic moved to another key.
    sns = client(moto, "sns")
    topic = f"arn:aws:sns:us-east-1:123456789012:{PREFIX}-alerts-low"
    sns.set_topic_attributes(TopicArn=topic, AttributeName="KmsMasterKeyId", AttributeValue="k2")
    drifted = run(moto, "verify", *template)
    assert drifted.exit_code == 1, drifted.output
    table = rows(drifted.stdout)
    assert table["DashboardOverview"][0] == "✗"
    assert "missing" in table["DashboardOverview"][1]
    assert table["MetricFilterSlowRequests"][0] == "✗"
    assert table["LogGroupServices"][0] == "✗"
    assert "retention is 1, expected 90" in table["LogGroupServices"][1]
    assert table["AlertTopicLow"][0] == "✗"
    assert "KMS key is 'k2'" in table["AlertTopicLow"][1]
    assert table["AlertTopicHigh"][0] == "✓"
    assert drifted.stdout.splitlines()[-1].startswith(
        f"{len(table)} resources in us-east-1: 4 missing or wrong"
    )


def test_the_platform_template_deploys_and_verifies(moto: MotoServer) -> None:
    """The template `ep cloud render` makes from today's definitions (no --template-file),
    passed by S3 URL: it outgrew the 51,200-byte TemplateBody limit."""
    moto.reset()
    client(moto, "s3").create_bucket(Bucket="ep-templates")
    deployed = run(moto, "deploy", "--poll", "0.1", "--template-bucket", "ep-templates")
    assert deployed.exit_code == 0, deployed.output
    uploaded = client(moto, "s3").list_objects_v2(Bucket="ep-templates")["Contents"]
    assert [o["Key"].split("/")[1] for o in uploaded] == [STACK]
    verified = run(moto, "verify")
    assert verified.exit_code == 0, verified.output
    table = rows(verified.stdout)
    assert table["LogGroupApi"][0] == "?"  # moto drops the group's KmsKeyId: unconfirmed
    assert table["AlertTopicCritical"][0] == "✓"  # encrypted with the stack's key
    assert table["ApplicationPolicy"][0] == "✓"
    assert {mark for mark, _ in table.values()} <= {"✓", "?"}
    assert COMMITTED.exists()


def test_deploy_reports_a_failure_and_an_unreachable_endpoint(moto: MotoServer) -> None:
    moto.reset()
    client(moto, "s3").create_bucket(Bucket="ep-templates")  # past the TemplateBody limit
    bucket = ["--template-bucket", "ep-templates"]
    bad = run(moto, "deploy", "-p", "NoSuchParameter=1", *bucket)
    assert bad.exit_code == 1
    assert "unknown template parameters: NoSuchParameter" in bad.stderr
    # The shipper ran before the stack: the group exists, the create must fail visibly.
    client(moto, "logs").create_log_group(logGroupName=f"/{PREFIX}/api")
    clash = run(moto, "deploy", "--poll", "0.1", *bucket)
    assert clash.exit_code == 1
    assert "already exists" in clash.stderr
    refused = CliRunner().invoke(
        cloud_cli.app,
        ["verify", "--endpoint-url", "http://127.0.0.1:9", "--region", "us-east-1"],
    )
    assert refused.exit_code == 2
    assert "error: EndpointConnectionError" in refused.stderr


def test_the_development_profile_deploys_without_a_key(moto: MotoServer) -> None:
    moto.reset()
    profile = COMMITTED.parent / "profiles" / "development.json"
    client(moto, "s3").create_bucket(Bucket="ep-templates")  # past the TemplateBody limit
    deployed = run(
        moto, "deploy", "--poll", "0.1", "--parameters-file", str(profile),
        "--template-bucket", "ep-templates",
    )  # fmt: skip
    assert deployed.exit_code == 0, deployed.output
    verified = run(moto, "verify", "--parameters-file", str(profile))
    table = rows(verified.stdout)
    assert "MonitoringKey" not in table
    assert table["LogGroupApi"] == ("✓", table["LogGroupApi"][1])
    assert "retention 7 days" in table["LogGroupApi"][1]
    aliases = [a["AliasName"] for a in client(moto, "kms").list_aliases()["Aliases"]]
    assert f"alias/{PREFIX}-monitoring" not in aliases
