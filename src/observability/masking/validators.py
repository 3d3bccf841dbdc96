"""Checks that turn a shape into a finding: each follows the format's published rule.

A detector's regex finds text with the right shape; the validator (when the format has one)
decides whether it is the real thing, so ordinary numbers and words are left readable:
Luhn and issuer ranges for cards (ISO/IEC 7812), mod-97 and per-country lengths for IBANs
(ISO 13616), area/group/serial rules for US SSNs (SSA), digit counts for phone numbers
(ITU-T E.164), a JSON header for JWTs (RFC 7519), ``user:password`` for HTTP Basic (RFC 7617),
a numeric snowflake for Discord bot tokens.
"""

from __future__ import annotations

import base64
import binascii
import json
import re

__all__ = [
    "basic_credentials",
    "card_number",
    "card_numbers",
    "discord_bot_token",
    "iban",
    "ibans",
    "jwt",
    "luhn",
    "opaque_token",
    "phone_number",
    "us_ssn",
]

# Lengths of the IBAN of each country of the SWIFT IBAN registry (ISO 13616).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22,
    "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip

# Countries whose BBAN is digits only (SWIFT IBAN registry): a letter there is not an IBAN.
NUMERIC_BBAN = frozenset(
    {
        "AE", "AT", "BA", "BE", "CZ", "DE", "DK", "EE", "ES", "FI", "FO", "GL", "HR", "HU",
        "IL", "LT", "ME", "NO", "PL", "PT", "RS", "SE", "SI", "SK", "TL", "TN", "XK",
    }
)  # fmt: skip

_NOT_DIGIT = re.compile(r"[^0-9]")
_GROUP = re.compile(r"[0-9]+")


def luhn(digits: str) -> bool:
    """The Luhn (mod 10) check digit of ISO/IEC 7812 holds for `digits` (digits only)."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def card_number(digits: str) -> bool:
    """13-19 digits, an issuer range of the payment networks (major industry identifier 2-6:
    Mastercard 2/5, Amex/Diners/JCB 3, Visa 4, Discover/UnionPay/Maestro 6) and Luhn."""
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn(digits)


def card_numbers(run: str) -> list[tuple[int, int]]:
    """Spans of card numbers in a run of digit groups ("4111 1111 1111 1111 2024"): the longest
    window of whole groups that is a card, then the same on either side of it."""
    groups = [m.span() for m in _GROUP.finditer(run)]
    return _card_windows(run, groups)


def _card_windows(run: str, groups: list[tuple[int, int]]) -> list[tuple[int, int]]:
    for size in range(len(groups), 0, -1):
        for first in range(len(groups) - size + 1):
            window = groups[first : first + size]
            digits = "".join(run[start:end] for start, end in window)
            if card_number(digits):
                found = (window[0][0], window[-1][1])
                before = _card_windows(run, groups[:first])
                after = _card_windows(run, groups[first + size :])
                return [*before, found, *after]
    return []


def ibans(text: str) -> list[tuple[int, int]]:
    """The IBAN at the start of `text`: the regex may swallow a following capitalised word
    ("DE89 3704 0044 0532 0130 00 EUR"), so the longest valid prefix of whole groups wins."""
    cuts = [m.start() for m in re.finditer(r"[ \-]", text)] + [len(text)]
    for end in reversed(cuts):
        if iban(re.sub(r"[ \-]", "", text[:end])):
            return [(0, end)]
    return []


def iban(candidate: str) -> bool:
    """An IBAN without separators: known country, its registered length, digits where the
    country's BBAN has only digits, and mod 97 == 1."""
    if IBAN_LENGTHS.get(candidate[:2]) != len(candidate) or not candidate[2:4].isdigit():
        return False
    if candidate[:2] in NUMERIC_BBAN and not candidate[4:].isdigit():
        return False
    rearranged = candidate[4:] + candidate[:4]
    # Letters become 10..35 (A=10), as ISO 13616 prescribes.
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def us_ssn(text: str) -> bool:
    """Area 001-899 except 666, group 01-99, serial 0001-9999 (SSA numbering rules)."""
    digits = _NOT_DIGIT.sub("", text)
    if len(digits) != 9:
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def phone_number(text: str) -> bool:
    """E.164 allows at most 15 digits; national forms with a trunk 0 hold 9-12, and a NANP
    number exactly 10 (11 with the leading 1)."""
    digits = _NOT_DIGIT.sub("", text)
    if text.startswith("+"):
        return 8 <= len(digits) <= 15
    if digits.startswith("0"):
        return 9 <= len(digits) <= 12
    return len(digits) == 10


def _b64decode(segment: str) -> bytes | None:
    padded = segment + "=" * (-len(segment) % 4)
    try:
        return base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
    except (binascii.Error, ValueError):
        return None


def jwt(token: str) -> bool:
    """A JOSE header: the first segment decodes to a JSON object naming `alg` or `enc`."""
    raw = _b64decode(token.split(".", 1)[0])
    if raw is None:
        return False
    try:
        header = json.loads(raw)
    except ValueError:
        # A cut or damaged token still starts with '{"': mask it rather than leak the rest.
        return raw.startswith(b'{"')
    return isinstance(header, dict) and ("alg" in header or "enc" in header)


def basic_credentials(encoded: str) -> bool:
    """HTTP Basic: base64 of ``user:password`` (RFC 7617)."""
    if len(encoded) % 4 == 1:
        return False
    raw = _b64decode(encoded)
    return raw is not None and b":" in raw


def opaque_token(token: str) -> bool:
    """A bearer credential, not an English word: 'bearer authentication' stays readable."""
    return not token.isalpha() or not token.islower()


def discord_bot_token(token: str) -> bool:
    """The first segment is the bot's user id (a snowflake: 17-20 digits) in base64."""
    raw = _b64decode(token.split(".", 1)[0])
    return raw is not None and raw.isdigit() and 17 <= len(raw) <= 20
