"""Render rules to a Prometheus rule file: SLO burn-rate recording rules plus alerting rules.

    render_rule_groups(rules) -> {"groups": [...]}   the structure Prometheus loads
    render_rules_yaml(rules)  -> str                 deploy/prometheus/rules.yml

Every SLO window becomes a recording rule `slo:sli_error:ratio_rate<window>{slo="<name>"}` (the
bad-event ratio), so the burn-rate alerts compare cheap pre-computed series, as in the SRE
workbook. Threshold rules are inlined. Every term becomes PromQL through
`observability.query.promql`, the renderer Grafana panels use too. Templates are translated
to Go templates: {value} becomes `{{ $value | humanize }}` ({value:.1%} ->
humanizePercentage, {value:.2f} -> printf), {threshold} is filled in now, any other field is a
label (`{{ $labels.name }}`).

The YAML is written by a small emitter (`to_yaml`): PyYAML is not a runtime dependency, and
quoting every string (single quotes, or JSON escapes for newlines) keeps the output valid YAML
by construction.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from observability.alerting.rules import AlertDefinition, Condition, Rule, SloRule, definitions
from observability.alerting.templates import template_fields
from observability.query.model import BurnRate, with_window
from observability.query.promql import PromContext, PromNames, format_duration, promql, selector

__all__ = [
    "RECORDING_PREFIX",
    "go_template",
    "recording_name",
    "render_rule_groups",
    "render_rules_yaml",
    "to_yaml",
]

RECORDING_PREFIX = "slo:sli_error:ratio_rate"
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _num(value: float) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def recording_name(window_s: int) -> str:
    return f"{RECORDING_PREFIX}{format_duration(window_s)}"


def _condition(condition: Condition, slo: SloRule | None, ctx: PromContext) -> str:
    expr = condition.expr
    if slo is not None and isinstance(expr, BurnRate) and expr.sli.window_s is not None:
        series = selector(recording_name(expr.sli.window_s), [f"slo={json.dumps(slo.name)}"])
        left = f"{series} / {_num(expr.budget)}"
    else:
        left = f"({promql(expr, ctx)})"
    return f"{left} {condition.comparison} {_num(condition.threshold)}"


def alert_expr(
    definition: AlertDefinition, slo: SloRule | None = None, names: PromNames | None = None
) -> str:
    ctx = PromContext(names=names or PromNames())
    clauses = [
        " and ".join(_condition(c, slo, ctx) for c in clause) for clause in definition.clauses
    ]
    if len(clauses) == 1:
        return clauses[0]
    return " or ".join(f"({clause})" for clause in clauses)


def go_template(template: str, threshold: float | None) -> str:
    """Translate a Python-format template to a Prometheus (Go) annotation template."""
    out: list[str] = []
    for literal, name, spec in template_fields(template):
        out.append(literal)
        if not name:
            continue
        if name == "value":
            if spec.endswith("%"):
                out.append("{{ $value | humanizePercentage }}")
            elif spec:
                out.append(f'{{{{ printf "%{spec}" $value }}}}')
            else:
                out.append("{{ $value | humanize }}")
        elif name == "threshold":
            out.append("n/a" if threshold is None else format(threshold, spec))
        else:
            out.append(f"{{{{ $labels.{name} }}}}")
    return "".join(out)


def _links(definition: AlertDefinition, runbook_base: str, dashboard_base: str) -> dict[str, str]:
    links = {"runbook_url": f"{runbook_base}#{definition.runbook}"}
    if definition.dashboard:
        board = definition.dashboard
        if "://" not in board and dashboard_base:
            board = dashboard_base.rstrip("/") + "/" + board.lstrip("/")
        links["dashboard_url"] = board
    return links


def render_rule_groups(
    rules: Sequence[Rule],
    *,
    names: PromNames | None = None,
    group_name: str = "alerts",
    runbook_base_url: str = "docs/runbook.md",
    dashboard_base_url: str = "",
    interval_s: int | None = None,
) -> dict[str, Any]:
    """{"groups": [recording group (if any SLO), alerting group]}."""
    ctx = PromContext(names=names or PromNames())
    slos = {r.name: r for r in rules if isinstance(r, SloRule)}
    recordings: list[dict[str, Any]] = []
    for objective in slos.values():
        windows = sorted({w for bw in objective.windows for w in (bw.long_s, bw.short_s)})
        for window in windows:
            recordings.append(
                {
                    "record": recording_name(window),
                    "expr": promql(with_window(objective.sli, window), ctx),
                    "labels": {"slo": objective.name},
                }
            )
    alerts: list[dict[str, Any]] = []
    for d in definitions(rules):
        slo = slos.get(d.rule) if d.kind != "threshold" else None
        rule: dict[str, Any] = {"alert": d.name, "expr": alert_expr(d, slo, ctx.names)}
        if d.for_seconds:
            rule["for"] = format_duration(d.for_seconds)
        rule["labels"] = {"severity": d.severity, **dict(d.labels)}
        annotations = {"summary": go_template(d.summary, d.threshold)}
        if d.description:
            annotations["description"] = go_template(d.description, d.threshold)
        annotations.update(_links(d, runbook_base_url, dashboard_base_url))
        rule["annotations"] = annotations
        alerts.append(rule)
    groups: list[dict[str, Any]] = []
    extra = {"interval": format_duration(interval_s)} if interval_s else {}
    if recordings:
        groups.append({"name": f"{group_name}-slo-recordings", **extra, "rules": recordings})
    groups.append({"name": group_name, **extra, "rules": alerts})
    return {"groups": groups}


def render_rules_yaml(rules: Sequence[Rule], **options: Any) -> str:
    header = "# Rendered from the rule definitions in code; do not edit by hand.\n"
    return header + to_yaml(render_rule_groups(rules, **options))


# -- a tiny YAML emitter ----------------------------------------------------------------------
def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _num(value) if isinstance(value, float) else str(value)
    text = str(value)
    if text.isprintable():  # single quotes: only ' needs escaping, so PromQL stays readable
        return "'" + text.replace("'", "''") + "'"
    return json.dumps(text, ensure_ascii=False)


def _key(key: str) -> str:
    return key if _PLAIN_KEY.fullmatch(key) else json.dumps(key)


def _emit(value: Any, indent: int, lines: list[str]) -> None:
    pad = "  " * indent
    if isinstance(value, Mapping):
        for k, v in value.items():
            if isinstance(v, Mapping | list) and v:
                lines.append(f"{pad}{_key(str(k))}:")
                _emit(v, indent + 1, lines)
            else:
                empty = "{}" if isinstance(v, Mapping) else "[]" if isinstance(v, list) else None
                lines.append(f"{pad}{_key(str(k))}: {empty or _scalar(v)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, Mapping | list) and item:
                sub: list[str] = []
                _emit(item, indent + 1, sub)
                first = sub[0].lstrip()
                lines.append(f"{pad}- {first}")
                lines.extend(sub[1:])
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        lines.append(f"{pad}{_scalar(value)}")


def to_yaml(data: Mapping[str, Any] | Iterable[Any]) -> str:
    """Block-style YAML for dicts, lists and scalars (strings always quoted)."""
    lines: list[str] = []
    _emit(data if isinstance(data, Mapping) else list(data), 0, lines)
    return "\n".join(lines) + "\n"
