"""Dashboards as data: panels of query terms, rendered by pure functions.

A dashboard is written once (the platform's live in its ``telemetry`` package) and rendered to
the built-in web UI (``observability.dashboards.data``), CloudWatch dashboard bodies
(``observability.dashboards.cloudwatch``) and Grafana JSON over Prometheus
(``observability.dashboards.grafana``). A panel's queries are the terms of
``observability.query`` -- the same ones alert rules use -- without windows of their own: a
time series evaluates them per step, a number or a table over the selected range. A term a
backend cannot express (a store-backed one such as ``ErrorGroups`` in Prometheus) renders as
a text panel there. A term's ``label`` names its series on the chart.

Units use Grafana's unit ids because they are the most precise common vocabulary
(``reqps``, ``percentunit`` = a 0..1 ratio shown as %, ``s``, ``ms``, ``bytes``, ``Bps``,
``short``); the other renderers map them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from observability.query.model import TERM_TYPES, Term

__all__ = ["Dashboard", "Panel", "PanelKind", "Threshold", "Unit"]

PanelKind = Literal["timeseries", "stat", "table", "topn"]
Unit = Literal["reqps", "percentunit", "s", "ms", "bytes", "Bps", "short", "ops", "none"]
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


# -- panels and dashboards ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Threshold:
    """From ``value`` upwards the panel turns ``level`` (or downwards when ``below``)."""

    value: float
    level: Literal["warn", "bad"] = "bad"
    below: bool = False


@dataclass(frozen=True, slots=True)
class Panel:
    """One chart, number or table.

    ``description`` answers three questions for the person on call: what it means, what bad
    looks like, and where to click next. ``width`` is in twelfths of the page.

    A table of several terms joins them on their ``by`` labels: one row per label set, one
    column per term, each column in its ``column_units`` entry (the panel's ``unit`` when
    missing). ``link`` is a URL template filled from a row's labels
    (``/api/v1/experiments/{experiment}/results``): each row links to it.
    """

    kind: PanelKind
    title: str
    description: str
    queries: tuple[Term, ...]
    unit: Unit = "short"
    thresholds: tuple[Threshold, ...] = ()
    width: int = 6
    column_units: tuple[Unit, ...] = ()
    link: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("timeseries", "stat", "table", "topn"):
            raise ValueError(f"panel {self.title!r}: unknown kind {self.kind!r}")
        if not self.queries:
            raise ValueError(f"panel {self.title!r} has no queries")
        if not all(isinstance(q, TERM_TYPES) for q in self.queries):
            raise ValueError(f"panel {self.title!r}: queries must be observability.query terms")
        if not 1 <= self.width <= 12:
            raise ValueError(f"panel {self.title!r}: width must be 1..12 (twelfths)")
        if not self.description.strip():
            raise ValueError(f"panel {self.title!r} needs a description")
        if self.column_units and len(self.column_units) != len(self.queries):
            raise ValueError(f"panel {self.title!r}: one column unit per query")
        if len(self.queries) > 1 and self.kind == "table":
            splits = {getattr(q, "by", None) for q in self.queries}
            if len(splits) != 1 or not next(iter(splits)):
                raise ValueError(f"panel {self.title!r}: a joined table's terms share one `by`")

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


@dataclass(frozen=True, slots=True)
class Dashboard:
    """A named set of panels. ``name`` is a URL slug (``api-performance``)."""

    name: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _SLUG.match(self.name):
            raise ValueError(f"dashboard name {self.name!r} must be a lowercase slug")
        slugs = [p.slug for p in self.panels]
        duplicated = {s for s in slugs if slugs.count(s) > 1}
        if duplicated:
            raise ValueError(
                f"dashboard {self.name!r}: duplicate panel titles {sorted(duplicated)}"
            )

    def panel(self, slug: str) -> Panel:
        for panel in self.panels:
            if panel.slug == slug:
                return panel
        raise KeyError(slug)
