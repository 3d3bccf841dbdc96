"""Bucketing, targeting, flag evaluation and the SRM statistic: pure domain rules."""

from __future__ import annotations

from collections import Counter

import pytest
from scipy import stats as scipy_stats

from experimentation_platform.domain.bucketing import BUCKETS, bucket, pick_variant
from experimentation_platform.domain.experiments import (
    ExperimentConfig,
    InvalidTransition,
    assign,
    check_transition,
)
from experimentation_platform.domain.flags import FlagConfig, evaluate
from experimentation_platform.domain.stats import chi2_sf, sample_ratio_mismatch
from experimentation_platform.domain.targeting import Condition, matches


def _config(**overrides: object) -> ExperimentConfig:
    values: dict[str, object] = {
        "id": 1,
        "key": "exp",
        "status": "running",
        "salt": "s1",
        "variants": (("control", 50), ("treatment", 50)),
        "targeting": (),
        "traffic_allocation": 100.0,
        "version": 1,
    }
    values.update(overrides)
    return ExperimentConfig(**values)  # type: ignore[arg-type]


def test_bucket_is_a_pure_function_of_purpose_salt_and_user() -> None:
    assert bucket("variant", "salt", "alice") == bucket("variant", "salt", "alice")
    assert 0 <= bucket("variant", "salt", "alice") < BUCKETS
    # A documented, stable algorithm: SDKs in other languages must reproduce this value.
    # (first 16 hex digits of sha256("variant:abc:user-1"), mod 10,000; computed by hand)
    assert bucket("variant", "abc", "user-1") == 553


def test_ten_thousand_users_split_fifty_fifty_within_two_points() -> None:
    counts = Counter(assign(_config(), f"user-{n}").variant for n in range(10_000))
    assert set(counts) == {"control", "treatment"}
    for variant in ("control", "treatment"):
        assert 4_800 <= counts[variant] <= 5_200


def test_uneven_weights_are_respected() -> None:
    config = _config(variants=(("a", 34), ("b", 33), ("c", 33)))
    counts = Counter(assign(config, f"u{n}").variant for n in range(30_000))
    assert abs(counts["a"] / 30_000 - 0.34) < 0.015
    assert abs(counts["b"] / 30_000 - 0.33) < 0.015


def test_salts_decorrelate_experiments() -> None:
    first = [assign(_config(salt="one"), f"u{n}").variant for n in range(4_000)]
    second = [assign(_config(salt="two"), f"u{n}").variant for n in range(4_000)]
    same = sum(a == b for a, b in zip(first, second, strict=True))
    assert 1_800 < same < 2_200  # independent: agreement near 50%


def test_pick_variant_edges() -> None:
    variants = (("a", 10), ("b", 0), ("c", 90))
    assert pick_variant(variants, 0) == "a"
    assert pick_variant(variants, 999) == "a"
    assert pick_variant(variants, 1_000) == "c"  # a zero-weight variant gets nobody
    assert pick_variant(variants, 9_999) == "c"


def test_traffic_allocation_excludes_the_rest_without_reshuffling_variants() -> None:
    partial = _config(traffic_allocation=30.0)
    results = [assign(partial, f"u{n}") for n in range(10_000)]
    inside = [r for r in results if r.in_experiment]
    assert 2_800 <= len(inside) <= 3_200
    assert {r.reason for r in results if not r.in_experiment} == {"traffic_allocation"}
    full = _config()
    for n, result in enumerate(results):
        if result.in_experiment:
            assert result.variant == assign(full, f"u{n}").variant


def test_targeting_and_status_give_reasons_not_errors() -> None:
    targeted = _config(targeting=(Condition(attribute="country", operator="in", values=["FR"]),))
    assert assign(targeted, "u1", {"country": "FR"}).in_experiment
    outside = assign(targeted, "u1", {"country": "US"})
    assert (outside.in_experiment, outside.reason) == (False, "targeting")
    assert assign(_config(status="paused"), "u1").reason == "not_running"


@pytest.mark.parametrize(
    ("condition", "attributes", "expected"),
    [
        ({"attribute": "age", "operator": "gte", "value": 18}, {"age": 18}, True),
        ({"attribute": "age", "operator": "gt", "value": 18}, {"age": "old"}, False),
        ({"attribute": "plan", "operator": "neq", "value": "pro"}, {}, True),
        ({"attribute": "plan", "operator": "exists"}, {"plan": "free"}, True),
        (
            {"attribute": "email", "operator": "contains", "value": "@corp"},
            {"email": "a@corp.io"},
            True,
        ),
        ({"attribute": "email", "operator": "contains", "value": 5}, {"email": "a5"}, False),
        ({"attribute": "tier", "operator": "not_in", "values": [1, 2]}, {"tier": 3}, True),
    ],
)
def test_conditions(
    condition: dict[str, object], attributes: dict[str, object], expected: bool
) -> None:
    assert matches([Condition.model_validate(condition)], attributes) is expected


def test_condition_requires_operands() -> None:
    with pytest.raises(ValueError, match="needs a non-empty 'values'"):
        Condition.model_validate({"attribute": "x", "operator": "in"})


def test_status_transitions() -> None:
    assert check_transition("start", "draft") == "running"
    assert check_transition("start", "paused") == "running"
    assert check_transition("complete", "paused") == "completed"
    with pytest.raises(InvalidTransition, match="cannot pause an experiment that is draft"):
        check_transition("pause", "draft")
    with pytest.raises(InvalidTransition):
        check_transition("start", "completed")


def test_flag_evaluation_order() -> None:
    flag = FlagConfig.from_dict(
        {
            "key": "f",
            "enabled": True,
            "rollout_percentage": 20.0,
            "rules": [{"conditions": [{"attribute": "plan", "value": "pro"}], "enabled": True}],
            "salt": "x",
            "version": 3,
        }
    )
    assert evaluate(flag, "u", {"plan": "pro"}).reason == "rule_match"
    results = [evaluate(flag, f"u{n}") for n in range(10_000)]
    on = sum(r.enabled for r in results)
    assert 1_800 <= on <= 2_200
    disabled = FlagConfig.from_dict({**flag.to_dict(), "enabled": False})
    assert evaluate(disabled, "u", {"plan": "pro"}).reason == "disabled"


@pytest.mark.parametrize("dof", [1, 2, 3, 5, 10])
@pytest.mark.parametrize("statistic", [0.01, 0.5, 1.0, 3.84, 7.5, 20.0, 60.0])
def test_chi2_survival_matches_scipy(dof: int, statistic: float) -> None:
    assert chi2_sf(statistic, dof) == pytest.approx(
        scipy_stats.chi2.sf(statistic, dof), rel=1e-9, abs=1e-300
    )


def test_sample_ratio_mismatch() -> None:
    assert not sample_ratio_mismatch([5_020, 4_980], [50, 50]).mismatch
    flagged = sample_ratio_mismatch([5_400, 4_600], [50, 50])
    assert flagged.mismatch
    assert flagged.p_value == pytest.approx(scipy_stats.chisquare([5_400, 4_600]).pvalue)
    assert sample_ratio_mismatch([0, 0], [50, 50]).p_value == 1.0
