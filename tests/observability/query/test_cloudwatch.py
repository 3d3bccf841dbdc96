"""Terms as CloudWatch metric math over the EMF metrics, or a clear refusal."""

from __future__ import annotations

import pytest

from observability.query.cloudwatch import CwContext, Ids, cloudwatch_query
from observability.query.model import (
    BurnRate,
    CounterIncrease,
    CounterRate,
    ErrorRatio,
    GaugeValue,
    LatencyAbove,
    LatencyQuantile,
    RequestRate,
    Stalled,
    TopRoutes,
)

CTX = CwContext("NS", {"Service": "ep"})


def test_ratios_rates_and_burns_are_metric_math_over_the_emf_counts() -> None:
    burn = cloudwatch_query(
        BurnRate(ErrorRatio(where={"method": "GET", "route": "/x"}), 0.001), CTX
    )
    assert [(m.id, m.name, m.stat) for m in burn.metrics] == [
        ("m1", "http_requests_5xx_total", "Sum"),
        ("m2", "http_requests_total", "Sum"),
    ]
    assert burn.metrics[0].dimensions == {"Service": "ep", "Route": "GET /x"}
    assert burn.expression == "IF(m2 > 0, m1 / m2, 0) / 0.001"
    ids = Ids()
    first = cloudwatch_query(RequestRate(), CTX, ids)
    second = cloudwatch_query(CounterRate("c_total", {"a": "1"}), CTX, ids)
    assert (first.expression, second.expression) == ("m1/PERIOD(m1)", "m2/PERIOD(m2)")
    assert second.metrics[0].name == 'c_total{a="1"}'  # EMF names a labelled counter by its key


def test_single_metrics_and_their_units() -> None:
    p99 = cloudwatch_query(LatencyQuantile(0.99), CTX)
    assert (p99.metrics[0].name, p99.metrics[0].stat, p99.expression, p99.scale) == (
        "http_request_duration_p99",
        "Maximum",
        None,
        1000.0,
    )
    # EMF publishes a distribution's series under its windows key, like a labelled counter.
    select = LatencyQuantile(0.95, {"operation": "select"}, 300, "db_query_duration_seconds")
    assert cloudwatch_query(select, CTX).metrics[0].name == (
        'db_query_duration_seconds{operation="select"}_p95'
    )
    low = cloudwatch_query(GaugeValue("service_ready"), CwContext("NS", low_is_bad=True))
    assert low.metrics[0].stat == "Minimum"
    assert cloudwatch_query(GaugeValue("cpu"), CTX).metrics[0].stat == "Maximum"
    assert cloudwatch_query(GaugeValue("lag", agg="avg"), CTX).metrics[0].stat == "Average"
    assert cloudwatch_query(CounterIncrease("c_total"), CTX).metrics[0].stat == "Sum"
    stalled = cloudwatch_query(
        Stalled("e_total", requests_where={"route": "/e", "method": "POST"}), CTX
    )
    assert stalled.expression == "IF(FILL(m2, 0) > 0, FILL(m1, 0), 1)"
    top = cloudwatch_query(TopRoutes("latency", limit=5), CTX)
    assert top.expression is not None
    assert top.expression.startswith('SORT(SEARCH(\'{"NS",Service,Route} MetricName=')
    assert top.expression.endswith(", MAX, DESC, 5)")


@pytest.mark.parametrize(
    ("term", "message"),
    [
        (LatencyQuantile(0.9), r"LatencyQuantile\.q: EMF publishes p50/p95/p99"),
        (LatencyAbove(0.3), "no CloudWatch metric"),
        (CounterRate("c_total", by=("outcome",)), r"CounterRate\.by: EMF metrics carry no labels"),
        (RequestRate({"route": "/x"}), r"RequestRate\.where: .* need both method and route"),
    ],
)
def test_what_cloudwatch_cannot_express_is_refused_by_name(term: object, message: str) -> None:
    from observability.query.model import Unsupported

    with pytest.raises(Unsupported, match=message):
        cloudwatch_query(term, CTX)  # type: ignore[arg-type]
