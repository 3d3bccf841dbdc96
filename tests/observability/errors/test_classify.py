"""Severity rules: the documented defaults, ordering, every condition, loading from dicts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pydantic
import pytest
import sqlalchemy as sa
import sqlalchemy.exc

from observability.errors.classify import (
    DEFAULT_RULES,
    Classification,
    ClassificationRule,
    Classifier,
    Severity,
    Subject,
    rules_from_dicts,
    tag_set,
)
from observability.errors.fingerprint import Fingerprinter, qualified_type_names
from tests.support.servers import free_port

FINGERPRINTER = Fingerprinter(in_app_prefixes=["shop"])


def caught(fn: Callable[[], Any]) -> BaseException:
    try:
        fn()
    except BaseException as exc:
        return exc
    raise AssertionError("expected an exception")


def subject(
    exc: BaseException,
    *,
    route: str | None = None,
    tags: Mapping[str, Any] | None = None,
    status_code: int | None = None,
    rate: float = 0.0,
) -> Subject:
    return Subject(
        type_names=qualified_type_names(type(exc)),
        frames=FINGERPRINTER.frames(exc),
        route=route,
        tags=tag_set(tags),
        status_code=status_code,
        rate_per_minute=rate,
    )


def raise_in(module: str, exc: BaseException) -> BaseException:
    """Raise `exc` from a function that lives in `module` (in-app or a library)."""
    namespace: dict[str, Any] = {"__name__": module, "exc": exc}
    exec(compile("def boom():\n    raise exc\n", f"/srv/{module}.py", "exec"), namespace)  # noqa: S102
    return caught(namespace["boom"])


def default(exc: BaseException, **kwargs: Any) -> Classification:
    return Classifier().classify(subject(exc, **kwargs))


def test_integrity_error_is_critical() -> None:
    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        exc = caught(lambda: conn.exec_driver_sql("INSERT INTO t VALUES (1)"))
    engine.dispose()
    assert isinstance(exc, sqlalchemy.exc.IntegrityError)
    assert default(exc) == Classification(Severity.CRITICAL, "integrity-error")


def test_lost_write_tag_is_critical() -> None:
    exc = RuntimeError("write acknowledged but missing")
    assert default(exc, tags={"lost_write": True}) == Classification(
        Severity.CRITICAL, "lost-write"
    )
    assert default(exc, tags={"lost_write": False}).severity is Severity.LOW


def test_database_unavailable_is_high() -> None:
    engine = sa.create_engine(f"postgresql+psycopg://root@127.0.0.1:{free_port()}/nowhere")
    exc = caught(engine.connect)
    engine.dispose()
    assert isinstance(exc, sqlalchemy.exc.OperationalError)
    assert default(exc) == Classification(Severity.HIGH, "database-unavailable")


def test_connection_refused_is_high_only_from_a_database_driver() -> None:
    from_driver = raise_in("psycopg.connection", ConnectionRefusedError("refused"))
    from_elsewhere = raise_in("shop.webhooks", ConnectionRefusedError("refused"))
    assert default(from_driver) == Classification(Severity.HIGH, "database-connection-refused")
    assert default(from_elsewhere).severity is Severity.LOW


def test_server_errors_on_the_assignment_path_are_high() -> None:
    exc = raise_in("shop.assign", RuntimeError("bucket missing"))
    assert default(exc, route="/assignments/{experiment_key}") == Classification(
        Severity.HIGH, "assignment-path-5xx"
    )
    assert default(exc, route="/assignments/{key}", status_code=404).severity is Severity.LOW
    assert default(exc, route="/experiments/{key}").severity is Severity.LOW


def test_validation_bugs_are_medium() -> None:
    class Model(pydantic.BaseModel):
        n: int

    validation = caught(lambda: Model.model_validate({"n": "not a number"}))
    assert default(validation) == Classification(Severity.MEDIUM, "validation-bug")
    in_app = raise_in("shop.pricing", ValueError("negative price"))
    in_library = raise_in("json.decoder", ValueError("bad json"))
    assert default(in_app) == Classification(Severity.MEDIUM, "in-app-value-error")
    assert default(in_library) == Classification(Severity.LOW, "default")


def test_anything_else_is_low() -> None:
    assert default(KeyError("x")) == Classification(Severity.LOW, "default")


def test_first_match_wins() -> None:
    exc = raise_in("shop.assign", ValueError("bad"))
    broad = ClassificationRule(name="broad", severity=Severity.LOW, exception_types=("Exception",))
    narrow = ClassificationRule(
        name="narrow", severity=Severity.HIGH, exception_types=("ValueError",)
    )
    assert Classifier([broad, narrow]).classify(subject(exc)).rule_name == "broad"
    assert Classifier([narrow, broad]).classify(subject(exc)).rule_name == "narrow"
    # Nothing matches at all: the fallback.
    assert Classifier([]).classify(subject(exc)) == Classification(Severity.LOW, "fallback")


def test_base_class_matching_by_qualified_name() -> None:
    class DomainError(Exception):
        pass

    class BucketOverflow(DomainError):
        pass

    rule = ClassificationRule(
        name="domain",
        severity=Severity.HIGH,
        exception_types=(f"{DomainError.__module__}.{DomainError.__qualname__}",),
    )
    assert rule.matches(subject(BucketOverflow()))
    assert not rule.matches(subject(RuntimeError()))


def test_module_tag_and_rate_conditions() -> None:
    exc = raise_in("shop.storage.repo", RuntimeError("x"))
    by_module = ClassificationRule(name="m", severity=Severity.HIGH, modules=("shop.storage",))
    assert by_module.matches(subject(exc))
    assert not by_module.matches(subject(raise_in("shop.api", RuntimeError("x"))))

    by_tag = ClassificationRule(name="t", severity=Severity.HIGH, tags=("tenant=acme",))
    assert by_tag.matches(subject(exc, tags={"tenant": "acme"}))
    assert not by_tag.matches(subject(exc, tags={"tenant": "other"}))
    listed = Subject(type_names=frozenset(), frames=(), tags=tag_set(["tenant=acme"]))
    assert by_tag.matches(listed)

    by_rate = ClassificationRule(name="r", severity=Severity.CRITICAL, min_rate_per_minute=100)
    assert by_rate.matches(subject(exc, rate=150))
    assert not by_rate.matches(subject(exc, rate=99))


def test_rules_load_from_dicts() -> None:
    rules = rules_from_dicts(
        [
            {"name": "storm", "severity": "CRITICAL", "min_rate_per_minute": 500},
            {"name": "auth", "severity": "high", "route_contains": "/auth", "min_status": 500},
            {"name": "pricing", "severity": "medium", "exception_types": ["ValueError"],
             "modules": ["shop.pricing"], "raised_in_app": True},
            {"name": "rest", "severity": "low"},
        ]
    )  # fmt: skip
    assert [r.name for r in rules] == ["storm", "auth", "pricing", "rest"]
    assert rules[0].severity is Severity.CRITICAL
    assert rules[1].route_contains == ("/auth",)
    classifier = Classifier(rules)
    exc = raise_in("shop.pricing", ValueError("negative"))
    assert classifier.classify(subject(exc)).rule_name == "pricing"
    assert classifier.classify(subject(exc, rate=600)).rule_name == "storm"
    assert classifier.classify(subject(exc, route="/auth/login")).rule_name == "auth"


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([{"severity": "low"}], "'name' is required"),
        ([{"name": "a", "severity": "urgent"}], "severity must be one of critical"),
        ([{"name": "a", "severity": "low", "exception": "X"}], "unknown keys"),
        ([{"name": "a", "severity": "low"}, {"name": "a", "severity": "high"}], "duplicate"),
    ],
)
def test_bad_rules_fail_with_a_clear_message(items: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rules_from_dicts(items)


def test_defaults_end_with_a_catch_all() -> None:
    assert DEFAULT_RULES[-1] == ClassificationRule(name="default", severity=Severity.LOW)
    assert Severity.CRITICAL.rank > Severity.HIGH.rank > Severity.MEDIUM.rank > Severity.LOW.rank
