"""Grouping: the same bug lands in one group, different bugs in different groups."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from typing import Any

import pytest

from observability.errors.fingerprint import (
    Fingerprinter,
    FingerprintRule,
    parametrize_message,
    qualified_type_names,
    type_name,
)

SOURCE = """
def load_order(order_id):
    raise KeyError(f"order {order_id} not found for user {order_id * 7}@example.com")

def save_order(order_id):
    raise KeyError(f"order {order_id} not found for user {order_id * 7}@example.com")

def divide(n):
    return 10 / n

def recurse(n):
    if n == 0:
        raise RecursionError("bottom reached")
    return recurse(n - 1)

def call(fn, *args):
    return fn(*args)
"""


def load_module(name: str, padding: int = 0) -> dict[str, Any]:
    """Run SOURCE as module `name`, shifted down by `padding` lines (a code edit elsewhere)."""
    namespace: dict[str, Any] = {"__name__": name}
    code = compile("\n" * padding + textwrap.dedent(SOURCE), f"/srv/{name}.py", "exec")
    exec(code, namespace)  # noqa: S102 - test fixture code we wrote above
    return namespace


def caught(fn: Callable[..., Any], *args: Any) -> BaseException:
    try:
        fn(*args)
    except BaseException as exc:
        return exc
    raise AssertionError("expected an exception")


def fp(fingerprinter: Fingerprinter, exc: BaseException, custom: str | None = None) -> str:
    return fingerprinter.fingerprint(exc, fingerprinter.frames(exc), str(exc), custom)


@pytest.fixture
def fingerprinter() -> Fingerprinter:
    return Fingerprinter(in_app_prefixes=["shop"])


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("user 42 not found", "user <num> not found"),
        ("id 550e8400-e29b-41d4-a716-446655440000 gone", "id <uuid> gone"),
        ("mail alice.b+x@example.co.uk bounced", "mail <email> bounced"),
        ("object at 0x7f3a2b9c", "object at <hex>"),
        ("commit deadbeef1234 failed", "commit <hex> failed"),
        ("key 'flag-a' and \"b c\" missing", "key <str> and <str> missing"),
        ("took -1.5e3 ms", "took <num> ms"),
        ("plain words stay", "plain words stay"),
    ],
)
def test_parametrize_strips_variable_parts(message: str, expected: str) -> None:
    assert parametrize_message(message) == expected


def test_same_bug_different_lines_and_ids_is_one_group(fingerprinter: Fingerprinter) -> None:
    before_edit = load_module("shop.orders")
    after_edit = load_module("shop.orders", padding=40)  # every line number moved
    first = caught(before_edit["load_order"], 17)
    second = caught(after_edit["load_order"], 99231)
    assert first.__traceback__ is not None
    assert second.__traceback__ is not None
    assert fingerprinter.frames(first)[-1].lineno != fingerprinter.frames(second)[-1].lineno
    assert fp(fingerprinter, first) == fp(fingerprinter, second)


def test_library_frames_do_not_split_a_group(fingerprinter: Fingerprinter) -> None:
    app = load_module("shop.orders")
    direct = caught(app["load_order"], 1)
    via_library = caught(load_module("somelib.util")["call"], app["load_order"], 2)
    assert fp(fingerprinter, direct) == fp(fingerprinter, via_library)


def test_different_bugs_are_different_groups(fingerprinter: Fingerprinter) -> None:
    app = load_module("shop.orders")
    load = fp(fingerprinter, caught(app["load_order"], 1))
    save = fp(fingerprinter, caught(app["save_order"], 1))  # same type and message, other code
    other_module = fp(fingerprinter, caught(load_module("shop.billing")["load_order"], 1))
    divide = fp(fingerprinter, caught(app["divide"], 0))
    assert len({load, save, other_module, divide}) == 4


def test_different_messages_split_the_same_code_path(fingerprinter: Fingerprinter) -> None:
    def fail(message: str) -> None:
        raise RuntimeError(message)

    a = fp(fingerprinter, caught(fail, "cache miss on 12"))
    b = fp(fingerprinter, caught(fail, "cache miss on 13"))
    c = fp(fingerprinter, caught(fail, "connection reset"))
    assert a == b
    assert a != c


def test_recursion_depth_does_not_split_a_group(fingerprinter: Fingerprinter) -> None:
    app = load_module("shop.tree")
    assert fp(fingerprinter, caught(app["recurse"], 3)) == fp(
        fingerprinter, caught(app["recurse"], 30)
    )


def test_fingerprint_is_short_hex(fingerprinter: Fingerprinter) -> None:
    value = fp(fingerprinter, caught(load_module("shop.orders")["divide"], 0))
    assert len(value) == 16
    int(value, 16)


def test_custom_fingerprint_attribute_and_argument(fingerprinter: Fingerprinter) -> None:
    app = load_module("shop.orders")
    first, second = caught(app["load_order"], 1), caught(app["divide"], 0)
    first.__fingerprint__ = "payment-gateway-down"  # type: ignore[attr-defined]
    second.__fingerprint__ = ["payment-gateway-down"]  # type: ignore[attr-defined]
    assert fp(fingerprinter, first) == fp(fingerprinter, second)
    # The explicit argument wins over the attribute.
    assert fp(fingerprinter, first, custom="other") != fp(fingerprinter, second)


def test_rules_group_by_configuration() -> None:
    rules = [
        FingerprintRule.from_dict(
            {
                "name": "timeouts",
                "fingerprint": "upstream-timeout",
                "exception_types": ["TimeoutError"],
            }
        ),
        FingerprintRule(name="billing", fingerprint="billing", modules=("shop.billing",)),
    ]
    fingerprinter = Fingerprinter(["shop"], rules)

    def timeout_a() -> None:
        raise TimeoutError("a")

    def timeout_b() -> None:
        raise TimeoutError("completely different text")

    assert fp(fingerprinter, caught(timeout_a)) == fp(fingerprinter, caught(timeout_b))
    billing = load_module("shop.billing")
    assert fp(fingerprinter, caught(billing["divide"], 0)) == fp(
        fingerprinter, caught(billing["load_order"], 1)
    )
    orders = load_module("shop.orders")
    assert fp(fingerprinter, caught(orders["divide"], 0)) != fp(
        fingerprinter, caught(billing["divide"], 0)
    )


def test_rule_from_dict_rejects_bad_config() -> None:
    with pytest.raises(ValueError, match="unknown keys"):
        FingerprintRule.from_dict({"name": "x", "fingerprint": "y", "typo": 1})
    with pytest.raises(ValueError, match="required"):
        FingerprintRule.from_dict({"name": "x"})


def test_type_names_include_base_classes() -> None:
    class PaymentError(ConnectionRefusedError):
        pass

    names = qualified_type_names(PaymentError)
    assert f"{__name__}.test_type_names_include_base_classes.<locals>.PaymentError" in names
    assert {"ConnectionRefusedError", "builtins.OSError", "OSError", "Exception"} <= names
    assert type_name(KeyError) == "KeyError"
    assert type_name(PaymentError).startswith(__name__)


def test_no_prefixes_means_every_frame_is_in_app() -> None:
    exc = caught(load_module("anything.mod")["divide"], 0)
    assert all(frame.in_app for frame in Fingerprinter().frames(exc))
