"""QuantileSketch: relative accuracy against exact quantiles, merging, persistence, edge values."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from observability.metrics.sketch import QuantileSketch


def lognormal(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(mean=-3.0, sigma=1.2, size=n)


def sketch_of(values: np.ndarray | list[float], max_buckets: int = 2048) -> QuantileSketch:
    sketch = QuantileSketch(max_buckets=max_buckets)
    for v in values:
        sketch.add(float(v))
    return sketch


@pytest.mark.parametrize("q", [0.5, 0.95, 0.99])
def test_quantiles_within_two_percent_of_numpy(q: float) -> None:
    samples = lognormal(50_000, seed=7)
    sketch = sketch_of(samples)
    exact = float(np.quantile(samples, q))
    assert sketch.quantile(q) == pytest.approx(exact, rel=0.02)


def test_every_quantile_within_relative_accuracy_of_the_sample_at_that_rank() -> None:
    samples = lognormal(20_000, seed=3)
    ordered = np.sort(samples)
    sketch = sketch_of(samples)
    for q in np.linspace(0.0, 1.0, 101):
        expected = ordered[math.floor(q * (len(ordered) - 1))]
        estimate = sketch.quantile(float(q))
        assert estimate is not None
        assert abs(estimate - expected) <= 0.01 * expected * (1 + 1e-9)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(min_value=1e-6, max_value=1e6), min_size=1, max_size=300),
    st.floats(min_value=0.0, max_value=1.0),
)
def test_relative_accuracy_property(values: list[float], q: float) -> None:
    sketch = sketch_of(values)
    expected = sorted(values)[math.floor(q * (len(values) - 1))]
    estimate = sketch.quantile(q)
    assert estimate is not None
    assert abs(estimate - expected) <= 0.01 * expected * (1 + 1e-9)


def test_count_sum_min_max() -> None:
    sketch = sketch_of([0.5, 2.0, 0.25])
    assert (sketch.count, sketch.sum, sketch.min, sketch.max) == (3, 2.75, 0.25, 2.0)


def test_merge_equals_sketch_of_all_samples() -> None:
    a, b = lognormal(5_000, seed=1), lognormal(7_000, seed=2)
    merged = sketch_of(a)
    merged.merge(sketch_of(b))
    whole = sketch_of(np.concatenate([a, b]))
    assert merged.count == 12_000
    assert merged.to_dict()["pos"] == whole.to_dict()["pos"]
    for q in (0.5, 0.95, 0.99):
        assert merged.quantile(q) == whole.quantile(q)
    assert merged.sum == pytest.approx(whole.sum)


def test_merge_rejects_a_different_accuracy() -> None:
    with pytest.raises(ValueError, match="different accuracy"):
        QuantileSketch(0.01).merge(QuantileSketch(0.02))


def test_round_trip_through_json() -> None:
    sketch = sketch_of([*lognormal(2_000, seed=5), 0.0, -0.5, -2.0])
    data = orjson.loads(orjson.dumps(sketch.to_dict()))
    restored = QuantileSketch.from_dict(data)
    assert restored.to_dict() == sketch.to_dict()
    for q in (0.0, 0.01, 0.5, 0.99, 1.0):
        assert restored.quantile(q) == sketch.quantile(q)


def test_compact_dict_is_small() -> None:
    data = orjson.dumps(sketch_of(lognormal(50_000, seed=9)).to_dict())
    assert len(data) < 8_000  # a few hundred buckets, not 50k samples


@pytest.mark.parametrize(
    "broken",
    [
        {},
        {"v": 99},
        {
            "v": 1,
            "alpha": 0.01,
            "min_value": 1e-9,
            "count": 2,
            "sum": 1.0,
            "min": 0.5,
            "max": 0.5,
            "zero": 0,
            "pos": [[1, 1]],
            "neg": [],
        },  # counts do not add up
        {
            "v": 1,
            "alpha": 0.01,
            "min_value": 1e-9,
            "count": 1,
            "sum": 1.0,
            "min": 1,
            "max": 1,
            "zero": 0,
            "pos": [[1, -1], [2, 2]],
            "neg": [],
        },
    ],
)
def test_from_dict_rejects_malformed_input(broken: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"."):
        QuantileSketch.from_dict(broken)


def test_zero_and_tiny_values_use_the_zero_bucket() -> None:
    sketch = sketch_of([0.0] * 60 + [1e-12] * 20 + [1.0] * 20)
    assert sketch.zero_count == 80
    assert sketch.quantile(0.5) == 0.0
    assert sketch.quantile(0.79) == 0.0
    assert sketch.quantile(0.99) == pytest.approx(1.0, rel=0.01)


def test_negative_values() -> None:
    values = [-3.0, -1.0, 0.0, 1.0, 3.0]
    sketch = sketch_of(values)
    for q, expected in zip((0.0, 0.25, 0.5, 0.75, 1.0), values, strict=True):
        assert sketch.quantile(q) == pytest.approx(expected, rel=0.01)


def test_empty_sketch_and_bad_q() -> None:
    sketch = QuantileSketch()
    assert sketch.quantile(0.5) is None
    with pytest.raises(ValueError, match="q must be"):
        sketch.quantile(1.5)


def test_non_finite_values_are_ignored() -> None:
    sketch = sketch_of([math.nan, math.inf, 1.0])
    assert sketch.count == 1


def test_bucket_cap_collapses_the_low_end_and_keeps_high_quantiles() -> None:
    values = [10.0**e for e in np.linspace(-6, 6, 5_000)]
    capped = sketch_of(values, max_buckets=64)
    assert capped.bucket_count <= 64
    assert capped.count == 5_000
    assert capped.quantile(0.99) == pytest.approx(float(np.quantile(values, 0.99)), rel=0.02)


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="relative_accuracy"):
        QuantileSketch(0.0)
    with pytest.raises(ValueError, match="min_value"):
        QuantileSketch(min_value=0.0)
