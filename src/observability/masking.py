"""One masking policy for every sink: logs, files, CloudWatch, error store, Sentry, notifications.

Two complementary rules, both configured once in ``Masker.__init__``:

* **Key denylist** -- a value stored under a sensitive key (``password``, ``X-Api-Key``,
  ``refreshToken``, ``card_number``...) is replaced whole, whatever its type, in dicts nested
  in lists, tuples and JSON strings. Keys are compared case-insensitively after dropping
  separators (``X-Api-Key`` -> ``xapikey``). Terms of five or more characters match as a
  *substring* of that compact key (``db_password``, ``refreshToken``); shorter terms (``auth``,
  ``pwd``, ``pin``, ``pan``, ``ssn``, ``cvv``...) must be a whole *word* of the key (split on
  separators and camelCase) because as substrings they hit ordinary words: ``author``,
  ``span_id``, ``company``, ``class_name``. An allowlist (exact compact key) wins over the
  denylist for known false positives such as ``token_count`` or ``session_count``.
* **Value detectors** -- every string (messages, field values, exception text, URLs) is scanned
  for e-mail addresses, Luhn-valid card numbers, JWTs, bearer tokens, AWS keys, URL passwords,
  ``key=value`` pairs whose key is sensitive (query strings included), mod-97-valid IBANs and,
  opt-in, phone numbers. Each detector has a cheap necessary condition (a gate) checked on a
  byte-class image of the string; only detectors whose gate fires run, as one combined regex
  compiled once per combination. With a bounded cache of strings already found clean, ordinary
  strings never reach a regex. In free text, a pair's key is found when it spells each word of
  a term contiguously (``api_key``, ``api-key``, ``apiKey``, ``X-API-KEY``).

A masked value never echoes the secret: it becomes ``[MASKED]`` or ``[MASKED:<kind>]``. Only the
headers helper keeps up to four trailing characters of long credentials, to tell them apart.
Non-secret values come back as the very same objects (ints, floats, datetimes untouched).

Wiring (one `Masker`, usually `default_masker()`, shared by every sink):

* structlog: put the masker after ``merge_contextvars`` and ``format_exc_info`` /
  ``dict_tracebacks`` (so traceback text is scanned) and before the renderer. Placing it before
  ``TimeStamper`` saves a little work: timestamps cannot hold secrets.
* Sentry: ``before_send=lambda event, hint: masker.mask(event)`` (same for ``before_breadcrumb``).
* Error store and alert notifications: ``masker.mask(payload)`` / ``masker.mask_text(message)``.
* Access logs: ``masker.mask_headers(scope_headers)`` keeps only `DEFAULT_LOGGED_HEADERS`.

Not scanned: ints and floats (a card number stored as an int under an innocent key passes, as
scanning numbers would mask epoch milliseconds), and dict keys in the processor's top level
(event keys are code, not data; nested keys are scanned). Telemetry never raises into its host:
internal errors are counted in `Masker.failures` and the processor fails closed.

Hand-written because no maintained library offers this combination (structlog has no masking,
sentry-sdk's EventScrubber only handles exact key names and no value detectors).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from functools import cache
from typing import Any

__all__ = [
    "DEFAULT_ALLOW_KEYS",
    "DEFAULT_DENY_TERMS",
    "DEFAULT_LOGGED_HEADERS",
    "DETECTORS",
    "MASK",
    "Masker",
    "MaskingConfig",
    "default_masker",
]

MASK = "[MASKED]"

# Canonical spelling; underscores mark word boundaries where a key may use any separator or none.
DEFAULT_DENY_TERMS: tuple[str, ...] = (
    "password", "passwd", "passphrase", "pass", "pwd", "secret", "token", "api_key",
    "authorization", "auth", "cookie", "session", "sessid", "credential", "private_key",
    "access_key", "signing_key", "encryption_key", "client_secret", "ssn", "card_number",
    "credit_card", "cc_number", "cardnum", "pan", "cvv", "cvv2", "cvc", "cvn", "pin", "otp",
    "iban", "csrf", "xsrf", "jwt", "security_code",
)  # fmt: skip

# Exact keys (compared in compact form) that are never masked by key; values are still scanned.
DEFAULT_ALLOW_KEYS: tuple[str, ...] = (
    "request_id", "trace_id", "span_id", "parent_span_id", "correlation_id", "principal",
    "user_agent", "key_id", "token_count", "token_type", "tokens", "total_tokens",
    "input_tokens", "output_tokens", "session_count", "sessions", "auth_method", "auth_type",
    "auth_provider",
)  # fmt: skip

# Headers an access log may carry; the credential-bearing ones are masked by `mask_header`.
DEFAULT_LOGGED_HEADERS: frozenset[str] = frozenset(
    {
        "user-agent", "content-type", "content-length", "accept", "referer", "x-request-id",
        "x-forwarded-for", "traceparent", "authorization", "proxy-authorization", "cookie",
        "set-cookie", "x-api-key",
    }
)  # fmt: skip

DETECTORS: tuple[str, ...] = (
    "url_password", "email", "jwt", "bearer", "aws_access_key", "aws_secret_key", "key_value",
    "card", "iban", "phone",
)  # fmt: skip

_WORD_TERM_MAX = 4  # terms this short only match whole words of a key
_KEY_CACHE_MAX = 4096
_CLEAN_CACHE_MAX = 8192
_CLEAN_CACHE_MAX_LEN = 256
_MAX_DEPTH = 32  # deeper structures are masked wholesale rather than walked (cycles, abuse)

_NON_ALNUM = re.compile(r"[^0-9A-Za-z]+")
_KEY_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_SCALARS = (int, float, bool, type(None))
# Text with no capital, "@", "=", ":", space or "%": only a card number could hide in it.
_PLAIN = re.compile(r"[a-z0-9._\-/{}]{0,256}")
_DIGIT_RUN = re.compile(r"[0-9\-]{13}")  # maybe a card: the full detectors decide
# Output of `mask_header`: let it through a second pass so the last-4 hint survives.
_PRE_MASKED = re.compile(
    r"(?:[A-Za-z][A-Za-z0-9-]{0,30} )?\[MASKED(?::[a-z0-9_]{1,30}|:last4=[^\]\s]{1,4})?\]"
)
_PRE_MASKED_COOKIES = re.compile(r"(?:[^=;\s]{1,64}=\[MASKED(?::last4=[^\]\s]{1,4})?\](?:; |$))+")
_AUTH_SCHEMES = r"(?:[Bb]earer|BEARER|[Bb]asic|BASIC|[Dd]igest|[Tt]oken|[Bb]ot|[Nn]egotiate)"
_COOKIE_HEADERS = frozenset({"cookie", "set-cookie"})

# Value detectors. Every regex has bounded repeats and a look-behind that only lets it start at a
# word start, so no input makes it quadratic. Each one runs only when its gate (in `_gates`) fires.
_DETECTOR_REGEX: dict[str, str] = {
    "url_password": r"(?<![A-Za-z0-9+.\-])(?P<url_head>[A-Za-z][A-Za-z0-9+.\-]{0,30}://"
    r"[^\s:/?#@]{0,128}:)[^\s/?#]{1,256}(?=@)",
    # "@" or its URL encoding "%40" (query strings are logged as sent).
    "email": r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]{1,64}(?:@|%40)[A-Za-z0-9\-]{1,63}"
    r"(?:\.[A-Za-z0-9\-]{1,63}){0,8}\.[A-Za-z]{2,24}(?![A-Za-z0-9\-])",
    "jwt": r"(?<![A-Za-z0-9_\-])eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*"
    r"(?:\.[A-Za-z0-9_\-]*){0,2}",
    "bearer": r"(?P<bearer_scheme>(?<![A-Za-z])(?:[Bb]earer|BEARER))[ \t]+"
    r"[A-Za-z0-9\-._~+/]{8,}=*",
    "aws_access_key": r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])",
    "aws_secret_key": r"(?P<aws_ctx>(?i:aws_?secret(?:_?access)?_?key|secret_?access_?key)"
    r"\\?[\"']?[ \t]*[:=][ \t]*\\?[\"']?)[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])",
    # A run of digit groups; `_on_card` finds the 13-19 digit Luhn-valid window inside it.
    # Not inside a run of letters and digits: a hex request or trace id holds 13+ digits in a
    # row in ~4% of cases (Luhn-valid in a tenth of those) and must stay searchable.
    "card": r"(?<![0-9A-Za-z])(?:[0-9]{13,19}|[0-9]{4,6}(?:[ \-][0-9]{1,7}){1,8})(?![0-9A-Za-z])",
    "iban": r"(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?:[ ]?[A-Z0-9]){11,30}(?![A-Za-z0-9])",
    "phone": r"(?<![A-Za-z0-9+])(?:\+[0-9]{1,3}[ .\-]?)?(?:\([0-9]{1,4}\)[ .\-]?)?"
    r"[0-9]{2,4}(?:[ .\-]?[0-9]{2,4}){1,4}(?![A-Za-z0-9])",
}
# Gates: necessary conditions for each detector, tested on a one-letter-per-character class
# image of the text. Building it (`bytes.translate`) and testing it (`str` substring search) cost
# about 1 ns per character; even a one-class regex search costs ~15 here.


def _class_table() -> bytes:
    table = bytearray(b"." * 256)  # anything else, including every byte of non-ASCII text
    classes = (("0123456789 -", "d"), (".()", "p"), ("@", "@"), ("=:", "="))
    for chars, cls in classes:
        for char in chars:
            table[ord(char)] = ord(cls)
    for code in range(ord("A"), ord("Z") + 1):
        table[code] = ord("U")
    return bytes(table)


_CLASS_TABLE = _class_table()
_CARD_RUN = "d" * 13  # a card match is 13+ characters of [0-9 -]
_PHONE_RUN = "d" * 8  # a phone match holds 8+ characters of [0-9 .()-]
_IBAN_HEAD = "UUdd"  # an IBAN starts with two capitals and two digits


def _classes(text: str) -> str:
    return text.encode("utf-8", "replace").translate(_CLASS_TABLE).decode("ascii")


# `key=value` / `key: value` in free text: the key is matched here, the value only when the key
# is sensitive (so a clean key never swallows a secret that follows it).
_KV_KEY = re.compile(
    r"(?<![A-Za-z0-9_.\-])(?P<key>[A-Za-z_][A-Za-z0-9_.\-]{0,63})(?P<sep>\\?[\"']?[ \t]*[:=][ \t]*)"
)
_KV_VALUE = re.compile(
    r"\"(?:[^\"\\\n]|\\.){0,1024}\"|'[^'\n]{0,1024}'|\\\"(?:[^\"\\]|\\[^\"]){0,1024}\\\""
    rf"|(?:{_AUTH_SCHEMES}[ ]+)?[^\s&;,\"'<>()\[\]{{}}]{{1,1024}}"
)
_CARD_SPLIT = re.compile(r"([ \-])")


@dataclass(frozen=True)
class MaskingConfig:
    """What to mask beyond the defaults. Immutable: build a new `Masker` to change it."""

    extra_keys: tuple[str, ...] = ()
    allow_keys: tuple[str, ...] = ()
    phone_numbers: bool = False
    disabled_detectors: frozenset[str] = frozenset()
    custom_patterns: tuple[tuple[str, str], ...] = ()  # (name, regex); scoped flags only
    header_tail_min_length: int = 12  # credentials shorter than this show no trailing chars


def _compact(key: str) -> str:
    return _NON_ALNUM.sub("", key).lower()


def _luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _iban_ok(candidate: str) -> bool:
    if not 15 <= len(candidate) <= 34:
        return False
    rearranged = candidate[4:] + candidate[:4]
    # Letters become 10..35 (A=10), as ISO 13616 prescribes.
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


class Masker:
    """Masks secrets in any structure or text; also a structlog processor.

    Thread-safe: its only mutable state are bounded caches of pure decisions.
    """

    def __init__(self, config: MaskingConfig | None = None) -> None:
        self.config = config or MaskingConfig()
        cfg = self.config
        unknown = set(cfg.disabled_detectors) - set(DETECTORS)
        if unknown:
            raise ValueError(
                f"unknown masking detector(s) {sorted(unknown)}; known: {', '.join(DETECTORS)}"
            )
        self.failures = 0  # internal errors swallowed (the host never sees them)
        self._marker = MASK
        terms = [t for t in (*DEFAULT_DENY_TERMS, *cfg.extra_keys) if _compact(t)]
        self._substring_terms = tuple(
            sorted({_compact(t) for t in terms if len(_compact(t)) > _WORD_TERM_MAX})
        )
        self._word_terms = frozenset(
            _compact(t) for t in terms if len(_compact(t)) <= _WORD_TERM_MAX
        )
        self._allow = frozenset(_compact(k) for k in (*DEFAULT_ALLOW_KEYS, *cfg.allow_keys))
        self._key_cache: dict[str, bool] = {}
        self._clean: set[str] = set()
        self._build_detectors(terms)
        # The plain-text shortcut holds only while no opt-in detector could match plain text.
        self._plain_ok = not cfg.phone_numbers and not cfg.custom_patterns

    # -- configuration ---------------------------------------------------------------------

    def _build_detectors(self, terms: Iterable[str]) -> None:
        cfg = self.config
        enabled = set(DETECTORS) - set(cfg.disabled_detectors)
        if not cfg.phone_numbers:
            enabled.discard("phone")
        self._enabled = frozenset(enabled)
        self._handlers: dict[str, Callable[[re.Match[str]], str]] = {
            f"d_{name}": getattr(self, f"_on_{name}", None) or self._constant(name)
            for name in enabled
            if name != "key_value"
        }
        self._custom: list[str] = []
        for index, (name, regex) in enumerate(cfg.custom_patterns):
            try:
                re.compile(regex)
            except re.error as exc:
                raise ValueError(f"custom masking pattern {name!r} is invalid: {exc}") from exc
            self._custom.append(f"(?P<c{index}>{regex})")
            self._handlers[f"c{index}"] = self._constant(name)
        # Phone numbers and custom regexes need a full look at more strings.
        self._slow_path = bool(self._custom) or "phone" in enabled
        self._patterns: dict[tuple[str, ...], re.Pattern[str]] = {}
        try:  # compile every branch once now, so a bad combination fails at start-up
            self._pattern(tuple(sorted(enabled - {"key_value"})))
        except re.error as exc:  # e.g. a custom pattern reusing one of our group names
            raise ValueError(f"masking patterns do not combine: {exc}") from exc
        # The key=value pass only runs when the lower-cased text holds a piece of some term.
        anchors = {max(t.lower().split("_"), key=len) for t in terms}
        self._kv_gate = (
            re.compile("|".join(sorted(map(re.escape, anchors)))).search
            if "key_value" in enabled
            else None
        )

    def _pattern(self, names: tuple[str, ...]) -> re.Pattern[str]:
        """The combined regex for the detectors whose gates fired (compiled once per set)."""
        pattern = self._patterns.get(names)
        if pattern is None:
            branches = [f"(?P<d_{n}>{_DETECTOR_REGEX[n]})" for n in DETECTORS if n in names]
            pattern = re.compile("|".join(branches + self._custom))
            self._patterns[names] = pattern
        return pattern

    def _gates(self, text: str, classes: str) -> tuple[str, ...]:
        """Detectors that could match `text`; usually none, which skips every regex."""
        encoded_at = "%40" in text
        if (
            "@" not in classes
            and not encoded_at
            and "U" not in classes
            and "=" not in classes
            and _CARD_RUN not in classes
            and "earer" not in text
            and not self._slow_path
        ):
            return ()
        on = self._enabled
        names: list[str] = []
        if "@" in classes and "://" in text and "url_password" in on:
            names.append("url_password")
        if ("@" in classes or encoded_at) and "email" in on:
            names.append("email")
        upper = "U" in classes
        if upper and "eyJ" in text and "jwt" in on:
            names.append("jwt")
        if ("earer" in text or (upper and "EARER" in text)) and "bearer" in on:
            names.append("bearer")
        if upper and ("AKIA" in text or "ASIA" in text) and "aws_access_key" in on:
            names.append("aws_access_key")
        if (
            "=" in classes
            and ("ecret" in text or (upper and "ECRET" in text))
            and "aws_secret_key" in on
        ):
            names.append("aws_secret_key")
        if _CARD_RUN in classes and "card" in on:
            names.append("card")
        if upper and _IBAN_HEAD in classes and "iban" in on:
            names.append("iban")
        if "phone" in on and _PHONE_RUN in classes.replace("p", "d"):
            names.append("phone")
        if self._custom:  # custom regexes have no known gate: always run them
            names.append("custom")
        return tuple(names)

    def _constant(self, kind: str) -> Callable[[re.Match[str]], str]:
        marker = self._kind(kind)
        return lambda _match: marker

    def _kind(self, kind: str) -> str:
        return f"[MASKED:{kind}]"

    # -- keys ------------------------------------------------------------------------------

    def is_sensitive_key(self, key: str) -> bool:
        """True when values under `key` are masked whole (denylisted and not allowlisted)."""
        decision = self._key_cache.get(key)
        if decision is None:
            decision = self._classify_key(key)
            if len(self._key_cache) >= _KEY_CACHE_MAX:
                self._key_cache.clear()  # bounded: unbounded key sets must not grow memory
            self._key_cache[key] = decision
        return decision

    def _classify_key(self, key: str) -> bool:
        compact = _compact(key)
        if not compact or compact in self._allow:
            return False
        if any(term in compact for term in self._substring_terms):
            return True
        words = {w.lower() for w in _KEY_WORDS.findall(key)}
        return not words.isdisjoint(self._word_terms)

    # -- structures ------------------------------------------------------------------------

    def mask(self, value: object) -> object:
        """A masked copy of `value`; unchanged parts (and wholly clean input) are returned as is."""
        try:
            return self._value(value, 0)
        except Exception:
            self.failures += 1
            return self._kind("error")

    def _value(self, value: object, depth: int) -> object:
        if type(value) is str:
            return self._string(value, depth)
        kind = type(value)
        if kind in _SCALARS:
            return value
        if depth >= _MAX_DEPTH:
            return self._kind("depth")
        if isinstance(value, Mapping):
            return self._mapping(value, depth + 1)
        if kind is list or kind is tuple:
            items: list[object] | tuple[object, ...] = value  # type: ignore[assignment]
            masked = [self._value(item, depth + 1) for item in items]
            if all(new is old for new, old in zip(masked, items, strict=True)):
                return value
            return masked if kind is list else tuple(masked)
        if isinstance(value, set | frozenset):
            masked_set = {self._value(item, depth + 1) for item in value}
            return value if masked_set == value else type(value)(masked_set)
        if isinstance(value, bytes | bytearray):
            text = bytes(value).decode("utf-8", "backslashreplace")
            masked_text = self._string(text, depth)
            return value if masked_text is text else masked_text.encode("utf-8")
        if isinstance(value, BaseException):
            # Renderers fall back to str()/repr(); keep the object unless its text leaks.
            message = str(value)
            masked_message = self.mask_text(message)
            if masked_message is message:
                return value
            return f"{type(value).__name__}: {masked_message}"
        return value  # datetimes, UUIDs, Decimals, enums: nothing a detector could find

    def _mapping(self, mapping: Mapping[Any, Any], depth: int) -> Mapping[Any, Any]:
        # The hot path of every log line: the common cases (a known clean string, a number,
        # a key already classified) are decided inline, without a method call per field.
        changed = False
        pairs: list[tuple[Any, object]] = []
        clean = self._clean
        key_cache = self._key_cache
        for key, item in mapping.items():
            if type(key) is str:
                sensitive = key_cache.get(key)
                if sensitive is None:
                    sensitive = self.is_sensitive_key(key)
                if sensitive:
                    new = self._sensitive(item)
                elif type(item) is str:
                    new = item if item in clean else self._string(item, depth)
                elif type(item) in _SCALARS:
                    new = item
                else:
                    new = self._value(item, depth)
                # Keys are data too ({"alice@example.com": 3}); scan them, never mask by key.
                new_key = key if key in clean else self._text(key)
            else:
                new = self._item(key, item, depth)
                new_key = key
            if new is not item or new_key is not key:
                changed = True
            pairs.append((new_key, new))
        return dict(pairs) if changed else mapping

    def _item(self, key: object, item: object, depth: int) -> object:
        if type(key) is str and self.is_sensitive_key(key):
            return self._sensitive(item)
        kind = type(item)
        if kind is str:
            return self._string(item, depth)  # type: ignore[arg-type]
        if kind in _SCALARS:
            return item
        return self._value(item, depth)

    def _sensitive(self, item: object) -> object:
        # None and booleans carry one bit at most ("was a token sent?"); keep them for debugging.
        if item is None or type(item) is bool:
            return item
        if type(item) is str and (
            item == self._marker
            or _PRE_MASKED.fullmatch(item)
            or _PRE_MASKED_COOKIES.fullmatch(item)
        ):
            return item
        return self._marker

    def _string(self, text: str, depth: int) -> str:
        if text in self._clean:
            return text
        first = text[:1]
        if (first == "{" or first == "[") and text[-1:] in ("}", "]"):
            masked_json = self._json_string(text, depth)
            if masked_json is not None:
                return masked_json
        return self._text(text)

    def _json_string(self, text: str, depth: int) -> str | None:
        try:
            parsed = json.loads(text)
        except ValueError:
            return None
        if not isinstance(parsed, dict | list):
            return None
        masked = self._value(parsed, depth + 1)
        if masked is parsed:
            return text  # keep the original formatting when nothing changed
        return json.dumps(masked, ensure_ascii=False, separators=(",", ":"))

    # -- text ------------------------------------------------------------------------------

    def mask_text(self, text: str) -> str:
        """`text` with every detected secret replaced; the same object when nothing matched."""
        try:
            return self._text(text)
        except Exception:
            self.failures += 1
            return self._kind("error")

    def _text(self, text: str) -> str:
        if text in self._clean:
            return text
        if self._plain_ok and _PLAIN.fullmatch(text) and not _DIGIT_RUN.search(text):
            # Lowercase ids, hex, routes, IPs: no detector but the card one can match such
            # text, and cards need a run of 13+ digits. Short texts (keys, names) are cached;
            # long ones are mostly unique ids that would only churn the cache.
            if len(text) < 24:
                self._remember_clean(text)
            return text
        names, pairs = self._plan(text)
        if not names and not pairs:
            self._remember_clean(text)
            return text
        masked = text
        if names:
            masked = self._pattern(names).sub(self._dispatch, masked)
        if pairs:
            masked = self._mask_pairs(masked)
        if masked == text:
            self._remember_clean(text)
            return text
        return masked

    def _plan(self, text: str) -> tuple[tuple[str, ...], bool]:
        """(detectors whose gate fired, whether the key=value pass must run) for `text`."""
        classes = _classes(text)
        kv_gate = self._kv_gate
        pairs = kv_gate is not None and "=" in classes and kv_gate(text.lower()) is not None
        return self._gates(text, classes), pairs

    def _remember_clean(self, text: str) -> None:
        # JSON-looking text may be clean as text yet hold a sensitive key with a nested value.
        if len(text) <= _CLEAN_CACHE_MAX_LEN and text[:1] not in ("{", "["):
            if len(self._clean) >= _CLEAN_CACHE_MAX:
                self._clean.clear()  # bounded: unique ids must not grow memory
            self._clean.add(text)

    def _dispatch(self, match: re.Match[str]) -> str:
        group = match.lastgroup
        if group is None:  # pragma: no cover - every branch is a named group
            return match.group(0)
        return self._handlers[group](match)

    def _mask_pairs(self, text: str) -> str:
        pieces: list[str] = []
        done = 0
        for match in _KV_KEY.finditer(text):
            if match.start() < done or not self.is_sensitive_key(match.group("key")):
                continue
            value = _KV_VALUE.match(text, match.end())
            if value is None:
                continue
            # Keep the quoting style (a quoted key gets a quoted marker) so JSON stays JSON.
            raw, sep = value.group(0), match.group("sep")
            quote = next((q for q in ('\\"', '"', "'") if raw.startswith(q)), "") or next(
                (q for q in ('\\"', '"') if sep.startswith(q)), ""
            )
            pieces += (text[done : match.end()], quote, self._marker, quote)
            done = value.end()
        if not pieces:
            return text
        pieces.append(text[done:])
        return "".join(pieces)

    def _on_url_password(self, match: re.Match[str]) -> str:
        return match.group("url_head") + self._marker

    def _on_bearer(self, match: re.Match[str]) -> str:
        return f"{match.group('bearer_scheme')} {self._kind('bearer')}"

    def _on_aws_secret_key(self, match: re.Match[str]) -> str:
        return match.group("aws_ctx") + self._kind("aws_secret_key")

    def _on_card(self, match: re.Match[str]) -> str:
        return self._mask_card_run(match.group(0))

    def _mask_card_run(self, run: str) -> str:
        # `run` alternates digit groups and single separators; mask the longest Luhn-valid
        # 13-19 digit window of whole groups, then look for more on either side of it.
        parts = _CARD_SPLIT.split(run)
        groups = parts[0::2]
        for size in range(len(groups), 0, -1):
            for first in range(len(groups) - size + 1):
                digits = "".join(groups[first : first + size])
                if 13 <= len(digits) <= 19 and _luhn_ok(digits):
                    head = "".join(parts[: 2 * first])
                    tail = "".join(parts[2 * (first + size) - 1 :])
                    head = self._mask_card_run(head[:-1]) + head[-1:] if head else ""
                    tail = tail[:1] + self._mask_card_run(tail[1:]) if tail else ""
                    return f"{head}{self._kind('card')}{tail}"
        return run

    def _on_iban(self, match: re.Match[str]) -> str:
        text = match.group(0)
        groups = text.split(" ")
        # The regex may swallow a following upper-case word; try the longest valid prefix.
        for end in range(len(groups), 0, -1):
            if _iban_ok("".join(groups[:end])):
                rest = " ".join(groups[end:])
                return self._kind("iban") + (f" {rest}" if rest else "")
        return text

    def _on_phone(self, match: re.Match[str]) -> str:
        digits = sum(ch.isdigit() for ch in match.group(0))
        return self._kind("phone") if 8 <= digits <= 15 else match.group(0)

    # -- headers ---------------------------------------------------------------------------

    def mask_header(self, name: str, value: str) -> str:
        """One header value fit to log: credentials keep at most their last 4 characters."""
        try:
            lowered = name.lower()
            if lowered in _COOKIE_HEADERS:
                return self._mask_cookie(value, only_first=lowered == "set-cookie")
            if self.is_sensitive_key(name):
                scheme, space, credential = value.strip().partition(" ")
                if space and scheme.isalpha():
                    return f"{scheme} {self._tail(credential.strip())}"
                return self._tail(value.strip())
            return self.mask_text(value)
        except Exception:
            self.failures += 1
            return self._kind("error")

    def mask_headers(
        self,
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        logged: frozenset[str] = DEFAULT_LOGGED_HEADERS,
    ) -> dict[str, str]:
        """Only the `logged` headers (lower-cased names), each masked by `mask_header`."""
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        result: dict[str, str] = {}
        for name, value in pairs:
            lowered = name.lower()
            if lowered in logged:
                masked = self.mask_header(lowered, value)
                result[lowered] = f"{result[lowered]}, {masked}" if lowered in result else masked
        return result

    def _tail(self, secret: str) -> str:
        if len(secret) < self.config.header_tail_min_length:
            return self._marker
        return f"[MASKED:last4={secret[-4:]}]"

    def _mask_cookie(self, value: str, *, only_first: bool) -> str:
        parts = [part.strip() for part in value.split(";")]
        masked: list[str] = []
        for index, part in enumerate(parts):
            name, eq, cookie = part.partition("=")
            if eq and (index == 0 or not only_first):
                masked.append(f"{name}={self._tail(cookie)}")
            elif part:
                masked.append(part)
        return "; ".join(masked)

    # -- structlog -------------------------------------------------------------------------

    def __call__(
        self, logger: object, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """structlog processor: masks `event_dict` in place and returns it."""
        # The hot path of every log line: `_item` inlined, caches read directly, and the strings
        # not yet known clean gated together in one pass (per-call overhead dominates here).
        key_cache = self._key_cache
        clean = self._clean
        try:
            changes: list[tuple[str, object]] = []
            pending: list[tuple[str, str]] = []
            for key, item in event_dict.items():
                sensitive = key_cache.get(key)
                if sensitive is None:
                    sensitive = self.is_sensitive_key(key) if type(key) is str else False
                if sensitive:
                    new = self._sensitive(item)
                else:
                    kind = type(item)
                    if kind is str:
                        if item in clean:
                            continue
                        first = item[:1]
                        if first != "{" and first != "[":
                            pending.append((key, item))
                            continue
                        new = self._string(item, 0)
                    elif kind in _SCALARS:
                        continue
                    else:
                        new = self._value(item, 0)
                if new is not item:
                    changes.append((key, new))
            if len(pending) > 1:
                names, pairs = self._plan("\n".join([text for _, text in pending]))
                if not names and not pairs:
                    if len(clean) >= _CLEAN_CACHE_MAX:
                        clean.clear()
                    clean.update([t for _, t in pending if len(t) <= _CLEAN_CACHE_MAX_LEN])
                    pending = []
            for key, text in pending:
                new = self._text(text)
                if new is not text:
                    changes.append((key, new))
            for key, new in changes:
                event_dict[key] = new
        except Exception:
            # Fail closed: a masking bug must not turn into a leak.
            self.failures += 1
            for key, item in list(event_dict.items()):
                if type(item) not in _SCALARS:
                    event_dict[key] = self._kind("error")
        return event_dict


@cache
def default_masker() -> Masker:
    """The process-wide masker with the default policy (built once)."""
    return Masker()
