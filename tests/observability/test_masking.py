"""The masking policy: secrets never leave, ordinary values come through untouched."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from observability.masking import MASK, Masker, MaskingConfig, default_masker

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJjYW5hcnktdXNlci00MiIsIm5hbWUiOiJDYW5hcnkifQ."
    "c2lnbmF0dXJlQ2FuYXJ5VmFsdWUxMjM0NQ"
)
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYCANARYKEY1"

# (detector, text as it would appear, the secret parts that must never be echoed)
CANARIES: list[tuple[str, str, tuple[str, ...]]] = [
    ("email", "canary.user@example.org", ("canary.user",)),
    ("email", "?user_id=canary.user%40example.org&x=1", ("canary.user",)),
    ("card", "4111 1111 1111 1111", ("4111 1111 1111 1111", "4111111111111111")),
    ("card", "5500-0000-0000-0004", ("5500-0000-0000-0004", "5500000000000004")),
    ("card", "378282246310005", ("378282246310005",)),
    ("jwt", JWT, ("eyJzdWIiOiJjYW5hcnktdXNlci00MiIsIm5hbWUiOiJDYW5hcnkifQ",)),
    ("bearer", "Bearer zq8CanaryBearerValue", ("zq8CanaryBearerValue",)),
    ("aws_access_key", "AKIACANARY0123456789", ("AKIACANARY0123456789", "CANARY0123456789")),
    ("aws_secret_key", f"aws_secret_access_key={AWS_SECRET}", (AWS_SECRET,)),
    ("url_password", "postgres://app:Canary-Pa55@db.internal:5432/app", ("Canary-Pa55",)),
    ("query_string", "https://x.example/cb?code=1&token=CanaryTok3n&page=2", ("CanaryTok3n",)),
    ("key_value", "password=CanaryHunter2", ("CanaryHunter2",)),
    ("key_value", "X-Api-Key: CanaryApiKey99", ("CanaryApiKey99",)),
    ("key_value", '"client_secret": "Canary secret with spaces"', ("Canary secret",)),
    ("key_value", "Authorization: Basic Q2FuYXJ5OnBhc3N3b3Jk", ("Q2FuYXJ5OnBhc3N3b3Jk",)),
    ("iban", "DE89 3704 0044 0532 0130 00", ("3704 0044 0532", "370400440532013000")),
    ("iban", "GB82WEST12345698765432", ("GB82WEST12345698765432", "12345698765432")),
]

POSITIONS: dict[str, Callable[[str], object]] = {
    "top level": lambda s: {"note": s},
    "nested dict": lambda s: {"a": {"b": {"c": s, "n": 1}}},
    "list": lambda s: {"items": ["first", s, 3, None]},
    "tuple": lambda s: ("first", s),
    "json string": lambda s: {"body": json.dumps({"detail": s, "count": 2})},
    "message text": lambda s: {"event": f"upstream call failed with {s} (retrying)"},
    "url": lambda s: {"url": f"https://api.example.com/v1/items?x=1&note={s}"},
    "exception text": lambda s: {
        "exception": f"Traceback (most recent call last):\nValueError: bad input {s!r}"
    },
    "exception object": lambda s: {"error": ValueError(f"bad input {s}")},
}


def rendered(value: object) -> str:
    return json.dumps(value, default=str)


def assert_no_leak(output: object, secrets: tuple[str, ...]) -> None:
    text = rendered(output)
    for secret in secrets:
        assert secret not in text, f"{secret!r} leaked in {text}"


@pytest.fixture(scope="module")
def masker() -> Masker:
    return Masker()


# -- canaries -------------------------------------------------------------------------------


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize(("detector", "text", "secrets"), CANARIES, ids=lambda x: str(x)[:24])
def test_canary_never_leaks(
    masker: Masker, detector: str, text: str, secrets: tuple[str, ...], position: str
) -> None:
    output = masker.mask(POSITIONS[position](text))
    assert_no_leak(output, secrets)
    assert "[MASKED" in rendered(output)


@pytest.mark.parametrize(("detector", "text", "secrets"), CANARIES, ids=lambda x: str(x)[:24])
def test_canary_never_leaks_through_structlog(
    masker: Masker, detector: str, text: str, secrets: tuple[str, ...]
) -> None:
    out = io.StringIO()
    log = structlog.wrap_logger(
        structlog.PrintLogger(out),
        processors=[masker, structlog.processors.JSONRenderer()],
    )
    log.info(f"login failed for {text}", detail=text, nested={"x": [text]})
    assert_no_leak(out.getvalue(), secrets)


@pytest.mark.parametrize(
    "key",
    [
        "password", "db_password", "PASSWD", "pwd", "X-Api-Key", "api_key", "apiKey",
        "refreshToken", "access_token", "Authorization", "auth", "set-cookie", "Cookie",
        "session_id", "sessionId", "clientSecret", "private_key", "credentials", "ssn",
        "card_number", "cardNumber", "cc_number", "pan", "cvv", "cvc", "iban", "pin",
        "user_pin", "otp", "x-csrf-token",
    ],
)  # fmt: skip
def test_denylisted_keys_are_masked_everywhere(masker: Masker, key: str) -> None:
    assert masker.is_sensitive_key(key)
    for value in ("CanaryValue-9f3e", 987654321, 12.75, ["CanaryValue-9f3e"], {"a": "CanaryA"}):
        for wrap in (
            lambda v, k=key: {k: v},
            lambda v, k=key: {"outer": {"inner": [{k: v}]}},
            lambda v, k=key: {"body": json.dumps({k: v})},
        ):
            output = masker.mask(wrap(value))
            assert_no_leak(output, ("CanaryValue", "CanaryA", "987654321", "12.75"))


def test_free_text_pairs_use_the_key_policy(masker: Masker) -> None:
    text = "user=bob token_count=5 session_count: 3 author=ann db_password=hunter2 pin: 1234"
    assert masker.mask_text(text) == (
        f"user=bob token_count=5 session_count: 3 author=ann db_password={MASK} pin: {MASK}"
    )
    # a clean key must not hide a secret that follows it
    assert "hunter2" not in masker.mask_text("note:password=hunter2")
    assert "4111" not in masker.mask_text("ref=4111 1111 1111 1111")


def test_json_text_stays_valid_json(masker: Masker) -> None:
    masked = masker.mask({"body": '{"password": "hunter2", "n": [1, 2], "who": "a@b.io"}'})
    assert isinstance(masked, dict)
    assert json.loads(masked["body"]) == {"password": MASK, "n": [1, 2], "who": "[MASKED:email]"}
    text = masker.mask_text('payload {"password": "hunter2", "pin": 1234, "x": 1}')
    assert text == f'payload {{"password": "{MASK}", "pin": "{MASK}", "x": 1}}'
    json.loads(text.removeprefix("payload "))


def test_json_text_seen_as_plain_text_first_is_still_masked() -> None:
    masker = Masker()
    body = '{"credentials": {"user": "bob", "answer": 42}}'
    # A sensitive key holding a nested object: the whole object goes, in every entry point.
    assert masker.mask_text(body) == f'{{"credentials":"{MASK}"}}'
    assert masker.mask({"body": body}) == {"body": f'{{"credentials":"{MASK}"}}'}
    assert masker(None, "info", {"body": body}) == {"body": f'{{"credentials":"{MASK}"}}'}


def test_markers_name_the_kind_and_never_echo(masker: Masker) -> None:
    assert masker.mask_text("mail canary.user@example.org") == "mail [MASKED:email]"
    # Cards keep their last 4 digits (what PCI DSS allows to display), nothing more.
    assert masker.mask_text("pay 4111-1111-1111-1111 now") == "pay [MASKED:card:last4=1111] now"
    assert masker.mask_text("db postgres://app:pw@db/app") == (
        "db postgres://app:[MASKED:url_password]@db/app"
    )
    assert masker.mask_text("sent Bearer abcdefgh12") == "sent Bearer [MASKED:bearer]"
    # Long credentials keep a 4-character hint to tell them apart; short ones keep none.
    token = "ghp_" + "A1b2" * 9
    assert masker.mask_text(f"token {token}") == "token [MASKED:github_token:last4=A1b2]"
    assert masker.mask({"password": "hunter2"}) == {"password": MASK}


def test_card_inside_a_longer_digit_run(masker: Masker) -> None:
    assert masker.mask_text("4111 1111 1111 1111 2024") == "[MASKED:card:last4=1111] 2024"
    two = masker.mask_text("cards 4111111111111111 and 5500 0000 0000 0004")
    assert two == "cards [MASKED:card:last4=1111] and [MASKED:card:last4=0004]"


def test_hex_ids_with_a_luhn_valid_digit_run_stay_searchable(masker: Masker) -> None:
    # 4111111111111111 passes Luhn; inside a hex request or trace id it is not a card.
    request_id = "6a0657c94111111111111111e4aa0000"
    assert masker.mask({"request_id": request_id}) == {"request_id": request_id}
    assert masker.mask_text(f"see request {request_id}") == f"see request {request_id}"
    # The same digits standing on their own still are.
    assert masker.mask_text("card=4111111111111111;") == "card=[MASKED:card:last4=1111];"
    assert masker.mask_text("id_4111111111111111") == "id_[MASKED:card:last4=1111]"


# -- property-based -----------------------------------------------------------------------

SAFE_KEYS = st.sampled_from(
    [
        "id", "name", "count", "route", "status", "duration_ms", "items", "experiment",
        "variant", "author", "span_id", "token_count", "session_count", "company",
        "class_name", "request_id", "trace_id", "key", "principal", "user_agent",
    ]
)  # fmt: skip
SAFE_TEXT = st.from_regex(r"[a-z][a-z0-9_\-/.{} ]{0,24}", fullmatch=True).filter(
    lambda s: not re.search(r"[0-9][0-9 \-]{12}", s)  # 13+ digits could be a real card
)
SCALARS = (
    SAFE_TEXT
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.none()
    | st.booleans()
)
STRUCTURES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(SAFE_KEYS, children, max_size=4)
    ),
    max_leaves=20,
)
DENY_KEYS = st.sampled_from(
    ["password", "api_key", "X-Api-Key", "refreshToken", "secret", "authorization", "cvv", "pin"]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(structure=STRUCTURES)
def test_structures_without_secrets_come_through_unchanged(structure: object) -> None:
    masker = default_masker()
    masked = masker.mask(structure)
    assert masked == structure
    assert type(masked) is type(structure)


def inject(structure: object, payload: Callable[[], tuple[str, object]], draw: Any) -> object:
    """Put `payload` (a key and a value) somewhere in `structure`, at a drawn depth."""
    if isinstance(structure, dict) and structure and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(structure)))
        return {**structure, key: inject(structure[key], payload, draw)}
    if isinstance(structure, list) and structure and draw(st.booleans()):
        index = draw(st.integers(0, len(structure) - 1))
        copy = list(structure)
        copy[index] = inject(copy[index], payload, draw)
        return copy
    key, value = payload()
    if isinstance(structure, dict):
        return {**structure, key: value}
    if isinstance(structure, list):
        return [*structure, {key: value}]
    return [structure, {key: value}]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(structure=STRUCTURES, data=st.data())
def test_injected_secrets_never_leak(structure: object, data: st.DataObject) -> None:
    masker = default_masker()
    _, text, secrets = data.draw(st.sampled_from(CANARIES))
    around = data.draw(st.tuples(SAFE_TEXT, SAFE_TEXT))
    mode = data.draw(st.sampled_from(["bare", "in text", "in json", "under key"]))
    canary = f"CanaryValue{data.draw(st.integers(1000, 9999))}"

    def payload() -> tuple[str, object]:
        if mode == "bare":
            return "note", text
        if mode == "in text":
            return "message", f"{around[0]} {text} {around[1]}"
        if mode == "in json":
            return "body", json.dumps({"detail": f"{around[0]} {text}"})
        return data.draw(DENY_KEYS), data.draw(st.sampled_from([canary, [canary], {"v": canary}]))

    injected = inject(structure, payload, data.draw)
    assert_no_leak(masker.mask(injected), (*secrets, canary))


# -- false positives -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "4111111111111112",  # fails Luhn
        "order 1234567890123 shipped",  # fails Luhn
        "1700000000000",  # epoch millis, fails Luhn
        "98765432109876543210123",  # too long to be a card
        str(uuid.UUID("3f2b9c1e-8a4d-4c2b-9f1e-2a7b6c5d4e3f")),
        "3f2b9c1e8a4d4c2b9f1e2a7b6c5d4e3f",
        "2024-05-01T12:00:00.123456Z",
        "2024-05-01 12:00:00+00:00",
        "req_01HZX3K9V7TQ4M2N8B6C5D4E3F",
        "/api/v1/experiments/{key}",
        "/api/v1/experiments/checkout-button/assignments",
        "GET /api/v1/flags/new-onboarding?limit=50&cursor=abc123",
        "duration_ms=12.5 status=200 key=checkout-button",
        "request took 1234567 ms",
        "10.0.0.12",
        "2001:db8::8a2e:370:7334",
        "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
        "author=ann span_id=00f067aa0ba902b7 company: acme",
        "the bearer of bad news",
        "bearer authentication is required",
        "Basic information about the flag",
        "DE89 not an iban",
        "version 1.2.3",
        "",
    ],
)
def test_ordinary_text_is_untouched(masker: Masker, text: str) -> None:
    assert masker.mask_text(text) is text
    assert masker.mask(text) is text


def test_non_secret_values_keep_type_and_identity(masker: Masker) -> None:
    moment = dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)
    event = {
        "status": 200, "duration": 0.0123, "ok": True, "missing": None, "at": moment,
        "day": moment.date(), "amount": Decimal("12.50"), "id": uuid.uuid4(),
        "author": "ann", "span_id": "00f067aa0ba902b7", "token_count": 1234,
        "session_count": 7, "company": "acme", "class_name": "Widget",
        "route": "/api/v1/experiments/{key}", "tags": ["a", "b"], "pair": (1, "x"),
    }  # fmt: skip
    masked = masker.mask(event)
    assert masked is event
    assert masker(None, "info", dict(event)) == event


@pytest.mark.parametrize(
    ("key", "sensitive"),
    [
        ("auth", True), ("x-auth-token", True), ("authKey", True), ("basic_auth", True),
        ("author", False), ("authorName", False), ("authenticated", False),
        ("span_id", False), ("pan", True), ("company", False), ("class_name", False),
        ("ssn", True), ("pin_code", True), ("spinner", False), ("token_count", False),
        ("session_count", False), ("key", False), ("key_id", False), ("request_id", False),
        ("trace_id", False), ("principal", False), ("user_agent", False),
    ],
)  # fmt: skip
def test_short_terms_match_whole_words_only(masker: Masker, key: str, sensitive: bool) -> None:
    assert masker.is_sensitive_key(key) is sensitive


def test_none_and_booleans_under_sensitive_keys_are_kept(masker: Masker) -> None:
    assert masker.mask({"password": None, "token": True}) == {"password": None, "token": True}


# -- headers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "secret"),
    [
        ("Authorization", "Bearer abcdefghijklmnopWXYZ", "abcdefghijklmnopWXYZ"),
        ("authorization", "Basic dXNlcjpwYXNzd29yZDEyMw==", "dXNlcjpwYXNzd29yZDEyMw=="),
        ("X-Api-Key", "sk_live_0123456789abcdef", "sk_live_0123456789abcdef"),
        ("Cookie", "theme=dark; session=s3ss10n-abcdefghijkl", "s3ss10n-abcdefghijkl"),
        ("Set-Cookie", "sid=abcdefghijklmnop1234; Path=/; HttpOnly", "abcdefghijklmnop1234"),
        ("Proxy-Authorization", "Bearer short", "short"),
    ],
)
def test_header_keeps_at_most_last_four(masker: Masker, name: str, value: str, secret: str) -> None:
    masked = masker.mask_header(name, value)
    fives = {secret[i : i + 5] for i in range(len(secret) - 4)}
    assert not any(five in masked for five in fives), masked
    kept = re.findall(r"last4=([^\]]*)\]", masked)
    assert all(len(tail) <= 4 and secret.endswith(tail) for tail in kept)


def test_short_credentials_keep_nothing(masker: Masker) -> None:
    assert masker.mask_header("Authorization", "Bearer abc123") == f"Bearer {MASK}"
    assert masker.mask_header("X-Api-Key", "k-12345678") == MASK
    assert masker.mask_header("Authorization", "Bearer abcdefghijkl") == (
        "Bearer [MASKED:last4=ijkl]"
    )


def test_masked_headers_survive_a_second_pass(masker: Masker) -> None:
    masked = {
        "user-agent": masker.mask_header("User-Agent", "curl/8.5.0"),
        "authorization": masker.mask_header("Authorization", "Bearer abcdefghijklmnop"),
        "cookie": masker.mask_header("Cookie", "a=abcdefghijklmnop; b=1"),
    }
    assert masked["authorization"] == "Bearer [MASKED:last4=mnop]"
    # a second pass (the log pipeline) keeps the short hint instead of re-masking it
    assert masker.mask(masked) == masked
    assert masker.mask_event(dict(masked)) == masked


# -- structlog -----------------------------------------------------------------------------


def test_mask_event_masks_in_place(masker: Masker) -> None:
    event = {"event": "login failed for a@b.io", "password": "hunter2", "status": 401}
    assert masker.mask_event(event) is event
    assert event == {"event": "login failed for [MASKED:email]", "password": MASK, "status": 401}
    # the structlog processor is the same path
    again = {"event": "login failed for a@b.io", "password": "hunter2", "status": 401}
    assert masker(None, "info", again) == event


def test_structlog_pipeline_masks_tracebacks() -> None:
    out = io.StringIO()
    log = structlog.wrap_logger(
        structlog.PrintLogger(out),
        processors=[
            structlog.processors.format_exc_info,
            default_masker(),
            structlog.processors.JSONRenderer(),
        ],
    )
    try:
        raise ConnectionError("cannot reach postgres://app:Canary-Pa55@db:5432/app")
    except ConnectionError:
        log.exception("db_unreachable", dsn="postgres://app:Canary-Pa55@db:5432/app")
    line = json.loads(out.getvalue())
    assert "Canary-Pa55" not in out.getvalue()
    assert "ConnectionError" in line["exception"]
    assert line["event"] == "db_unreachable"


def test_processor_fails_closed_and_counts() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("broken __str__")

    masker = Masker()
    event = {"event": "boom", "error": Unprintable(), "status": 500}
    result = masker.mask_event(event)
    assert masker.failures == 1
    assert result == {"event": "[MASKED:error]", "error": "[MASKED:error]", "status": 500}
    assert masker.mask(Unprintable()) == "[MASKED:error]"
    assert masker.failures == 2


# -- configuration -------------------------------------------------------------------------


def test_configuration_extends_and_narrows_the_policy() -> None:
    masker = Masker(
        MaskingConfig(
            extra_keys=("tenant_salt", "dob"),
            allow_keys=("auth_token_ttl",),
            disabled_detectors=frozenset({"email"}),
            custom_patterns=(("employee_id", r"\bEMP-[0-9]{6}\b"),),
        )
    )
    assert masker.mask({"tenantSalt": "x", "dob": "1990-01-01", "auth_token_ttl": 300}) == {
        "tenantSalt": MASK,
        "dob": MASK,
        "auth_token_ttl": 300,
    }
    assert masker.mask_text("mail a@b.io") == "mail a@b.io"
    assert masker.mask_text("badge EMP-123456 used") == "badge [MASKED:employee_id] used"
    assert masker.mask_text("pay 4111111111111111") == "pay [MASKED:card:last4=1111]"


def test_phone_numbers_are_masked_by_default_and_can_be_turned_off() -> None:
    text = "call +1 (415) 555-0172 today"
    assert Masker().mask_text(text) == "call [MASKED:phone] today"
    assert Masker(MaskingConfig(disabled_detectors=frozenset({"phone"}))).mask_text(text) is text


@pytest.mark.parametrize(
    "config",
    [
        MaskingConfig(disabled_detectors=frozenset({"e-mail"})),
        MaskingConfig(custom_patterns=(("broken", "([a-z"),)),
    ],
)
def test_bad_configuration_fails_at_start(config: MaskingConfig) -> None:
    with pytest.raises(ValueError, match="mask"):
        Masker(config)


def test_default_masker_is_shared() -> None:
    assert default_masker() is default_masker()


def test_sentry_event_shape_is_scrubbed_and_keeps_its_structure(masker: Masker) -> None:
    event = {
        "event_id": "9ec79c33ec9942ab8353589fcb2e04dc",
        "timestamp": "2024-05-01T12:00:00Z",
        "platform": "python",
        "level": "error",
        "exception": {
            "values": [
                {
                    "type": "OperationalError",
                    "value": "connect to postgres://app:Canary-Pa55@db/app failed",
                    "stacktrace": {"frames": [{"function": "connect", "lineno": 12,
                                               "vars": {"password": "'hunter2'", "retries": 3}}]},
                }
            ]
        },
        "request": {
            "url": "https://api.example.com/v1/assign",
            "query_string": "user=u1&token=CanaryTok3n",
            "headers": {"Authorization": "Bearer CanaryBearer123", "Accept": "*/*"},
            "cookies": {"session": "CanarySession"},
        },
        "contexts": {"trace": {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                               "span_id": "00f067aa0ba902b7"}},
        "user": {"id": "u1", "email": "canary.user@example.org"},
    }  # fmt: skip
    masked = masker.mask(event)
    assert isinstance(masked, dict)
    assert_no_leak(
        masked,
        ("Canary-Pa55", "hunter2", "CanaryTok3n", "CanaryBearer123", "CanarySession", "canary."),
    )
    for key in ("event_id", "timestamp", "platform", "level", "contexts"):
        assert masked[key] == event[key]
    frame = masked["exception"]["values"][0]["stacktrace"]["frames"][0]
    assert frame["vars"] == {"password": MASK, "retries": 3}
    assert masked["request"]["headers"] == {"Authorization": MASK, "Accept": "*/*"}


def test_the_docs_catalog_table_names_every_detector() -> None:
    """docs/logging-standards.md lists the catalog as it is (name, family, hint)."""
    from pathlib import Path

    from observability.masking import CATALOG

    page = Path(__file__).resolve().parents[2] / "docs" / "logging-standards.md"
    rows = re.findall(
        r"^\| `([a-z0-9_]+)` \| (credential|pii|structure) \|.*\| (last 4|-) \|$",
        page.read_text(),
        re.MULTILINE,
    )
    documented = sorted((name, family, hint == "last 4") for name, family, hint in rows)
    assert documented == sorted((d.name, d.family, d.hint) for d in CATALOG)


def test_name_value_pairs_follow_the_key_policy(masker: Masker) -> None:
    """Headers and settings often travel as pairs: the name is the key."""
    har_headers = [
        {"name": "X-Api-Key", "value": "opaque-value-1"},
        {"name": "Accept", "value": "text/html"},
    ]
    assert masker.mask({"headers": har_headers}) == {
        "headers": [{"name": "X-Api-Key", "value": MASK}, {"name": "Accept", "value": "text/html"}]
    }
    asgi = [(b"authorization", b"opaque-value-2"), (b"accept", b"*/*")]
    assert masker.mask(asgi) == [(b"authorization", MASK), (b"accept", b"*/*")]
    assert masker.mask({"setting": ("db_password", "opaque-value-3")}) == {
        "setting": ("db_password", MASK)
    }


def test_every_field_of_an_event_is_checked_not_only_the_first_hit() -> None:
    """The event's strings are prefiltered together; each suspect one is then masked."""
    event = {
        "a": "db_password=hunter2",
        "b": "session_token=abc123",
        "c": "mail ann@example.org",
        "d": "plain",
        "e": "card 4111 1111 1111 1111",
    }
    assert Masker().mask_event(dict(event)) == {
        "a": f"db_password={MASK}",
        "b": f"session_token={MASK}",
        "c": "mail [MASKED:email]",
        "d": "plain",
        "e": "card [MASKED:card:last4=1111]",
    }
