"""CloudWatch Embedded Metric Format (EMF) documents, split to fit the format's limits.

Why hand-written: the official ``aws-embedded-metrics`` library owns its sinks and event loop and
Powertools is Lambda-oriented; we only need pure "data in, JSON lines out" so another component
(the CloudWatch log shipper) can ship the lines to its own log stream.

Wire format (one JSON object per log event)::

    {
      "_aws": {
        "Timestamp": 1700000000000,                 # ms since the epoch
        "CloudWatchMetrics": [{                     # MetricDirective
          "Namespace": "ExperimentationPlatform",
          "Dimensions": [["Service", "Route"]],     # DimensionSet(s): <= 30 keys each
          "Metrics": [                              # <= 100 MetricDefinitions
            {"Name": "http_requests_total", "Unit": "Count", "StorageResolution": 60}
          ]
        }]
      },
      "Service": "ep", "Route": "GET /x",           # target members: dimension values (strings)
      "http_requests_total": 42                     # metric values: number or <= 100 numbers
    }

Limits enforced here (EMF specification): at most 100 metrics per document, at most 30
dimensions per dimension set, at most 100 values per metric. Input that exceeds the metric or
value limits is split across documents; every value lands in exactly one document.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict, get_args

import orjson

from observability.metrics.sketch import QuantileSketch
from observability.metrics.windows import MinuteRollup

__all__ = [
    "MAX_DIMENSIONS",
    "MAX_METRICS_PER_DOCUMENT",
    "MAX_VALUES_PER_METRIC",
    "VALID_UNITS",
    "EmfDocument",
    "EmfMetadata",
    "EmfMetric",
    "EmfMetricDefinition",
    "EmfMetricDirective",
    "EmfPublisher",
    "EmfUnit",
    "build_emf_documents",
    "render_emf_lines",
]

MAX_METRICS_PER_DOCUMENT = 100
MAX_DIMENSIONS = 30
MAX_VALUES_PER_METRIC = 100
_MAX_NAME_LEN = 255
_MAX_DIMENSION_VALUE_LEN = 1024
# CloudWatch rejects values outside +/- 2**360 (PutMetricData documents the same range).
_MAX_ABS_VALUE = 2.0**360
_NAMESPACE_RE = re.compile(r"^[0-9A-Za-z.\-_/#: ]+$")

EmfUnit = Literal[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
]
VALID_UNITS: frozenset[str] = frozenset(get_args(EmfUnit))


# -- wire format ----------------------------------------------------------------------------------
class EmfMetricDefinition(TypedDict):
    Name: str
    Unit: NotRequired[str]
    StorageResolution: NotRequired[int]  # 1 (high resolution) or 60 (standard)


class EmfMetricDirective(TypedDict):
    Namespace: str
    Dimensions: list[list[str]]
    Metrics: list[EmfMetricDefinition]


class EmfMetadata(TypedDict):
    Timestamp: int
    CloudWatchMetrics: list[EmfMetricDirective]


# The root object mixes the fixed "_aws" member with free-form target members (dimension
# values, metric values, properties), which a TypedDict cannot express on Python 3.11; the
# "_aws" member is always an EmfMetadata.
EmfDocument = dict[str, Any]


@dataclass(frozen=True, slots=True)
class EmfMetric:
    """One metric to publish: a value or a list of values sharing a unit and resolution."""

    name: str
    values: float | Sequence[float]
    unit: str = "None"
    storage_resolution: int = 60

    def value_list(self) -> list[float]:
        if isinstance(self.values, int | float):
            return [self.values]
        return list(self.values)


# -- validation -----------------------------------------------------------------------------------
def _check_name(kind: str, name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{kind} name must be a non-empty string, got {name!r}")
    if len(name) > _MAX_NAME_LEN:
        raise ValueError(f"{kind} name {name[:40]!r}... is longer than {_MAX_NAME_LEN} characters")
    return name


def _check_namespace(namespace: str) -> None:
    if not isinstance(namespace, str) or not namespace.strip():
        raise ValueError("namespace must be a non-empty string")
    if len(namespace) > _MAX_NAME_LEN or not _NAMESPACE_RE.match(namespace):
        raise ValueError(
            f"invalid namespace {namespace!r}: at most {_MAX_NAME_LEN} characters from "
            "A-Z a-z 0-9 . - _ / # : and space"
        )
    if namespace.startswith("AWS/"):
        raise ValueError("namespaces starting with 'AWS/' are reserved for AWS services")


def _check_dimensions(dimensions: Mapping[str, str]) -> None:
    if len(dimensions) > MAX_DIMENSIONS:
        raise ValueError(
            f"{len(dimensions)} dimensions given; a dimension set holds at most {MAX_DIMENSIONS}"
        )
    for key, value in dimensions.items():
        _check_name("dimension", key)
        if not key.isascii() or key.startswith(":"):
            raise ValueError(f"dimension name {key!r} must be ASCII and not start with ':'")
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"dimension {key!r} needs a non-empty string value, got {value!r}")
        if len(value) > _MAX_DIMENSION_VALUE_LEN or not value.isascii():
            raise ValueError(
                f"dimension {key!r} value must be ASCII, at most {_MAX_DIMENSION_VALUE_LEN} chars"
            )


def _check_metric(metric: EmfMetric) -> list[float]:
    _check_name("metric", metric.name)
    if metric.unit not in VALID_UNITS:
        raise ValueError(
            f"metric {metric.name!r}: invalid unit {metric.unit!r}; "
            f"expected one of {', '.join(sorted(VALID_UNITS))}"
        )
    if metric.storage_resolution not in (1, 60):
        raise ValueError(
            f"metric {metric.name!r}: StorageResolution must be 1 or 60, "
            f"got {metric.storage_resolution!r}"
        )
    values = metric.value_list()
    if not values:
        raise ValueError(f"metric {metric.name!r} has no values")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"metric {metric.name!r}: value {value!r} is not a number")
        if not math.isfinite(value) or abs(value) > _MAX_ABS_VALUE:
            raise ValueError(f"metric {metric.name!r}: value {value!r} is not a finite number")
    return values


# -- building -------------------------------------------------------------------------------------
def build_emf_documents(
    namespace: str,
    dimensions: Mapping[str, str],
    metrics: Sequence[EmfMetric],
    timestamp_ms: int,
    properties: Mapping[str, Any] | None = None,
) -> list[EmfDocument]:
    """Build as many EMF documents as the limits require for ``metrics``.

    Every document carries the same namespace, dimension values, timestamp and properties.
    Metrics with the same name are concatenated (they must share unit and resolution). A metric
    with more than 100 values spreads over consecutive documents, 100 values at a time; more
    than 100 metrics spread 100 per document. Raises ValueError for invalid input.
    """
    _check_namespace(namespace)
    _check_dimensions(dimensions)
    if isinstance(timestamp_ms, bool) or not isinstance(timestamp_ms, int) or timestamp_ms < 0:
        raise ValueError(f"timestamp_ms must be a non-negative int (ms), got {timestamp_ms!r}")
    props = dict(properties or {})
    if "_aws" in props:
        raise ValueError("'_aws' is reserved for the EMF metadata")
    clash = set(props) & set(dimensions)
    if clash:
        raise ValueError(f"property names clash with dimension names: {sorted(clash)}")

    merged: dict[str, tuple[EmfMetric, list[float]]] = {}
    for metric in metrics:
        values = _check_metric(metric)
        if metric.name in dimensions or metric.name in props or metric.name == "_aws":
            raise ValueError(f"metric name {metric.name!r} clashes with a dimension or property")
        seen = merged.get(metric.name)
        if seen is None:
            merged[metric.name] = (metric, values)
        elif (seen[0].unit, seen[0].storage_resolution) != (
            metric.unit,
            metric.storage_resolution,
        ):
            raise ValueError(f"metric {metric.name!r} given twice with different unit/resolution")
        else:
            seen[1].extend(values)
    if not merged:
        return []

    # Round r holds the r-th chunk of 100 values of every metric that has one; each round is then
    # cut into documents of at most 100 metrics. A name appears at most once per document.
    rounds: list[list[tuple[EmfMetric, list[float]]]] = []
    for metric, values in merged.values():
        for r, start in enumerate(range(0, len(values), MAX_VALUES_PER_METRIC)):
            if r == len(rounds):
                rounds.append([])
            rounds[r].append((metric, values[start : start + MAX_VALUES_PER_METRIC]))

    dimension_set = list(dimensions)
    documents: list[EmfDocument] = []
    for round_metrics in rounds:
        for start in range(0, len(round_metrics), MAX_METRICS_PER_DOCUMENT):
            batch = round_metrics[start : start + MAX_METRICS_PER_DOCUMENT]
            definitions: list[EmfMetricDefinition] = []
            document: EmfDocument = {}
            for metric, chunk in batch:
                definition: EmfMetricDefinition = {"Name": metric.name, "Unit": metric.unit}
                if metric.storage_resolution != 60:  # 60 is the default: keep lines short
                    definition["StorageResolution"] = metric.storage_resolution
                definitions.append(definition)
                document[metric.name] = chunk[0] if len(chunk) == 1 else chunk
            metadata: EmfMetadata = {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [
                    {
                        "Namespace": namespace,
                        "Dimensions": [list(dimension_set)],
                        "Metrics": definitions,
                    }
                ],
            }
            document.update(props)
            document.update(dimensions)
            document["_aws"] = metadata
            documents.append(document)
    return documents


def render_emf_lines(
    namespace: str,
    dimensions: Mapping[str, str],
    metrics: Sequence[EmfMetric],
    timestamp_ms: int,
    properties: Mapping[str, Any] | None = None,
) -> list[str]:
    """``build_emf_documents`` serialised with orjson, one JSON line per document."""
    return [
        orjson.dumps(doc).decode()
        for doc in build_emf_documents(namespace, dimensions, metrics, timestamp_ms, properties)
    ]


# -- publisher ------------------------------------------------------------------------------------
_QUANTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))


class EmfPublisher:
    """Turns ``RollingWindows.completed_minutes()`` rollups into EMF lines.

    Per minute it emits one overall document (dimensions: the base ones) with request counts,
    4xx/5xx counts, latency p50/p95/p99 (Milliseconds), every business counter (Count) and
    every distribution's count and quantiles (Milliseconds); and, when ``per_route`` is set,
    one document per route with the same request metrics and an extra ``Route`` dimension.
    ``extra_counters`` adds counters kept elsewhere (e.g. log events dropped by a sink).
    """

    def __init__(
        self,
        namespace: str,
        dimensions: Mapping[str, str] | None = None,
        *,
        per_route: bool = True,
        route_dimension: str = "Route",
        storage_resolution: int = 60,
        counter_units: Mapping[str, str] | None = None,
    ) -> None:
        base = dict(dimensions or {})
        _check_namespace(namespace)
        _check_dimensions(base)
        if per_route:
            _check_dimensions({**base, route_dimension: "x"})
        self.namespace = namespace
        self.dimensions = base
        self.per_route = per_route
        self.route_dimension = route_dimension
        self.storage_resolution = storage_resolution
        self.counter_units = dict(counter_units or {})
        bad_units = {u for u in self.counter_units.values() if u not in VALID_UNITS}
        if bad_units:
            raise ValueError(f"invalid counter units {sorted(bad_units)}")
        if storage_resolution not in (1, 60):
            raise ValueError("storage_resolution must be 1 or 60")
        self.documents_skipped = 0  # documents dropped because their input was invalid

    def _request_metrics(
        self, requests: int, classes: Mapping[str, int], latency: QuantileSketch
    ) -> list[EmfMetric]:
        res = self.storage_resolution
        metrics = [
            EmfMetric("http_requests_total", requests, "Count", res),
            EmfMetric("http_requests_5xx_total", classes.get("5xx", 0), "Count", res),
            EmfMetric("http_requests_4xx_total", classes.get("4xx", 0), "Count", res),
        ]
        for label, q in _QUANTILES:
            value = latency.quantile(q)
            if value is not None:
                name = f"http_request_duration_{label}"
                metrics.append(EmfMetric(name, value * 1000.0, "Milliseconds", res))
        return metrics

    def documents_for_rollup(
        self,
        rollup: MinuteRollup,
        extra_counters: Mapping[str, float] | None = None,
        gauges: Mapping[str, float] | None = None,
    ) -> list[EmfDocument]:
        """EMF documents for one minute. Invalid parts are skipped and counted, never raised."""
        timestamp_ms = rollup.minute_start * 1000
        res = self.storage_resolution
        overall: QuantileSketch | None = None
        classes: dict[str, int] = {}
        requests = 0
        route_sketches: dict[str, QuantileSketch] = {}
        for key, route in rollup.routes.items():
            sketch = route_sketches[key] = route.latency_sketch()
            if overall is None:
                overall = sketch.copy()
            else:
                overall.merge(sketch)  # same windows, same accuracy: always compatible
            requests += route.requests
            for cls, n in route.status_classes.items():
                classes[cls] = classes.get(cls, 0) + n

        metrics = self._request_metrics(requests, classes, overall or QuantileSketch())
        counters = dict(rollup.counters)
        for name, value in (extra_counters or {}).items():
            counters[name] = counters.get(name, 0.0) + value
        for name, total in sorted(counters.items()):
            metrics.append(EmfMetric(name, total, self.counter_units.get(name, "Count"), res))
        for name, value in sorted((gauges or {}).items()):
            if math.isfinite(value):  # a gauge as read this minute (Unit None: no unit)
                metrics.append(EmfMetric(name, value, "None", res))
        for name, data in sorted(rollup.distributions.items()):
            dist = QuantileSketch.from_dict(data)
            metrics.append(EmfMetric(f"{name}_count", dist.count, "Count", res))
            for label, q in _QUANTILES:
                estimate = dist.quantile(q)
                if estimate is not None:
                    ms = estimate * 1000.0
                    metrics.append(EmfMetric(f"{name}_{label}", ms, "Milliseconds", res))

        documents: list[EmfDocument] = []
        try:
            documents.extend(
                build_emf_documents(self.namespace, self.dimensions, metrics, timestamp_ms)
            )
        except ValueError:
            self.documents_skipped += 1
        if self.per_route:
            for key, route in sorted(rollup.routes.items()):
                dims = {**self.dimensions, self.route_dimension: key}
                route_metrics = self._request_metrics(
                    route.requests, route.status_classes, route_sketches[key]
                )
                try:
                    documents.extend(
                        build_emf_documents(self.namespace, dims, route_metrics, timestamp_ms)
                    )
                except ValueError:  # e.g. a non-ASCII route template: skip that route only
                    self.documents_skipped += 1
        return documents

    def lines_for_rollup(
        self,
        rollup: MinuteRollup,
        extra_counters: Mapping[str, float] | None = None,
        gauges: Mapping[str, float] | None = None,
    ) -> list[str]:
        """EMF JSON lines for one minute, ready for the CloudWatch log shipper."""
        return [
            orjson.dumps(doc).decode()
            for doc in self.documents_for_rollup(rollup, extra_counters, gauges)
        ]

    def lines_for_rollups(
        self, rollups: Sequence[MinuteRollup], gauges: Mapping[str, float] | None = None
    ) -> list[str]:
        """Lines for several minutes; `gauges` (read now) go with the last one."""
        lines: list[str] = []
        for index, rollup in enumerate(rollups):
            last = index == len(rollups) - 1
            lines.extend(self.lines_for_rollup(rollup, gauges=gauges if last else None))
        return lines
