"""Alert text templates: Python format fields filled from an alert's value, threshold and labels.

    {value}, {threshold}   optionally with a format spec: {value:.1%}, {threshold:g}
    {dependency}, ...      any label of the alert
    {objective}, {budget}  SLO rules: filled when the rule expands (`prefill`)

The Prometheus renderer translates the same templates to Go templates (`go_template`).
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

__all__ = ["prefill", "render_template", "template_fields"]

_FORMATTER = string.Formatter()


def template_fields(template: str) -> list[tuple[str, str, str]]:
    """(literal text, field name, format spec) triples of a template (field '' at the end)."""
    return [
        (literal, name or "", spec or "")
        for literal, name, spec, _conv in _FORMATTER.parse(template)
    ]


def prefill(template: str, values: Mapping[str, str]) -> str:
    """Substitute rule-level constants now, leaving {value}/{threshold}/labels for later."""
    parts: list[str] = []
    for literal, name, spec in template_fields(template):
        parts.append(literal.replace("{", "{{").replace("}", "}}"))
        if not name:
            continue
        if name in values:
            parts.append(format(values[name], spec).replace("{", "{{").replace("}", "}}"))
        else:
            parts.append("{" + name + (":" + spec if spec else "") + "}")
    return "".join(parts)


def render_template(
    template: str, value: float | None, threshold: float | None, labels: Mapping[str, str]
) -> str:
    """Fill {value}, {threshold} and {label} fields; unknown fields render empty."""
    parts: list[str] = []
    for literal, name, spec in template_fields(template):
        parts.append(literal)
        if not name:
            continue
        raw: Any
        if name == "value":
            raw = value
        elif name == "threshold":
            raw = threshold
        else:
            raw = labels.get(name, "")
        if raw is None:
            parts.append("n/a")
            continue
        try:
            parts.append(format(raw, spec))
        except (ValueError, TypeError):
            parts.append(str(raw))
    return "".join(parts)
