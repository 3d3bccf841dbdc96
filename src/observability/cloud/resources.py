"""Each monitoring resource as its own service API sees it: read, compare, and (for the types
an emulator's CloudFormation skips) write.

`stack_environment` computes, from the template and the parameters, the physical name of each
resource and the value of each intrinsic, so callers know what must exist without trusting
CloudFormation's word. `check_resource` reads one resource through its service (Logs,
CloudWatch, SNS, IAM) and lists what differs. `ensure_direct` writes the resource types moto
5.2.5's CloudFormation reports CREATE_COMPLETE for without creating anything (metric filters,
alarms, SNS subscriptions, Logs Insights query definitions); against real AWS CloudFormation
has created them, each check passes and nothing is written.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from observability.cloud.provisioning import evaluate_condition, resolve
from observability.masking import default_masker

__all__ = [
    "DIRECT_TYPES",
    "NO_ECHO",
    "ClientFactory",
    "ResourceState",
    "active_resources",
    "alarm_differences",
    "check_resource",
    "ensure_direct",
    "is_aws_endpoint",
    "make_client_factory",
    "server_failure",
    "stack_environment",
]

ClientFactory = Callable[[str], Any]

DIRECT_TYPES = (
    "AWS::Logs::MetricFilter",
    "AWS::Logs::QueryDefinition",
    "AWS::CloudWatch::Alarm",
    "AWS::SNS::Subscription",
)
NO_ECHO = "****"  # how CloudFormation shows a NoEcho parameter's value
_NOT_FOUND = ("ResourceNotFound", "ResourceNotFoundException", "NoSuchEntity", "NotFound")


@dataclass
class ResourceState:
    """One resource as read back: its physical name and what differs (empty: as defined).
    `unverified`: the endpoint could not answer (HTTP 5xx, e.g. an API moto lacks)."""

    name: str
    problems: list[str] = field(default_factory=list)
    detail: str = ""
    unverified: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems and not self.unverified


def server_failure(exc: ClientError) -> str | None:
    """ "HTTP 500 to DescribeX" when the service (or emulator) failed rather than refused."""
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return f"HTTP {status} to {exc.operation_name}" if status >= 500 else None


def is_aws_endpoint(endpoint_url: str | None) -> bool:
    """True for the default endpoints (None) and *.amazonaws.com[.cn]; False for moto & co."""
    if not endpoint_url:
        return True
    host = urllib.parse.urlsplit(endpoint_url).hostname or ""
    return host.lower().endswith((".amazonaws.com", ".amazonaws.com.cn"))


def make_client_factory(
    region: str | None = None, endpoint_url: str | None = None
) -> ClientFactory:
    """Cached boto3 clients for one region and endpoint; credentials from the AWS_* chain."""
    session = boto3.session.Session(region_name=region)
    # An emulator answers HTTP 500 to the APIs it lacks: retrying there only delays the answer.
    attempts = 5 if is_aws_endpoint(endpoint_url) else 1
    config = Config(retries={"mode": "standard", "max_attempts": attempts})
    clients: dict[str, Any] = {}

    def factory(service: str) -> Any:
        if service not in clients:
            clients[service] = session.client(service, endpoint_url=endpoint_url, config=config)
        return clients[service]

    return factory


def _partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    return "aws-us-gov" if region.startswith("us-gov-") else "aws"


def stack_environment(
    client_factory: ClientFactory,
    template: Mapping[str, Any],
    parameters: Mapping[str, str],
    stack_name: str,
) -> dict[str, str]:
    """Parameters (template defaults < `parameters`), pseudo parameters, evaluated conditions
    (`Condition::<name>` = "true"/"false") and the Ref value of every named resource."""
    env: dict[str, str] = {}
    for name, spec in template.get("Parameters", {}).items():
        env[name] = str(spec.get("Default", ""))
    env.update({k: str(v) for k, v in parameters.items()})
    sts = client_factory("sts")
    region, account = str(sts.meta.region_name), str(sts.get_caller_identity()["Account"])
    partition = _partition(region)
    env.update(
        {
            "AWS::Region": region,
            "AWS::AccountId": account,
            "AWS::Partition": partition,
            "AWS::StackName": stack_name,
            "AWS::URLSuffix": "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com",
        }
    )
    for name, expression in template.get("Conditions", {}).items():
        env[f"Condition::{name}"] = "true" if evaluate_condition(expression, env) else "false"
    # Ref values of the resources other properties point at; each has an explicit name.
    aliases = {
        r["Properties"]["TargetKeyId"]["Ref"]: r
        for r in template.get("Resources", {}).values()
        if r["Type"] == "AWS::KMS::Alias"
    }
    for lid, resource in template.get("Resources", {}).items():
        props, kind = resource.get("Properties", {}), resource["Type"]
        condition = resource.get("Condition")
        if condition and env.get(f"Condition::{condition}") != "true":
            continue
        if kind == "AWS::KMS::Key" and lid in aliases:
            # A key has no name of its own: its alias finds it (absent: a placeholder id, so
            # whatever points at the key reads as "wrong key" rather than crashing verify).
            alias = resolve(aliases[lid]["Properties"]["AliasName"], env)
            env[lid] = _key_id(client_factory, alias) or f"(no key behind {alias})"
        elif kind == "AWS::Logs::LogGroup":
            env[lid] = resolve(props["LogGroupName"], env)
        elif kind == "AWS::SNS::Topic":
            env[lid] = f"arn:{partition}:sns:{region}:{account}:{resolve(props['TopicName'], env)}"
        elif kind == "AWS::IAM::ManagedPolicy":
            path = resolve(props.get("Path", "/"), env)
            name = resolve(props["ManagedPolicyName"], env)
            env[lid] = f"arn:{partition}:iam::{account}:policy{path}{name}"
    return env


def _key_id(client_factory: ClientFactory, alias: str) -> str | None:
    # ListAliases, not DescribeKey: it names the target key without reading the key policy
    # (moto's DescribeKey fails on a key its CloudFormation created).
    for page in client_factory("kms").get_paginator("list_aliases").paginate():
        for item in page.get("Aliases", []):
            if item.get("AliasName") == alias and item.get("TargetKeyId"):
                return str(item["TargetKeyId"])
    return None


def active_resources(
    template: Mapping[str, Any], env: Mapping[str, str]
) -> list[tuple[str, str, dict[str, Any]]]:
    """(logical id, type, resolved properties) of each resource whose condition holds."""
    result = []
    for lid, resource in template.get("Resources", {}).items():
        condition = resource.get("Condition")
        if condition and env.get(f"Condition::{condition}") != "true":
            continue
        result.append((lid, str(resource["Type"]), resolve(resource.get("Properties", {}), env)))
    return result


def _missing(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in _NOT_FOUND or code.endswith(("NotFound", "NotFoundException"))


def _diff(label: str, want: Any, got: Any) -> list[str]:
    return [] if want == got else [f"{label} is {got!r}, expected {want!r}"]


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


# -- one reader per type -------------------------------------------------------------------


def _log_group(cf: ClientFactory, props: Mapping[str, Any]) -> ResourceState:
    name = props["LogGroupName"]
    groups = cf("logs").describe_log_groups(logGroupNamePrefix=name).get("logGroups", [])
    group = next((g for g in groups if g["logGroupName"] == name), None)
    if group is None:
        return ResourceState(name, ["missing"])
    want = int(props["RetentionInDays"]) if "RetentionInDays" in props else None
    got = group.get("retentionInDays")
    detail = f"retention {got} days" if got else "retention never expires"
    problems = _diff("retention", want, got)
    key = group.get("kmsKeyId")
    if key:
        problems += _diff("KMS key", props.get("KmsKeyId"), key)
        detail += ", KMS encrypted"
    elif props.get("KmsKeyId"):
        # moto's CloudFormation drops a log group's KmsKeyId (and moto has no AssociateKmsKey):
        # an absent key cannot be told from an emulator gap, so it is "?" (--strict fails it);
        # a *different* key is drift.
        detail += ", KMS key expected but not reported"
        return ResourceState(name, problems, detail, unverified=not problems)
    return ResourceState(name, problems, detail)


def _kms_key(cf: ClientFactory, key_id: str, props: Mapping[str, Any]) -> ResourceState:
    try:
        meta = cf("kms").describe_key(KeyId=key_id)["KeyMetadata"]
    except ClientError as exc:
        if _missing(exc):
            return ResourceState(key_id, ["missing"])
        raise
    problems = [] if meta.get("Enabled", True) else ["disabled"]
    if props.get("EnableKeyRotation"):
        rotation = cf("kms").get_key_rotation_status(KeyId=meta["KeyId"])
        if not rotation.get("KeyRotationEnabled"):
            problems.append("key rotation is off, expected on")
    return ResourceState(str(meta.get("Arn", key_id)), problems, "rotation on, enabled")


def _kms_alias(cf: ClientFactory, props: Mapping[str, Any]) -> ResourceState:
    name = props["AliasName"]
    target = _key_id(cf, name)
    if target is None:
        return ResourceState(name, ["missing"])
    return ResourceState(name, _diff("target key", props["TargetKeyId"], target))


def _metric_filter_request(props: Mapping[str, Any]) -> dict[str, Any]:
    transformations = []
    for t in props["MetricTransformations"]:
        item: dict[str, Any] = {
            "metricName": t["MetricName"],
            "metricNamespace": t["MetricNamespace"],
            "metricValue": t["MetricValue"],
        }
        if "DefaultValue" in t:
            item["defaultValue"] = float(t["DefaultValue"])
        if "Dimensions" in t:
            item["dimensions"] = {d["Key"]: d["Value"] for d in t["Dimensions"]}
        if "Unit" in t:
            item["unit"] = t["Unit"]
        transformations.append(item)
    return {
        "logGroupName": props["LogGroupName"],
        "filterName": props["FilterName"],
        "filterPattern": props["FilterPattern"],
        "metricTransformations": transformations,
    }


def _metric_filter(cf: ClientFactory, props: Mapping[str, Any]) -> ResourceState:
    name = f"{props['LogGroupName']} {props['FilterName']}"
    try:
        found = cf("logs").describe_metric_filters(
            logGroupName=props["LogGroupName"], filterNamePrefix=props["FilterName"]
        )["metricFilters"]
    except ClientError as exc:
        if _missing(exc):
            return ResourceState(name, ["missing (no log group)"])
        raise
    have = next((f for f in found if f["filterName"] == props["FilterName"]), None)
    if have is None:
        return ResourceState(name, ["missing"])
    want = _metric_filter_request(props)
    problems = _diff("pattern", want["filterPattern"], have.get("filterPattern"))
    got_t = have.get("metricTransformations", [])
    if len(got_t) != len(want["metricTransformations"]):
        problems.append("metric transformations differ in number")
    for w, g in zip(want["metricTransformations"], got_t, strict=False):
        for key, value in w.items():
            got = _num(g.get(key)) if key == "defaultValue" else g.get(key)
            problems += _diff(key, value, got)
    detail = ", ".join(f"{t['metricNamespace']}/{t['metricName']}" for t in got_t)
    return ResourceState(name, problems, detail)


def _query_definition(cf: ClientFactory, props: Mapping[str, Any]) -> ResourceState:
    name = props["Name"]
    found = cf("logs").describe_query_definitions(queryDefinitionNamePrefix=name)
    have = next((q for q in found.get("queryDefinitions", []) if q["name"] == name), None)
    if have is None:
        return ResourceState(name, ["missing"])
    problems = _diff("query", props["QueryString"], have.get("queryString"))
    want_groups = sorted(props.get("LogGroupNames", []))
    problems += _diff("log groups", want_groups, sorted(have.get("logGroupNames", [])))
    return ResourceState(name, problems, f"over {', '.join(want_groups) or 'any group'}")


def _dashboard(cf: ClientFactory, props: Mapping[str, Any]) -> ResourceState:
    name = props["DashboardName"]
    try:
        body = cf("cloudwatch").get_dashboard(DashboardName=name)["DashboardBody"]
    except ClientError as exc:
        if _missing(exc):
            return ResourceState(name, ["missing"])
        raise
    want = json.loads(props["DashboardBody"])
    have = json.loads(body)
    problems = [] if want == have else ["body differs from the definition"]
    return ResourceState(name, problems, f"{len(have.get('widgets', []))} widgets")


_ALARM_NUMBERS = ("Threshold", "Period", "EvaluationPeriods", "DatapointsToAlarm")
_ALARM_LISTS = ("AlarmActions", "OKActions", "InsufficientDataActions")


def alarm_differences(want: Mapping[str, Any], have: Mapping[str, Any]) -> list[str]:
    """What differs between alarm properties (CloudFormation = PutMetricAlarm shape) and a
    DescribeAlarms entry. Metric math is compared by id and expression or metric name."""
    problems: list[str] = []
    for key, value in want.items():
        if key in ("Tags", "AlarmName"):
            continue
        got = have.get(key)
        if key in _ALARM_NUMBERS:
            problems += _diff(key, _num(value), _num(got))
        elif key in _ALARM_LISTS:
            problems += _diff(key, sorted(value), sorted(got or []))
        elif key == "Dimensions":
            problems += _diff(key, _pairs(value), _pairs(got or []))
        elif key == "Metrics":
            problems += _diff(key, _metric_ids(value), _metric_ids(got or []))
        elif key == "ActionsEnabled":
            problems += _diff(key, str(value).lower() == "true", got)
        else:
            problems += _diff(key, value, got)
    return problems


def _pairs(dimensions: list[Mapping[str, Any]]) -> list[tuple[str, str]]:
    return sorted((str(d["Name"]), str(d["Value"])) for d in dimensions)


def _metric_ids(metrics: list[Mapping[str, Any]]) -> list[tuple[str, str]]:
    result = []
    for m in metrics:
        metric = m.get("MetricStat", {}).get("Metric", {})
        result.append((str(m["Id"]), str(m.get("Expression") or metric.get("MetricName", ""))))
    return sorted(result)


def _alarm(cf: ClientFactory, props: Mapping[str, Any]) -> ResourceState:
    name = props["AlarmName"]
    found = cf("cloudwatch").describe_alarms(AlarmNames=[name]).get("MetricAlarms", [])
    if not found:
        return ResourceState(name, ["missing"])
    have = found[0]
    actions = ", ".join(a.rsplit(":", 1)[-1] for a in have.get("AlarmActions", []))
    return ResourceState(name, alarm_differences(props, have), f"actions: {actions or 'none'}")


def _topic(cf: ClientFactory, arn: str, props: Mapping[str, Any]) -> ResourceState:
    sns = cf("sns")
    try:
        attributes = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
    except ClientError as exc:
        if _missing(exc):
            return ResourceState(arn, ["missing"])
        raise
    problems = []
    if "DisplayName" in props:
        problems += _diff("display name", props["DisplayName"], attributes.get("DisplayName"))
    problems += _diff("KMS key", props.get("KmsMasterKeyId"), attributes.get("KmsMasterKeyId"))
    confirmed = attributes.get("SubscriptionsConfirmed", "0")
    return ResourceState(arn, problems, f"{confirmed} confirmed subscription(s)")


def _shown_endpoint(protocol: str, endpoint: str) -> str:
    # Endpoints are personal data (e-mail) or carry keys in their path (webhook URLs).
    if endpoint == NO_ECHO:
        return "(endpoint not readable: NoEcho)"
    if protocol in ("http", "https"):
        parts = urllib.parse.urlsplit(endpoint)
        return f"{parts.scheme}://{parts.hostname}/..."
    return default_masker().mask_text(endpoint)


def _subscription(cf: ClientFactory, props: Mapping[str, Any]) -> ResourceState:
    protocol, endpoint = props["Protocol"], props["Endpoint"]
    topic = props["TopicArn"].rsplit(":", 1)[-1]
    name = f"{topic} -> {protocol} {_shown_endpoint(protocol, endpoint)}"
    try:
        subs = cf("sns").list_subscriptions_by_topic(TopicArn=props["TopicArn"])
    except ClientError as exc:
        if _missing(exc):
            return ResourceState(name, ["missing (no topic)"])
        raise
    for sub in subs.get("Subscriptions", []):
        # "****": a NoEcho parameter read back from the stack; only the protocol is known.
        if sub["Protocol"] == protocol and endpoint in (sub["Endpoint"], NO_ECHO):
            pending = sub["SubscriptionArn"] == "PendingConfirmation"
            return ResourceState(name, [], "pending confirmation" if pending else "confirmed")
    return ResourceState(name, ["missing"])


def _statements(document: Any) -> list[dict[str, Any]]:
    if isinstance(document, str):  # IAM returns the document URL-encoded
        document = json.loads(urllib.parse.unquote(document))
    statements = document.get("Statement", [])
    result = []
    for st in statements if isinstance(statements, list) else [statements]:
        item = dict(st)
        for key in ("Action", "Resource"):
            value = item.get(key, [])
            item[key] = sorted([value] if isinstance(value, str) else value)
        result.append(item)
    return sorted(result, key=lambda s: json.dumps(s, sort_keys=True))


def _policy(cf: ClientFactory, arn: str, props: Mapping[str, Any]) -> ResourceState:
    iam = cf("iam")
    try:
        policy = iam.get_policy(PolicyArn=arn)["Policy"]
    except ClientError as exc:
        if _missing(exc):
            return ResourceState(arn, ["missing"])
        raise
    version = iam.get_policy_version(PolicyArn=arn, VersionId=policy["DefaultVersionId"])
    have = _statements(version["PolicyVersion"]["Document"])
    want = _statements(props["PolicyDocument"])
    problems = [] if have == want else ["policy document differs from the definition"]
    roles = list(props.get("Roles", []))
    if roles:
        attached = iam.list_entities_for_policy(PolicyArn=arn, EntityFilter="Role")
        names = {r["RoleName"] for r in attached.get("PolicyRoles", [])}
        problems += [f"not attached to role {r}" for r in roles if r not in names]
    detail = f"{len(have)} statements, attached to {policy.get('AttachmentCount', 0)}"
    return ResourceState(arn, problems, detail)


def check_resource(
    client_factory: ClientFactory, kind: str, props: Mapping[str, Any], ref: str = ""
) -> ResourceState:
    """Read one resource through its service API. `ref` is its Ref value (topic/policy ARN)."""
    readers: dict[str, Callable[[], ResourceState]] = {
        "AWS::Logs::LogGroup": lambda: _log_group(client_factory, props),
        "AWS::Logs::MetricFilter": lambda: _metric_filter(client_factory, props),
        "AWS::Logs::QueryDefinition": lambda: _query_definition(client_factory, props),
        "AWS::CloudWatch::Dashboard": lambda: _dashboard(client_factory, props),
        "AWS::CloudWatch::Alarm": lambda: _alarm(client_factory, props),
        "AWS::SNS::Topic": lambda: _topic(client_factory, ref, props),
        "AWS::SNS::Subscription": lambda: _subscription(client_factory, props),
        "AWS::IAM::ManagedPolicy": lambda: _policy(client_factory, ref, props),
        "AWS::KMS::Key": lambda: _kms_key(client_factory, ref, props),
        "AWS::KMS::Alias": lambda: _kms_alias(client_factory, props),
    }
    reader = readers.get(kind)
    if reader is None:
        return ResourceState(ref or kind, [f"no reader for {kind}"])
    try:
        return reader()
    except ClientError as exc:
        failure = server_failure(exc)
        if failure is None:
            raise
        name = str(props.get("Name") or props.get("AlarmName") or ref or kind)
        return ResourceState(name, detail=f"could not check: {failure}", unverified=True)


# -- writers for what an emulator's CloudFormation skipped ---------------------------------


def _write(client_factory: ClientFactory, kind: str, props: Mapping[str, Any]) -> None:
    if kind == "AWS::Logs::MetricFilter":
        client_factory("logs").put_metric_filter(**_metric_filter_request(props))
    elif kind == "AWS::Logs::QueryDefinition":
        logs = client_factory("logs")
        request = {
            "name": props["Name"],
            "queryString": props["QueryString"],
            "logGroupNames": list(props.get("LogGroupNames", [])),
        }
        found = logs.describe_query_definitions(queryDefinitionNamePrefix=props["Name"])
        for existing in found.get("queryDefinitions", []):
            if existing["name"] == props["Name"]:  # update in place, never a duplicate
                request["queryDefinitionId"] = existing["queryDefinitionId"]
        logs.put_query_definition(**request)
    elif kind == "AWS::CloudWatch::Alarm":
        request = {k: v for k, v in props.items() if k != "Tags"}
        for key in _ALARM_NUMBERS:
            if key in request:
                request[key] = float(request[key]) if key == "Threshold" else int(request[key])
        if "ActionsEnabled" in request:
            request["ActionsEnabled"] = str(request["ActionsEnabled"]).lower() == "true"
        client_factory("cloudwatch").put_metric_alarm(**request)
    elif kind == "AWS::SNS::Subscription":
        client_factory("sns").subscribe(
            TopicArn=props["TopicArn"],
            Protocol=props["Protocol"],
            Endpoint=props["Endpoint"],
            ReturnSubscriptionArn=True,
        )


def ensure_direct(
    client_factory: ClientFactory,
    template: Mapping[str, Any],
    env: Mapping[str, str],
    *,
    on_progress: Callable[[str], None] = lambda _line: None,
) -> list[str]:
    """Write, through the service APIs, each `DIRECT_TYPES` resource that is missing or
    differs; returns "Type LogicalId" for each one written (empty: all already in place)."""
    written = []
    unsupported: set[str] = set()
    for lid, kind, props in active_resources(template, env):
        if kind not in DIRECT_TYPES or kind in unsupported:
            continue
        state = check_resource(client_factory, kind, props)
        if state.ok:
            continue
        if state.unverified:
            # The endpoint lacks the API (moto has no query definitions): say so once per type.
            unsupported.add(kind)
            on_progress(f"  skipped {kind:<32} {lid}  ({state.detail}: the endpoint lacks it)")
            continue
        if kind == "AWS::SNS::Subscription" and props["Endpoint"] == NO_ECHO:
            on_progress(f"  skipped {kind:<32} {lid}  (endpoint hidden by NoEcho: pass it again)")
            continue
        _write(client_factory, kind, props)
        written.append(f"{kind} {lid}")
        on_progress(f"  direct  {kind:<32} {lid}  ({'; '.join(state.problems)})")
    return written
