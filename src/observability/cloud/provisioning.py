"""Monitoring definitions in, a CloudFormation template out: pure functions, no AWS calls.

The template is *generated* so that it cannot drift from the definitions the code uses
(log groups, metric names, dashboards, alarms). Layout of what `build_template` emits::

    Parameters   LogGroupPrefix, ResourceNamePrefix, RetentionDays<Group>,
                 AlertEmail<Severity>, AlertHttpsEndpoint<Severity>, ApplicationRoleName,
                 KmsEncryption (enabled|disabled)
    Resources    MonitoringKey                AWS::KMS::Key (only if KmsEncryption is enabled)
                 MonitoringKeyAlias           AWS::KMS::Alias alias/${ResourceNamePrefix}-monitoring
                 LogGroup<Group>              AWS::Logs::LogGroup
                 MetricFilter<Name>           AWS::Logs::MetricFilter
                 QueryDefinition<Name>        AWS::Logs::QueryDefinition
                 Dashboard<Name>              AWS::CloudWatch::Dashboard
                 Alarm<Name>                  AWS::CloudWatch::Alarm
                 AlertTopic<Severity>         AWS::SNS::Topic
                 AlertSubscription<Proto><Severity>  AWS::SNS::Subscription (only if its
                                              endpoint parameter is not empty)
                 ApplicationPolicy            AWS::IAM::ManagedPolicy (least privilege)
    Outputs      AlertTopic<Severity>Arn, ApplicationPolicyArn, LogGroup<Group>Name

Every name is explicit (derived from the two prefix parameters; the key through its alias), so
`verify` can find each resource through its own service API without asking CloudFormation.
Intrinsics are limited to `Ref`, `Fn::Sub`, `Fn::If`, `Fn::Not`, `Fn::Equals`: small enough
for `resolve()` below to evaluate them, which is how `verify` knows what each property must be.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

__all__ = [
    "KMS_ALIAS",
    "KMS_CONDITION",
    "KMS_KEY_ID",
    "SEVERITIES",
    "VALID_RETENTION_DAYS",
    "LogGroupSpec",
    "MetricFilterSpec",
    "MonitoringDefinitions",
    "SavedQuery",
    "build_template",
    "evaluate_condition",
    "logical_id",
    "render_json",
    "render_yaml",
    "resolve",
    "topic_logical_id",
]

SEVERITIES: tuple[str, ...] = ("critical", "high", "medium", "low")
# The values PutRetentionPolicy accepts (API reference, checked 2025).
VALID_RETENTION_DAYS: tuple[int, ...] = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731,
    1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip
_LOG_ACTIONS = (
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:DescribeLogStreams",
    "logs:PutLogEvents",
    "logs:PutRetentionPolicy",
)
# One customer managed key encrypts the log groups and the alert topics (checkov CKV_AWS_158,
# CKV_AWS_26); a parameter, so a throwaway stack can skip the key's monthly cost.
KMS_KEY_ID = "MonitoringKey"
KMS_ALIAS = "MonitoringKeyAlias"
KMS_CONDITION = "UseKmsEncryption"
_KMS_ARN = "arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/${" + KMS_KEY_ID + "}"
_PROTOCOL_PARAMETER = {"email": "AlertEmail", "https": "AlertHttpsEndpoint"}
_REF_ACTION_KEYS = ("AlarmActions", "OKActions", "InsufficientDataActions")
_REGION_SENTINEL = "\x00aws-region\x00"  # replaced after json.dumps, cannot occur in input
_GROUP_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_SUB_VAR = re.compile(r"\$\{([^}]+)\}")


@dataclass(frozen=True)
class LogGroupSpec:
    """One log group: `{prefix}/{key}`, kept `retention_days` (a template parameter default)."""

    key: str
    retention_days: int
    description: str = ""

    def __post_init__(self) -> None:
        if not _GROUP_KEY.match(self.key):
            raise ValueError(f"log group key {self.key!r}: lower-case letters, digits, - or _")
        if self.retention_days not in VALID_RETENTION_DAYS:
            raise ValueError(
                f"log group {self.key!r}: retention_days {self.retention_days} is not one of "
                f"{VALID_RETENTION_DAYS}"
            )


@dataclass(frozen=True)
class MetricFilterSpec:
    """A metric filter over one log group's JSON lines, into the definitions' namespace.

    `metric_value` is "1" (count matching lines) or a field like "$.duration_ms".
    `dimensions` maps a dimension name to a field ("$.level"); CloudWatch forbids a
    `default_value` on a filter with dimensions, so the constructor refuses that pair.
    """

    name: str
    log_group: str
    pattern: str
    metric_name: str
    metric_value: str = "1"
    default_value: float | None = None
    unit: str | None = None
    dimensions: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.dimensions and self.default_value is not None:
            raise ValueError(f"metric filter {self.name!r}: dimensions forbid a default_value")
        for key, value in self.dimensions.items():
            if not value.startswith("$."):
                raise ValueError(f"metric filter {self.name!r}: dimension {key!r} must be $.field")


@dataclass(frozen=True)
class SavedQuery:
    """A Logs Insights query saved in the console; `log_groups` are full names or group keys."""

    name: str
    query: str
    log_groups: tuple[str, ...]


@dataclass(frozen=True)
class MonitoringDefinitions:
    """Everything the template is generated from, as plain data.

    `dashboards` maps a dashboard name to a CloudWatch dashboard body (the dict the
    PutDashboard API takes). `alarms` are AWS::CloudWatch::Alarm Properties; their actions name
    topics as ``{"Ref": "AlertTopicCritical"}`` (see `topic_logical_id`).
    """

    namespace: str
    log_groups: tuple[LogGroupSpec, ...]
    log_group_prefix: str = "/experimentation-platform"
    resource_prefix: str = "experimentation-platform"
    metric_filters: tuple[MetricFilterSpec, ...] = ()
    saved_queries: tuple[SavedQuery, ...] = ()
    dashboards: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    alarms: tuple[Mapping[str, Any], ...] = ()
    severities: tuple[str, ...] = SEVERITIES
    subscription_protocols: tuple[str, ...] = ("email", "https")
    description: str = "Monitoring resources"
    kms_encryption: bool = True  # the KmsEncryption parameter's default

    @staticmethod
    def queries_from_tuples(
        items: Iterable[tuple[str, str, Sequence[str]]],
    ) -> tuple[SavedQuery, ...]:
        """(name, query string, log group names) tuples, as the brief's plain input."""
        return tuple(SavedQuery(name, query, tuple(groups)) for name, query, groups in items)


def logical_id(prefix: str, name: str) -> str:
    """`prefix` + CamelCase of the alphanumeric words of `name` ("5xx by route" -> "5xxByRoute")."""
    words = re.findall(r"[A-Za-z0-9]+", name)
    result = prefix + "".join(w[:1].upper() + w[1:] for w in words)
    if not result or len(result) > 255:
        raise ValueError(f"cannot derive a logical id from {name!r}")
    return result


def topic_logical_id(severity: str) -> str:
    """The logical id alarms use to reference a severity's topic: AlertTopicCritical, ..."""
    return logical_id("AlertTopic", severity)


def _sub_literal(text: str) -> str:
    # Fn::Sub treats ${...} as a variable; ${!...} is its escape for a literal ${...}.
    return text.replace("${", "${!")


def _prefixed_name(text: str, separator: str = "-") -> dict[str, str]:
    return {"Fn::Sub": "${ResourceNamePrefix}" + separator + _sub_literal(text)}


def _log_group_name(key: str) -> dict[str, str]:
    return {"Fn::Sub": "${LogGroupPrefix}/" + key}


def _parameters(defs: MonitoringDefinitions) -> dict[str, Any]:
    params: dict[str, Any] = {
        "LogGroupPrefix": {
            "Type": "String",
            "Default": defs.log_group_prefix,
            "AllowedPattern": r"^/[A-Za-z0-9_./#-]*[A-Za-z0-9_.#-]$",
            "Description": "Prefix of the log group names (no trailing slash).",
        },
        "ResourceNamePrefix": {
            "Type": "String",
            "Default": defs.resource_prefix,
            "AllowedPattern": r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
            "Description": "Prefix of topic, policy, dashboard, alarm and query names.",
        },
    }
    for group in defs.log_groups:
        params[logical_id("RetentionDays", group.key)] = {
            "Type": "Number",
            "Default": group.retention_days,
            "AllowedValues": list(VALID_RETENTION_DAYS),
            "Description": f"Days to keep {defs.log_group_prefix}/{group.key}.",
        }
    for severity in defs.severities:
        for protocol in defs.subscription_protocols:
            params[logical_id(_PROTOCOL_PARAMETER[protocol], severity)] = {
                "Type": "String",
                "Default": "",
                # An HTTPS endpoint often carries a key in its path (PagerDuty, Slack bridges).
                **({"NoEcho": True} if protocol == "https" else {}),
                "Description": f"{protocol} endpoint for {severity} alerts (empty: none).",
            }
    params["ApplicationRoleName"] = {
        "Type": "String",
        "Default": "",
        "Description": "IAM role of the application to attach the policy to (empty: none).",
    }
    params["KmsEncryption"] = {
        "Type": "String",
        "Default": "enabled" if defs.kms_encryption else "disabled",
        "AllowedValues": ["enabled", "disabled"],
        "Description": "Encrypt the log groups and alert topics with a customer managed key.",
    }
    return params


def _if_kms(value: Any) -> dict[str, Any]:
    return {"Fn::If": [KMS_CONDITION, value, {"Ref": "AWS::NoValue"}]}


def _key_policy() -> dict[str, Any]:
    account = {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
    log_groups = {
        "Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
        "${LogGroupPrefix}/*"
    }
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                # The account administers the key through IAM, as with any AWS default key
                # policy; without it nobody could ever change or delete the key.
                "Sid": "AccountAdministersTheKey",
                "Effect": "Allow",
                "Principal": {"AWS": account},
                "Action": "kms:*",
                "Resource": "*",  # in a key policy "*" means this key
            },
            {
                # CloudWatch Logs encrypts with the key, for our log groups only.
                "Sid": "CloudWatchLogsUsesTheKey",
                "Effect": "Allow",
                "Principal": {"Service": {"Fn::Sub": "logs.${AWS::Region}.amazonaws.com"}},
                "Action": [
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:Describe*",
                ],
                "Resource": "*",
                "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": log_groups}},
            },
            {
                # Alarms publish to an encrypted topic only if CloudWatch may use its key.
                "Sid": "AlarmsAndSnsUseTheKey",
                "Effect": "Allow",
                "Principal": {"Service": ["cloudwatch.amazonaws.com", "sns.amazonaws.com"]},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}},
            },
        ],
    }


def _not_empty(parameter: str) -> dict[str, Any]:
    return {"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, ""]}]}


def _log_group_ref(name: str, defs: MonitoringDefinitions, where: str) -> Any:
    keys = {g.key for g in defs.log_groups}
    if name in keys:
        return {"Ref": logical_id("LogGroup", name)}
    if name.startswith(defs.log_group_prefix + "/"):
        key = name[len(defs.log_group_prefix) + 1 :]
        if key in keys:
            return {"Ref": logical_id("LogGroup", key)}
        raise ValueError(f"{where}: log group {name!r} is under the prefix but not defined")
    return name  # a group this template does not own (a Lambda's, say): kept as written


def _dashboard_body(body: Mapping[str, Any], defs: MonitoringDefinitions) -> Any:
    widgets = []
    for widget in body.get("widgets", []):
        widget = dict(widget)
        props = dict(widget.get("properties", {}))
        if "region" in props or widget.get("type") in ("metric", "log"):
            props["region"] = _REGION_SENTINEL
        widget["properties"] = props
        widgets.append(widget)
    text = json.dumps({**body, "widgets": widgets}, separators=(",", ":"))
    substituted = _sub_literal(text)
    substituted = substituted.replace(json.dumps(_REGION_SENTINEL)[1:-1], "${AWS::Region}")
    substituted = substituted.replace(defs.log_group_prefix + "/", "${LogGroupPrefix}/")
    return {"Fn::Sub": substituted} if substituted != text else text


def _alarm(props: Mapping[str, Any], topic_ids: set[str]) -> dict[str, Any]:
    name = props.get("AlarmName")
    if not isinstance(name, str) or not name:
        raise ValueError(f"alarm without an AlarmName: {dict(props)!r}")
    result = dict(props)
    result["AlarmName"] = _prefixed_name(name)
    for key in _REF_ACTION_KEYS:
        for action in result.get(key, []):
            ref = action.get("Ref") if isinstance(action, Mapping) else None
            if ref is not None and ref not in topic_ids:
                raise ValueError(f"alarm {name!r}: {key} references unknown {ref!r}")
    return result


def _policy_document(defs: MonitoringDefinitions) -> dict[str, Any]:
    arn = "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:${LogGroupPrefix}/"
    # The bare group ARN covers the group-level actions (CreateLogGroup, PutRetentionPolicy,
    # DescribeLogStreams); the `:*` form covers its streams (CreateLogStream, PutLogEvents).
    log_resources = [
        {"Fn::Sub": arn + group.key + suffix} for group in defs.log_groups for suffix in ("", ":*")
    ]
    statements: list[dict[str, Any]] = [
        {
            "Sid": "WriteOwnLogGroups",
            "Effect": "Allow",
            "Action": list(_LOG_ACTIONS),
            "Resource": log_resources,
        },
        # No cloudwatch:PutMetricData: metrics travel as EMF inside log lines.
        {
            "Sid": "PublishOwnAlerts",
            "Effect": "Allow",
            "Action": ["sns:Publish"],
            "Resource": [{"Ref": topic_logical_id(s)} for s in defs.severities],
        },
    ]
    # Publishing to an encrypted topic needs the topic's key.
    encrypt = {
        "Sid": "EncryptOwnAlerts",
        "Effect": "Allow",
        "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
        "Resource": [{"Fn::Sub": _KMS_ARN}],
    }
    # The If chooses between two whole lists: moto's CloudFormation keeps an AWS::NoValue
    # item inside a list (a malformed policy), AWS drops it; two lists work on both.
    return {
        "Version": "2012-10-17",
        "Statement": {"Fn::If": [KMS_CONDITION, [*statements, encrypt], statements]},
    }


def _add(resources: dict[str, Any], key: str, resource: dict[str, Any]) -> None:
    if key in resources:
        raise ValueError(f"two resources map to the logical id {key!r}: rename one")
    resources[key] = resource


def build_template(defs: MonitoringDefinitions) -> dict[str, Any]:
    """The CloudFormation template (as a dict) for `defs`. Deterministic: same input, same dict."""
    if not defs.log_groups:
        raise ValueError("at least one log group is required")
    resources: dict[str, Any] = {}
    conditions: dict[str, Any] = {
        "HasApplicationRole": _not_empty("ApplicationRoleName"),
        KMS_CONDITION: {"Fn::Equals": [{"Ref": "KmsEncryption"}, "enabled"]},
    }
    outputs: dict[str, Any] = {}
    group_keys = {g.key for g in defs.log_groups}

    _add(resources, KMS_KEY_ID, {
        "Type": "AWS::KMS::Key",
        "Condition": KMS_CONDITION,
        "DeletionPolicy": "Retain",  # logs encrypted with it stay readable after the stack
        "UpdateReplacePolicy": "Retain",
        "Properties": {
            "Description": "Encrypts the monitoring log groups and alert topics",
            "EnableKeyRotation": True,
            "KeyPolicy": _key_policy(),
        },
    })  # fmt: skip
    _add(resources, KMS_ALIAS, {
        "Type": "AWS::KMS::Alias",
        "Condition": KMS_CONDITION,
        "Properties": {
            "AliasName": {"Fn::Sub": "alias/${ResourceNamePrefix}-monitoring"},
            "TargetKeyId": {"Ref": KMS_KEY_ID},
        },
    })  # fmt: skip

    for group in defs.log_groups:
        lid = logical_id("LogGroup", group.key)
        _add(resources, lid, {
            "Type": "AWS::Logs::LogGroup",
            "DeletionPolicy": "Retain",  # deleting the stack must not delete the logs
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "LogGroupName": _log_group_name(group.key),
                "RetentionInDays": {"Ref": logical_id("RetentionDays", group.key)},
                "KmsKeyId": _if_kms({"Fn::Sub": _KMS_ARN}),
            },
        })  # fmt: skip
        outputs[lid + "Name"] = {
            "Description": group.description or group.key,
            "Value": {"Ref": lid},
        }

    for mf in defs.metric_filters:
        if mf.log_group not in group_keys:
            raise ValueError(f"metric filter {mf.name!r}: unknown log group {mf.log_group!r}")
        transformation: dict[str, Any] = {
            "MetricNamespace": defs.namespace,
            "MetricName": mf.metric_name,
            "MetricValue": mf.metric_value,
        }
        if mf.default_value is not None:
            transformation["DefaultValue"] = mf.default_value
        if mf.unit is not None:
            transformation["Unit"] = mf.unit
        if mf.dimensions:
            transformation["Dimensions"] = [
                {"Key": k, "Value": v} for k, v in mf.dimensions.items()
            ]
        _add(resources, logical_id("MetricFilter", mf.name), {
            "Type": "AWS::Logs::MetricFilter",
            "Properties": {
                "FilterName": mf.name,
                "LogGroupName": {"Ref": logical_id("LogGroup", mf.log_group)},
                "FilterPattern": mf.pattern,
                "MetricTransformations": [transformation],
            },
        })  # fmt: skip

    for query in defs.saved_queries:
        where = f"saved query {query.name!r}"
        _add(resources, logical_id("QueryDefinition", query.name), {
            "Type": "AWS::Logs::QueryDefinition",
            "Properties": {
                "Name": _prefixed_name(query.name, "/"),  # "/" makes a console folder
                "QueryString": query.query,
                "LogGroupNames": [_log_group_ref(g, defs, where) for g in query.log_groups],
            },
        })  # fmt: skip

    for name, body in defs.dashboards.items():
        _add(resources, logical_id("Dashboard", name), {
            "Type": "AWS::CloudWatch::Dashboard",
            "Properties": {
                "DashboardName": _prefixed_name(name),
                "DashboardBody": _dashboard_body(body, defs),
            },
        })  # fmt: skip

    topic_ids = {topic_logical_id(s) for s in defs.severities}
    for props in defs.alarms:
        alarm = _alarm(props, topic_ids)
        _add(resources, logical_id("Alarm", str(props["AlarmName"])), {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": alarm,
        })  # fmt: skip

    for severity in defs.severities:
        tid = topic_logical_id(severity)
        _add(resources, tid, {
            "Type": "AWS::SNS::Topic",
            "Properties": {
                "TopicName": _prefixed_name(f"alerts-{severity}"),
                "DisplayName": f"{severity} alerts",
                "KmsMasterKeyId": _if_kms({"Ref": KMS_KEY_ID}),
            },
        })  # fmt: skip
        outputs[tid + "Arn"] = {"Description": f"{severity} alerts topic", "Value": {"Ref": tid}}
        for protocol in defs.subscription_protocols:
            parameter = logical_id(_PROTOCOL_PARAMETER[protocol], severity)
            condition = "Has" + parameter
            conditions[condition] = _not_empty(parameter)
            _add(resources, logical_id("AlertSubscription", f"{protocol} {severity}"), {
                "Type": "AWS::SNS::Subscription",
                "Condition": condition,
                "Properties": {
                    "TopicArn": {"Ref": tid},
                    "Protocol": protocol,
                    "Endpoint": {"Ref": parameter},
                },
            })  # fmt: skip

    _add(resources, "ApplicationPolicy", {
        "Type": "AWS::IAM::ManagedPolicy",
        "Properties": {
            "ManagedPolicyName": _prefixed_name("application"),
            "Description": "Least privilege for the application: its log groups and its "
            "alert topics.",
            "PolicyDocument": _policy_document(defs),
            "Roles": {
                "Fn::If": [
                    "HasApplicationRole",
                    [{"Ref": "ApplicationRoleName"}],
                    {"Ref": "AWS::NoValue"},
                ]
            },
        },
    })  # fmt: skip
    outputs["ApplicationPolicyArn"] = {
        "Description": "Attach to the application's role",
        "Value": {"Ref": "ApplicationPolicy"},
    }
    outputs["MonitoringKeyArn"] = {
        "Condition": KMS_CONDITION,
        "Description": "The key of the log groups and alert topics",
        "Value": {"Fn::Sub": _KMS_ARN},
    }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": defs.description,
        "Parameters": _parameters(defs),
        "Conditions": conditions,
        "Resources": resources,
        "Outputs": outputs,
    }


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings (saved queries read as they were written); no
    anchors/aliases for shared objects: CloudFormation rejects YAML aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str_representer(dumper: Any, data: str) -> Any:
    style = "|" if "\n" in data and not data.endswith(" ") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


def _list_representer(dumper: Any, data: list[Any]) -> Any:
    # Lists of numbers (retention AllowedValues) on one line; everything else in block style.
    flow = bool(data) and all(isinstance(x, int) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(str, _str_representer)
_Dumper.add_representer(list, _list_representer)


def render_yaml(template: Mapping[str, Any], header: str = "") -> str:
    """The template as YAML (long-form intrinsics, so any YAML parser reads it back)."""
    text: str = yaml.dump(
        dict(template), Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True
    )
    comment = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines())
    return comment + text


def render_json(template: Mapping[str, Any]) -> str:
    """Compact JSON: the smallest TemplateBody (the API caps it at 51,200 bytes)."""
    return json.dumps(template, separators=(",", ":"))


# -- evaluating our own intrinsics (used by verify to know what each property must be) ----


_NO_VALUE = object()  # what `{"Ref": "AWS::NoValue"}` resolves to: the key disappears


def resolve(value: Any, env: Mapping[str, str]) -> Any:
    """Evaluate Ref / Fn::Sub / Fn::If (with `env` holding parameters, pseudo parameters and
    the physical ids of resources). Unknown names raise KeyError: a verify that guessed would
    report a wrong resource as right."""
    if isinstance(value, list):
        items = [resolve(v, env) for v in value]
        return [v for v in items if v is not _NO_VALUE]
    if not isinstance(value, Mapping):
        return value
    if set(value) == {"Ref"}:
        return _NO_VALUE if value["Ref"] == "AWS::NoValue" else env[value["Ref"]]
    if set(value) == {"Fn::Sub"}:
        text = value["Fn::Sub"]
        if not isinstance(text, str):
            raise ValueError("only the string form of Fn::Sub is supported")

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            return "${" + name[1:] + "}" if name.startswith("!") else env[name]

        return _SUB_VAR.sub(substitute, text)
    if set(value) == {"Fn::If"}:
        condition, when_true, when_false = value["Fn::If"]
        return resolve(when_true if env[f"Condition::{condition}"] == "true" else when_false, env)
    fields = {k: resolve(v, env) for k, v in value.items()}
    return {k: v for k, v in fields.items() if v is not _NO_VALUE}


def evaluate_condition(expression: Any, env: Mapping[str, str]) -> bool:
    """Fn::Not / Fn::Equals / Fn::And / Fn::Or over resolved values."""
    if isinstance(expression, Mapping) and len(expression) == 1:
        ((op, args),) = expression.items()
        if op == "Fn::Not":
            return not evaluate_condition(args[0], env)
        if op == "Fn::And":
            return all(evaluate_condition(a, env) for a in args)
        if op == "Fn::Or":
            return any(evaluate_condition(a, env) for a in args)
        if op == "Fn::Equals":
            left, right = (str(resolve(a, env)) for a in args)
            return left == right
        if op == "Condition":
            return env[f"Condition::{args}"] == "true"
    raise ValueError(f"unsupported condition {expression!r}")
