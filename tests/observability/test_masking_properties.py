"""Property tests of the masking promise, on values the detectors were not written against.

Secrets come from `masking_corpus` (fresh fake values per family, built from each format's own
description); hypothesis chooses the family, the surrounding text, the encoding (as logged,
percent-encoded, form-encoded, JSON-escaped once or twice) and where the value sits (a message,
a nested field, a name/value pair, a list, a dict key, several fields at once). Each case then
goes through the real sinks' entry points: the log pipeline (rendered lines), the error
tracker (the stored occurrence), a notification; nothing of the secret may come out of any.
"""

from __future__ import annotations

import json
import random
import re
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from observability.alerting.notifiers import Notification, mask_notification
from observability.errors import ErrorStore, ErrorTracker
from observability.logging import LogPipeline, MemorySink, get_logger, reset
from observability.logging.pipeline import install
from observability.masking import Masker, default_masker
from tests.observability.masking_corpus import FAMILIES, Secret, draw

ENCODINGS: dict[str, Callable[[str], str]] = {
    "as logged": lambda s: s,
    "percent": lambda s: urllib.parse.quote(s, safe=""),
    "form": urllib.parse.quote_plus,
    "percent twice": lambda s: urllib.parse.quote(urllib.parse.quote(s, safe=""), safe=""),
    "json escaped": lambda s: json.dumps(s)[1:-1],
    "json escaped twice": lambda s: json.dumps(json.dumps(s))[1:-1],
}
PROSE = st.text(
    alphabet=st.sampled_from(list("abcdefghijklmnopqrstuvwxyz ,.;:()'\"-_/?=&")), max_size=30
)


def decoded_forms(text: str) -> Iterator[str]:
    """`text` and what a reader could decode it to (a leak in any form is a leak)."""
    yield text
    yield urllib.parse.unquote(text)
    yield urllib.parse.unquote_plus(text)
    yield urllib.parse.unquote(urllib.parse.unquote(text))
    yield text.replace("\\\\", "\\").replace('\\"', '"').replace("\\/", "/")
    yield text.replace('\\\\\\"', '"').replace("\\\\", "\\").replace('\\"', '"')


def leaked(output: str, secret: Secret) -> list[str]:
    return [p for p in secret.pieces if any(p in form for form in decoded_forms(output))]


def placements(text: str, key: str, around: tuple[str, str]) -> dict[str, Any]:
    """Where a value sits in a log call's fields, several at once."""
    before, after = around
    return {
        "note": f"{before} {text} {after}",
        "detail": {"nested": [{"value": text}]},
        "headers": [{"name": "X-Upstream-Credential", "value": text}, ("authorization", text)],
        "attempts": [before, text, 3],
        "by_value": {text: 1},
        key: text,
    }


@pytest.fixture
def pipeline() -> Iterator[tuple[LogPipeline, MemorySink]]:
    sink = MemorySink()
    pipe = LogPipeline([sink], mask=default_masker().mask_event)
    install(pipe, capture_stdlib=False)
    yield pipe, sink
    reset()


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    family=st.sampled_from(sorted(FAMILIES)),
    seed=st.integers(0, 2**32),
    encoding=st.sampled_from(sorted(ENCODINGS)),
    around=st.tuples(PROSE, PROSE),
    key=st.sampled_from(["reason", "q", "message", "input", "payload"]),
)
def test_no_secret_survives_the_log_pipeline(
    pipeline: tuple[LogPipeline, MemorySink],
    family: str,
    seed: int,
    encoding: str,
    around: tuple[str, str],
    key: str,
) -> None:
    pipe, sink = pipeline
    secret = draw(random.Random(seed), family)
    text = ENCODINGS[encoding](secret.text)
    log = get_logger("property.test")
    log.warning(f"upstream said {around[0]} {text} {around[1]}", **placements(text, key, around))
    assert pipe.flush(5)
    line = sink.lines[-1].decode()
    assert leaked(line, secret) == [], line
    assert "[MASKED" in line


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    family=st.sampled_from(sorted(FAMILIES)),
    seed=st.integers(0, 2**32),
    encoding=st.sampled_from(sorted(ENCODINGS)),
)
def test_no_secret_survives_error_capture_or_a_notification(
    family: str, seed: int, encoding: str
) -> None:
    secret = draw(random.Random(seed), family)
    text = ENCODINGS[encoding](secret.text)
    masker = Masker()
    store = ErrorStore.from_url("sqlite://")
    store.create_schema()
    tracker = ErrorTracker(store, mask=masker.mask)
    try:
        try:
            try:
                raise KeyError(f"lookup of {text} failed")
            except KeyError as cause:
                raise RuntimeError(f"request failed while handling {text}") from cause
        except RuntimeError as exc:
            tracker.capture(exc, {"user_id": text, "query": f"q={text}", "route": "/x/{key}"})
        assert tracker.flush(10)
        with store.engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT * FROM error_occurrences")).all()
            groups = connection.execute(sa.text("SELECT * FROM error_groups")).all()
    finally:
        tracker.close()
        store.dispose()
    stored = repr(rows) + repr(groups)
    assert rows
    assert leaked(stored, secret) == [], stored
    notification = Notification(
        key=f"error:{text}",
        status="firing",
        severity="high",
        title=f"New error group: {text}",
        summary=f"request failed while handling {text}",
        description=text,
        source="error",
        labels={"hint": text},
    )
    masked = mask_notification(notification, masker.mask_text)
    assert leaked(repr(masked), secret) == []


# -- false positives -----------------------------------------------------------------------

_B32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _identifiers(rng: random.Random) -> Iterator[str]:
    """Request ids, trace ids and UUIDs in the shapes services generate them."""
    yield uuid.UUID(int=rng.getrandbits(128), version=4).hex
    yield str(uuid.UUID(int=rng.getrandbits(128), version=4))
    yield f"{rng.getrandbits(128):032x}"  # W3C trace id
    yield f"{rng.getrandbits(64):016x}"  # span id
    yield f"00-{rng.getrandbits(128):032x}-{rng.getrandbits(64):016x}-01"  # traceparent
    yield "".join(rng.choice(_B32) for _ in range(26))  # ULID
    yield "req_" + "".join(rng.choice(_B32) for _ in range(24))
    yield str(uuid.UUID(int=rng.getrandbits(128)))  # any version, any variant


def test_no_false_positive_on_100_000_generated_ids() -> None:
    masker = Masker()
    rng = random.Random(20261205)
    flagged: list[tuple[str, str]] = []
    checked = 0
    while checked < 100_000:
        for identifier in _identifiers(rng):
            checked += 1
            found = masker.findings(identifier)
            if found:
                flagged.append((identifier, found[0].detector))
            # the hot path decides the same: nothing to do for an id
            assert masker.mask_event({"request_id": identifier}) == {"request_id": identifier}
    assert flagged == []


READABLE = [
    "5d41402abc4b2a76b9719d911017c592",  # md5
    "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12",  # sha1
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",  # sha256
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "2026-12-05T12:00:00.123456Z",
    "2026-12-05 12:00:00+02:00",
    "Sat, 05 Dec 2026 12:00:00 GMT",
    "1764936000",
    "1764936000123",
    "/api/v1/experiments/{key}/results",
    "/api/v1/flags/{key}/evaluation",
    "GET /api/v1/assignments?limit=50&cursor=a139263059 200 1.84ms",
    "10.1.46.142",
    "2001:db8::8a2e:370:7334",
    "v1.2.3",
    "Python/3.11.7 aiohttp/3.9.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
    "Rolling out to 50% of users after the redesign looked good in staging.",
    "Paused by on-call: sample ratio mismatch p=3e-4 on variant green.",
    "ConnectTimeout: billing.internal:8443 did not answer within 500 ms (attempt 2 of 3)",
    "The bearer of this note is authorised to pass; the basic plan covers 3 seats.",
    "Order 1234567 shipped in 3 boxes, tracking 1Z999AA10123456784",
    "session_count=12 token_count=5400 auth_method=oidc key=checkout-button",
    # An upper-case id that passes mod 97 with a country prefix, but Czech BBANs are digits.
    "request CZ61XBX1EZ6RK4SB4VFGNDXE accepted",
]


@pytest.mark.parametrize("text", READABLE)
def test_ordinary_values_stay_readable(text: str) -> None:
    masker = Masker()
    assert masker.mask_text(text) is text, masker.findings(text)


def test_sql_parameters_are_masked_and_the_statement_kept() -> None:
    engine = sa.create_engine("sqlite://")
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE users (email TEXT UNIQUE, note TEXT)"))
        connection.execute(sa.text("INSERT INTO users VALUES ('a', 'b')"))
    with pytest.raises(sa.exc.IntegrityError) as failure, engine.begin() as connection:
        connection.execute(
            sa.text("INSERT INTO users VALUES (:email, :note)"),
            {"email": "a", "note": "post-delete user-4521 purchase"},
        )
    message = str(failure.value)
    assert "[parameters: " in message
    assert "post-delete" in message
    masked = default_masker().mask_text(message)
    assert "post-delete" not in masked
    assert "user-4521" not in masked
    assert "INSERT INTO users VALUES (?, ?)" in masked  # the statement stays
    assert "[parameters: [MASKED:sql_parameters]" in masked


def test_exception_causes_are_masked_in_log_lines(
    pipeline: tuple[LogPipeline, MemorySink],
) -> None:
    pipe, sink = pipeline
    secret = draw(random.Random(7), "stripe")
    try:
        try:
            raise ValueError(f"card declined for key {secret.text}")
        except ValueError as cause:
            raise RuntimeError("checkout failed") from cause
    except RuntimeError:
        get_logger("property.test").exception("checkout_failed")
    assert pipe.flush(5)
    line = sink.lines[-1].decode()
    assert '"cause"' in line
    assert leaked(line, secret) == []
    assert re.search(r"\[MASKED:stripe_key", line)
