"""Which keys hold secrets: a denylist of terms and an allowlist of trusted keys.

A value stored under a sensitive key (``password``, ``X-Api-Key``, ``refreshToken``,
``card_number``...) is replaced whole, whatever its type. Keys are compared case-insensitively
after dropping separators (``X-Api-Key`` -> ``xapikey``). Terms of five or more characters match
as a *substring* of that compact key (``db_password``, ``refreshToken``); shorter terms
(``auth``, ``pwd``, ``pin``, ``pan``, ``ssn``, ``cvv``...) must be a whole *word* of the key
(split on separators and camelCase), because as substrings they hit ordinary words:
``author``, ``span_id``, ``company``, ``class_name``. The allowlist (exact compact keys) wins
over the denylist for known false positives such as ``token_count`` or ``session_count``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["DEFAULT_ALLOW_KEYS", "DEFAULT_DENY_TERMS", "KeyPolicy", "compact_key"]

# Canonical spelling; underscores mark word boundaries where a key may use any separator or none.
DEFAULT_DENY_TERMS: tuple[str, ...] = (
    "password", "passwd", "passphrase", "pass", "pwd", "secret", "token", "api_key",
    "authorization", "auth", "cookie", "session", "sessid", "credential", "private_key",
    "access_key", "signing_key", "encryption_key", "client_secret", "account_key", "ssn",
    "card_number", "credit_card", "cc_number", "cardnum", "pan", "cvv", "cvv2", "cvc", "cvn",
    "pin", "otp", "iban", "csrf", "xsrf", "jwt", "security_code", "dsn", "webhook_url",
    "connection_string", "conn_str", "routing_key", "social_security",
)  # fmt: skip

# Exact keys (compared in compact form) that are never masked by key; values are still scanned.
DEFAULT_ALLOW_KEYS: tuple[str, ...] = (
    "request_id", "trace_id", "span_id", "parent_span_id", "correlation_id", "principal",
    "user_agent", "key_id", "token_count", "token_type", "tokens", "total_tokens",
    "input_tokens", "output_tokens", "session_count", "sessions", "auth_method", "auth_type",
    "auth_provider", "pass_rate",
)  # fmt: skip

_WORD_TERM_MAX = 4  # terms this short only match whole words of a key
_CACHE_MAX = 4096
_NON_ALNUM = re.compile(r"[^0-9A-Za-z]+")
_KEY_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def compact_key(key: str) -> str:
    return _NON_ALNUM.sub("", key).lower()


class KeyPolicy:
    """Decides, once per distinct key (bounded cache), whether its values are masked whole."""

    def __init__(self, extra_terms: Iterable[str] = (), allow_keys: Iterable[str] = ()) -> None:
        terms = [t for t in (*DEFAULT_DENY_TERMS, *extra_terms) if compact_key(t)]
        compact = {compact_key(t) for t in terms}
        self.substring_terms = tuple(sorted(t for t in compact if len(t) > _WORD_TERM_MAX))
        self.word_terms = frozenset(t for t in compact if len(t) <= _WORD_TERM_MAX)
        self.allow = frozenset(compact_key(k) for k in (*DEFAULT_ALLOW_KEYS, *allow_keys))
        # A piece of every term: text that holds none of them holds no sensitive key.
        self.anchors = tuple(sorted({max(t.lower().split("_"), key=len) for t in terms}))
        self.cache: dict[str, bool] = {}

    def is_sensitive(self, key: str) -> bool:
        decision = self.cache.get(key)
        if decision is None:
            decision = self._classify(key)
            if len(self.cache) >= _CACHE_MAX:
                self.cache.clear()  # bounded: unbounded key sets must not grow memory
            self.cache[key] = decision
        return decision

    def _classify(self, key: str) -> bool:
        compact = compact_key(key)
        if not compact or compact in self.allow:
            return False
        if any(term in compact for term in self.substring_terms):
            return True
        words = {w.lower() for w in _KEY_WORDS.findall(key)}
        return not words.isdisjoint(self.word_terms)
