"""`Masker`: one policy applied to any value (log events, error contexts, Sentry events,
notification texts, headers), built on the key policy (`keys.py`) and the engine (`engine.py`).

Rules:
- a value under a sensitive key is replaced whole (`[MASKED]`), whatever its type, in dicts
  nested in lists, tuples and JSON strings; so is the value of a name/value pair whose name is
  sensitive (``{"name": "X-Api-Key", "value": ...}``, ``("authorization", b"Bearer ...")``);
- every other string (messages, field values, exception text, URLs, dict keys) goes through
  the engine: catalog formats become ``[MASKED:<detector>]``, some with a ``:last4=`` hint;
- non-secret values come back as the very same objects (numbers, datetimes, clean strings),
  and a structure with nothing to mask is returned as is.

Not scanned: ints and floats (a card number stored as an int under an innocent key passes, as
scanning numbers would mask epoch milliseconds). Telemetry never raises into its host:
internal errors are counted in `Masker.failures` and the result fails closed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

from observability.masking.catalog import CATALOG, KEY_VALUE, Detector
from observability.masking.engine import MASK, Engine, Finding
from observability.masking.keys import KeyPolicy

__all__ = ["MASK", "Masker", "MaskingConfig", "default_masker"]

_CLEAN_CACHE_MAX = 8192
_CLEAN_CACHE_MAX_LEN = 256
_MAX_DEPTH = 32  # deeper structures are masked wholesale rather than walked (cycles, abuse)
_Event = TypeVar("_Event", bound=MutableMapping[str, Any])
_SCALARS = (int, float, bool, type(None))
_FLAT = frozenset((str, *_SCALARS))  # values the event hot path decides without a walk
_KEY_CACHE_MAX = 4096
_PAIR_NAMES = ("name", "key", "header", "field")  # {"name": <key>, "value": <value>} shapes
# Markers a previous pass produced (a header's last-4 hint, a detector's): kept as they are.
_MARKER = r"\[MASKED(?::[a-z0-9_]{1,40})?(?::?last4=[^\]\s]{1,4})?\]"
_PRE_MASKED = re.compile(rf"(?:[A-Za-z][A-Za-z0-9-]{{0,30}} )?{_MARKER}")
_PRE_MASKED_COOKIES = re.compile(rf"(?:[^=;\s]{{1,64}}={_MARKER}(?:; |$))+")
_COOKIE_HEADERS = frozenset({"cookie", "set-cookie"})


@dataclass(frozen=True)
class MaskingConfig:
    """What to mask beyond the defaults. Immutable: build a new `Masker` to change it."""

    extra_keys: tuple[str, ...] = ()
    allow_keys: tuple[str, ...] = ()
    disabled_detectors: frozenset[str] = frozenset()
    custom_patterns: tuple[tuple[str, str], ...] = ()  # (name, regex); scoped flags only
    header_tail_min_length: int = 12  # credentials shorter than this show no trailing chars


def _detectors(config: MaskingConfig) -> list[Detector]:
    known = {d.name for d in CATALOG}
    unknown = set(config.disabled_detectors) - known
    if unknown:
        raise ValueError(
            f"unknown masking detector(s) {sorted(unknown)}; known: {', '.join(sorted(known))}"
        )
    chosen = [d for d in CATALOG if d.name not in config.disabled_detectors]
    for name, regex in config.custom_patterns:
        try:
            re.compile(regex)
        except re.error as exc:
            raise ValueError(f"custom masking pattern {name!r} is invalid: {exc}") from exc
        # No prefilter is known for a custom regex: it runs on every text (slower). Before
        # the key=value row, so a custom format under a sensitive key keeps its own name.
        names = [d.name for d in chosen]
        at = names.index(KEY_VALUE) if KEY_VALUE in names else len(chosen)
        chosen.insert(at, Detector(name, "credential", regex))
    return chosen


class Masker:
    """Masks secrets in any structure or text. Thread-safe: its only mutable state are
    bounded caches of pure decisions."""

    def __init__(self, config: MaskingConfig | None = None) -> None:
        self.config = config or MaskingConfig()
        self.keys = KeyPolicy(self.config.extra_keys, self.config.allow_keys)
        self.engine = Engine(_detectors(self.config), self.keys)
        self.detectors = tuple(d.name for d in self.engine.detectors)
        self.failures = 0  # internal errors swallowed (the host never sees them)
        self._clean: set[str] = {MASK}
        self._previous: set[str] = set()
        self._plain_keys: set[Any] = set()  # keys known not to be sensitive (bounded)

    # -- public API ------------------------------------------------------------------------

    def mask(self, value: object) -> object:
        """A masked copy of `value`; unchanged parts (and wholly clean input) are returned as is."""
        try:
            return self._value(value, 0)
        except Exception:
            self.failures += 1
            return "[MASKED:error]"

    def mask_text(self, text: str) -> str:
        """`text` with every detected secret replaced; the same object when nothing matched."""
        try:
            return self._string(text, 0)
        except Exception:
            self.failures += 1
            return "[MASKED:error]"

    def mask_event(self, event: _Event) -> _Event:
        """The log pipeline's hook: masks a log event IN PLACE and returns it.

        The strings not yet known clean go through the engine's prefilter together, once:
        per-call overhead dominates on short values."""
        try:
            self._mask_event(event)
        except Exception:
            # Fail closed: a masking bug must not turn into a leak.
            self.failures += 1
            for key, item in list(event.items()):
                if type(item) not in _SCALARS:
                    event[key] = "[MASKED:error]"
        return event

    def __call__(
        self, logger: object, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """A structlog processor, for apps that keep their own structlog chain."""
        return self.mask_event(event_dict)

    def findings(self, text: str) -> list[Finding]:
        """Where `text` holds catalog values (for audits); secrets themselves are not returned."""
        return self.engine.findings(text)

    def is_sensitive_key(self, key: str) -> bool:
        """True when values under `key` are masked whole (denylisted and not allowlisted)."""
        return self.keys.is_sensitive(key)

    def mask_header(self, name: str, value: str) -> str:
        """One header value fit to log: credentials keep at most their last 4 characters."""
        try:
            lowered = name.lower()
            if lowered in _COOKIE_HEADERS:
                return self._mask_cookie(value, only_first=lowered == "set-cookie")
            if self.keys.is_sensitive(name):
                scheme, space, credential = value.strip().partition(" ")
                if space and scheme.isalpha():
                    return f"{scheme} {self._tail(credential.strip())}"
                return self._tail(value.strip())
            return self._string(value, 0)
        except Exception:
            self.failures += 1
            return "[MASKED:error]"

    # -- events ----------------------------------------------------------------------------

    def _known_clean(self, event: dict[str, Any]) -> bool:
        """Every key known plain and every value a scalar or a string known clean: the
        usual log line (a request line's method and path, a header's user agent), decided in
        one loop that the compiled build runs natively (the general path below costs ~3x)."""
        plain, clean, previous = self._plain_keys, self._clean, self._previous
        for key, value in event.items():
            if key not in plain:
                return False
            kind = type(value)
            if kind is str:
                if value not in clean and value not in previous:
                    return False
            elif kind not in _FLAT:
                return False
        return True

    def _mask_event(self, event: MutableMapping[str, Any]) -> None:
        if type(event) is dict and self._known_clean(event):
            return
        # The general path, written for CPython: set operations and comprehensions run in C,
        # a statement per field would not.
        if not event.keys() <= self._plain_keys:
            self._mask_sensitive_keys(event)
        clean, previous = self._clean, self._previous
        # One pass: strings not known clean, and values that need a walk (dicts, lists...).
        todo = [
            (key, value)
            for key, value in event.items()
            if (type(value) is str and value not in clean and value not in previous)
            or type(value) not in _FLAT
        ]
        if not todo:
            return
        pending = [(key, value) for key, value in todo if type(value) is str]
        if pending:
            texts = [text for _, text in pending]
            suspects = self.engine.suspects(texts)
            for index in suspects:
                key, text = pending[index]
                masked = self._string(text, 0, suspected=True)
                if masked is not text:
                    event[key] = masked
            if suspects:
                texts = [t for i, t in enumerate(texts) if i not in suspects]
            self._remember_clean(texts)
        if len(pending) < len(todo):
            for key, value in todo:
                if type(value) is not str:
                    masked_value = self._value(value, 0)
                    if masked_value is not value:
                        event[key] = masked_value

    def _mask_sensitive_keys(self, event: MutableMapping[str, Any]) -> None:
        for key in event.keys() - self._plain_keys:
            if type(key) is str and self.keys.is_sensitive(key):
                event[key] = self._sensitive(event[key])
            elif len(self._plain_keys) < _KEY_CACHE_MAX:
                self._plain_keys.add(key)

    # -- structures ------------------------------------------------------------------------

    def _value(self, value: object, depth: int) -> object:
        kind = type(value)
        if kind is str:
            return self._string(value, depth)  # type: ignore[arg-type]
        if kind in _SCALARS:
            return value
        if depth >= _MAX_DEPTH:
            return "[MASKED:depth]"
        if isinstance(value, Mapping):
            return self._mapping(value, depth + 1)
        if kind is list or kind is tuple:
            return self._sequence(value, depth + 1)  # type: ignore[arg-type]
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
            masked_message = self._string(message, depth)
            if masked_message is message:
                return value
            return f"{type(value).__name__}: {masked_message}"
        return value  # datetimes, UUIDs, Decimals, enums: nothing a detector could find

    def _mapping(self, mapping: Mapping[Any, Any], depth: int) -> Mapping[Any, Any]:
        named = self._pair_name(mapping)
        changed = False
        pairs: list[tuple[Any, object]] = []
        for key, item in mapping.items():
            if type(key) is str and (self.keys.is_sensitive(key) or (named and key == "value")):
                new: object = self._sensitive(item)
            else:
                new = self._value(item, depth)
            # Keys are data too ({"alice@example.com": 3}): scanned, never masked by key.
            new_key = self._string(key, depth) if type(key) is str else key
            if new is not item or new_key is not key:
                changed = True
            pairs.append((new_key, new))
        return dict(pairs) if changed else mapping

    def _pair_name(self, mapping: Mapping[Any, Any]) -> bool:
        if "value" not in mapping:
            return False
        for name in _PAIR_NAMES:
            candidate = mapping.get(name)
            if isinstance(candidate, str) and self.keys.is_sensitive(candidate):
                return True
        return False

    def _sequence(self, items: list[object] | tuple[object, ...], depth: int) -> object:
        if len(items) == 2 and isinstance(items[0], str | bytes) and self._is_key(items[0]):
            masked: list[object] = [items[0], self._sensitive(items[1])]  # ("password", "x")
        else:
            masked = [self._value(item, depth) for item in items]
        if all(new is old for new, old in zip(masked, items, strict=True)):
            return items
        return masked if type(items) is list else tuple(masked)

    def _is_key(self, name: str | bytes) -> bool:
        text = name.decode("latin-1") if isinstance(name, bytes) else name
        return 0 < len(text) <= 64 and " " not in text and self.keys.is_sensitive(text)

    def _sensitive(self, item: object) -> object:
        # None and booleans carry one bit at most ("was a token sent?"); keep them for debugging.
        if item is None or type(item) is bool:
            return item
        if type(item) is str and (
            item == MASK or _PRE_MASKED.fullmatch(item) or _PRE_MASKED_COOKIES.fullmatch(item)
        ):
            return item
        return MASK

    def _string(self, text: str, depth: int, *, suspected: bool = False) -> str:
        if text in self._clean or text in self._previous:
            return text
        first = text[:1]
        if (first == "{" or first == "[") and text[-1:] in ("}", "]"):
            masked_json = self._json_string(text, depth)
            if masked_json is not None:
                return masked_json
        masked = self.engine.mask(text, suspected=suspected)
        if masked is text:
            self._remember_clean([text])
        return masked

    def _json_string(self, text: str, depth: int) -> str | None:
        try:
            parsed = json.loads(text)
        except ValueError:
            return None
        if not isinstance(parsed, dict | list):
            return None
        masked = self._value(parsed, depth + 1)
        if masked is parsed:
            return self.engine.mask(text)  # e.g. a secret in a key or a bare number
        return json.dumps(masked, ensure_ascii=False, separators=(",", ":"))

    def _remember_clean(self, texts: list[str]) -> None:
        # Two generations: when the current one is full it becomes the previous one, so a
        # value that repeats (a path, a user id) survives the churn of unique ids.
        if len(self._clean) >= _CLEAN_CACHE_MAX:
            self._previous, self._clean = self._clean, set()
        if sum(map(len, texts)) <= _CLEAN_CACHE_MAX_LEN:
            self._clean.update(texts)
        else:  # long texts (messages, bodies) rarely repeat: they are not kept
            self._clean.update([t for t in texts if len(t) <= _CLEAN_CACHE_MAX_LEN])

    # -- headers ---------------------------------------------------------------------------

    def _tail(self, secret: str) -> str:
        if len(secret) < self.config.header_tail_min_length:
            return MASK
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


@cache
def default_masker() -> Masker:
    """The process-wide masker with the default policy (built once)."""
    return Masker()
