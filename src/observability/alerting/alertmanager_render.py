"""Render the severity routes, grouping and inhibition to an Alertmanager configuration.

The same `routes` table the embedded `Dispatcher` uses (severity -> receiver names) becomes a
routing tree: one child route per (severity, receiver), `continue: true` between receivers of
one severity; a severity without receivers goes to `dashboard`, a receiver with no configs
(Alertmanager's null receiver: visible in its UI, sent nowhere). Grouping and inhibition come
from the same `Grouping` and `InhibitRule` objects the evaluator uses.

Secrets never appear: PagerDuty routing keys and Slack webhook URLs are `*_file` references
(mounted secrets), the SMTP password likewise; SNS signs with the instance's AWS role.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from observability.alerting.grouping import DEFAULT_INHIBIT_RULES, Grouping, InhibitRule
from observability.alerting.notifiers.base import SEVERITIES, Severity
from observability.alerting.prometheus_render import to_yaml
from observability.query.promql import format_duration

__all__ = [
    "EmailReceiver",
    "PagerDutyReceiver",
    "Receiver",
    "SlackReceiver",
    "SnsReceiver",
    "render_alertmanager_config",
    "render_alertmanager_yaml",
]

NULL_RECEIVER = "dashboard"
_SECRETS = "/etc/alertmanager/secrets"


@dataclass(frozen=True)
class PagerDutyReceiver:
    name: str = "pagerduty"
    routing_key_file: str = f"{_SECRETS}/pagerduty_routing_key"
    url: str | None = None  # default: Alertmanager's global PagerDuty Events v2 URL

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"routing_key_file": self.routing_key_file, "send_resolved": True}
        if self.url:
            cfg["url"] = self.url
        # Our severities mapped onto PagerDuty's, like the embedded PagerDutyNotifier does.
        cfg["severity"] = (
            '{{ if eq .CommonLabels.severity "critical" }}critical'
            '{{ else if eq .CommonLabels.severity "high" }}error'
            '{{ else if eq .CommonLabels.severity "medium" }}warning{{ else }}info{{ end }}'
        )
        cfg["description"] = "{{ .CommonLabels.alertname }}: {{ .CommonAnnotations.summary }}"
        cfg["details"] = {
            "runbook_url": "{{ .CommonAnnotations.runbook_url }}",
            "dashboard_url": "{{ .CommonAnnotations.dashboard_url }}",
            "firing": '{{ template "pagerduty.default.instances" .Alerts.Firing }}',
        }
        return {"pagerduty_configs": [cfg]}


@dataclass(frozen=True)
class SlackReceiver:
    name: str = "slack"
    api_url_file: str = f"{_SECRETS}/slack_webhook_url"
    channel: str | None = None

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"api_url_file": self.api_url_file, "send_resolved": True}
        if self.channel:
            cfg["channel"] = self.channel
        cfg["title"] = (
            "[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }} ({{ .CommonLabels.severity }})"
        )
        cfg["text"] = (
            "{{ range .Alerts }}{{ .Annotations.summary }}\n"
            "Runbook: {{ .Annotations.runbook_url }}\n{{ end }}"
        )
        return {"slack_configs": [cfg]}


@dataclass(frozen=True)
class EmailReceiver:
    to: str
    sender: str
    smarthost: str
    name: str = "email"
    auth_username: str | None = None
    auth_password_file: str | None = None
    require_tls: bool = True

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "to": self.to,
            "from": self.sender,
            "smarthost": self.smarthost,
            "require_tls": self.require_tls,
            "send_resolved": True,
        }
        if self.auth_username:
            cfg["auth_username"] = self.auth_username
        if self.auth_password_file:
            cfg["auth_password_file"] = self.auth_password_file
        return {"email_configs": [cfg]}


@dataclass(frozen=True)
class SnsReceiver:
    topic_arn: str
    region: str
    name: str = "sns"
    api_url: str | None = None  # a regional or local endpoint (moto in tests)

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "topic_arn": self.topic_arn,
            "sigv4": {"region": self.region},
            "subject": "[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }}",
            "send_resolved": True,
        }
        if self.api_url:
            cfg["api_url"] = self.api_url
        return {"sns_configs": [cfg]}


Receiver: TypeAlias = PagerDutyReceiver | SlackReceiver | EmailReceiver | SnsReceiver


def _matcher(name: str, values: Sequence[str]) -> str:
    if len(values) == 1:
        return f"{name}={json.dumps(values[0])}"
    return f"{name}=~{json.dumps('|'.join(values))}"


def render_alertmanager_config(
    routes: Mapping[Severity, Sequence[str]],
    receivers: Sequence[Receiver],
    *,
    grouping: Grouping = Grouping(),  # noqa: B008 - frozen
    inhibit_rules: Sequence[InhibitRule] = DEFAULT_INHIBIT_RULES,
    resolve_timeout_s: int = 300,
) -> dict[str, Any]:
    """The Alertmanager configuration as a dict (see `render_alertmanager_yaml`)."""
    by_name = {r.name: r for r in receivers}
    missing = {n for names in routes.values() for n in names} - set(by_name)
    if missing:
        raise ValueError(f"routes name receivers that are not configured: {sorted(missing)}")
    # A receiver no route names is dead configuration that looks like coverage: refuse it.
    unrouted = set(by_name) - {n for names in routes.values() for n in names}
    if unrouted:
        raise ValueError(f"receivers that no route uses: {sorted(unrouted)}")
    unknown = set(routes) - set(SEVERITIES)
    if unknown:
        raise ValueError(f"unknown severities in routes: {sorted(unknown)}")
    children: list[dict[str, Any]] = []
    for severity in SEVERITIES:
        names = list(routes.get(severity, ()))
        matchers = [_matcher("severity", [severity])]
        if not names:
            children.append({"receiver": NULL_RECEIVER, "matchers": matchers})
            continue
        for i, name in enumerate(names):
            child: dict[str, Any] = {"receiver": name, "matchers": matchers}
            if i < len(names) - 1:
                child["continue"] = True
            children.append(child)
    inhibits = [
        {
            "source_matchers": [_matcher("severity", list(rule.source_severities))],
            "target_matchers": [
                _matcher("severity", list(rule.target_severities)),
                *(f'{label}=~".+"' for label in rule.equal),
            ],
            "equal": list(rule.equal),
        }
        for rule in inhibit_rules
    ]
    return {
        "global": {"resolve_timeout": format_duration(resolve_timeout_s)},
        "route": {
            "receiver": NULL_RECEIVER,
            "group_by": list(grouping.group_by),
            "group_wait": format_duration(grouping.group_wait_s),
            "group_interval": format_duration(grouping.group_interval_s),
            "repeat_interval": format_duration(grouping.repeat_interval_s),
            "routes": children,
        },
        "inhibit_rules": inhibits,
        "receivers": [{"name": NULL_RECEIVER}]
        + [{"name": r.name, **r.config()} for r in receivers],
    }


def render_alertmanager_yaml(
    routes: Mapping[Severity, Sequence[str]], receivers: Sequence[Receiver], **options: Any
) -> str:
    header = "# Rendered from the alert routes in code; do not edit by hand.\n"
    return header + to_yaml(render_alertmanager_config(routes, receivers, **options))
