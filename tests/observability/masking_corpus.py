"""Fresh fake values of every catalog family, built from each format's published description,
not from the masker's regexes (tests use them to check the masker, so they must not share its
assumptions). Every call draws new values from `rng`.

Sources of the formats: GitHub "Behind GitHub's new authentication token formats" (prefix +
base62, fine-grained ``github_pat_`` + 82 characters), GitLab token prefixes, AWS IAM access
key ids (20 upper-case base32, ``AKIA``/``ASIA``), Google API keys (``AIza`` + 35) and OAuth
client secrets (``GOCSPX-``), Azure storage keys (64 random bytes, base64) and SAS tokens
(``sv=...&sig=``), Stripe API keys (``sk_live_``), Slack tokens (``xoxb-`` + numeric team and
bot ids + secret) and webhook URLs, Discord bot tokens (base64 user id . timestamp . HMAC) and
webhook URLs, OpenAI project keys (``sk-proj-``), Anthropic keys (``sk-ant-api03-``), npm
tokens (``npm_`` + 36), PyPI tokens (``pypi-`` + a macaroon for pypi.org), SendGrid keys
(``SG.`` + 22 + ``.`` + 43), Mailgun keys (``key-`` + 32 hex), PEM (RFC 7468), JWT (RFC 7519),
HTTP Basic (RFC 7617); ISO/IEC 7812 card ranges and Luhn, ISO 13616 IBANs (BBAN lengths from
the SWIFT registry), SSA SSN rules, ITU-T E.164 and national phone plans.
"""

from __future__ import annotations

import base64
import json
import random
import string
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["FAMILIES", "Secret", "draw"]

BASE62 = string.ascii_letters + string.digits
URLSAFE = BASE62 + "-_"
HEX = "0123456789abcdef"
B64 = BASE62 + "+/"


@dataclass(frozen=True)
class Secret:
    family: str
    text: str  # as it would be written in a log line
    # Pieces that must never reach a sink (the whole value, or the part that is secret).
    pieces: tuple[str, ...]


def _pick(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _luhn_complete(rng: random.Random, prefix: str, length: int) -> str:
    body = prefix + _pick(rng, string.digits, length - len(prefix) - 1)
    total = 0
    for index, char in enumerate(reversed(body)):
        value = int(char)
        if index % 2 == 0:  # these positions are doubled once the check digit is appended
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return body + str((10 - total % 10) % 10)


def _token(family: str, value: str, keep_tail: bool = True) -> Secret:
    # The marker may keep the last 4 characters: everything before them is secret.
    return Secret(family, value, (value[:-4] if keep_tail else value,))


def github(rng: random.Random) -> Secret:
    return _token("github", rng.choice(("ghp_", "gho_", "ghs_", "ghu_")) + _pick(rng, BASE62, 36))


def github_fine_grained(rng: random.Random) -> Secret:
    return _token("github", "github_pat_" + _pick(rng, BASE62, 22) + "_" + _pick(rng, BASE62, 59))


def gitlab(rng: random.Random) -> Secret:
    return _token("gitlab", rng.choice(("glpat-", "gldt-", "glrt-")) + _pick(rng, URLSAFE, 20))


def aws(rng: random.Random) -> Secret:
    key_id = rng.choice(("AKIA", "ASIA")) + _pick(rng, string.ascii_uppercase + "234567", 16)
    return _token("aws", key_id)


def gcp(rng: random.Random) -> Secret:
    if rng.random() < 0.5:
        return _token("gcp", "AIza" + _pick(rng, URLSAFE, 35))
    return _token("gcp", "GOCSPX-" + _pick(rng, URLSAFE, 28))


def azure_connection_string(rng: random.Random) -> Secret:
    key = base64.b64encode(rng.randbytes(64)).decode()
    account = _pick(rng, string.ascii_lowercase, 10)
    text = (
        f"DefaultEndpointsProtocol=https;AccountName={account};AccountKey={key};"
        "EndpointSuffix=core.windows.net"
    )
    return Secret("azure", text, (key[:40],))


def azure_sas(rng: random.Random) -> Secret:
    signature = base64.b64encode(rng.randbytes(32)).decode()
    encoded = signature.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
    text = (
        f"https://{_pick(rng, string.ascii_lowercase, 8)}.blob.core.windows.net/c/f.csv?"
        f"sv=2022-11-02&ss=b&srt=o&sp=r&se=2031-01-01T00:00:00Z&spr=https&sig={encoded}"
    )
    return Secret("azure", text, (encoded[:-6], signature[:-4]))


def stripe(rng: random.Random) -> Secret:
    return _token("stripe", rng.choice(("sk_live_", "rk_live_")) + _pick(rng, BASE62, 99))


def slack_token(rng: random.Random) -> Secret:
    team, bot = _pick(rng, string.digits, 12), _pick(rng, string.digits, 13)
    return _token("slack", f"xoxb-{team}-{bot}-{_pick(rng, BASE62, 24)}")


def slack_webhook(rng: random.Random) -> Secret:
    path = f"T{_pick(rng, string.ascii_uppercase + string.digits, 8)}/B{_pick(rng, string.ascii_uppercase + string.digits, 10)}/{_pick(rng, BASE62, 24)}"  # noqa: E501
    return Secret("slack", f"https://hooks.slack.com/services/{path}", (path.split("/")[-1],))


def discord_bot(rng: random.Random) -> Secret:
    user_id = str(rng.randrange(10**17, 10**19))
    first = base64.urlsafe_b64encode(user_id.encode()).decode().rstrip("=")
    token = f"{first}.{_pick(rng, URLSAFE, 6)}.{_pick(rng, URLSAFE, 38)}"
    return _token("discord", token)


def discord_webhook(rng: random.Random) -> Secret:
    secret = _pick(rng, URLSAFE, 68)
    url = f"https://discord.com/api/webhooks/{rng.randrange(10**17, 10**19)}/{secret}"
    return Secret("discord", url, (secret[:-4],))


def openai(rng: random.Random) -> Secret:
    return _token("openai", "sk-proj-" + _pick(rng, URLSAFE, 156))


def anthropic(rng: random.Random) -> Secret:
    return _token("anthropic", "sk-ant-api03-" + _pick(rng, URLSAFE, 93) + "AA")


def npm(rng: random.Random) -> Secret:
    return _token("npm", "npm_" + _pick(rng, BASE62, 36))


def pypi(rng: random.Random) -> Secret:
    macaroon = base64.urlsafe_b64encode(b"\x02\x01\x08pypi.org" + rng.randbytes(120)).decode()
    return _token("pypi", "pypi-" + macaroon.rstrip("="))


def sendgrid(rng: random.Random) -> Secret:
    return _token("sendgrid", f"SG.{_pick(rng, URLSAFE, 22)}.{_pick(rng, URLSAFE, 43)}")


def mailgun(rng: random.Random) -> Secret:
    return _token("mailgun", "key-" + _pick(rng, HEX, 32))


def pem(rng: random.Random) -> Secret:
    kind = rng.choice(("RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"))
    body = base64.b64encode(rng.randbytes(180)).decode()
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    text = f"-----BEGIN {kind}-----\n{lines}\n-----END {kind}-----"
    return Secret("pem", text, tuple(body[i : i + 40] for i in range(0, len(body) - 40, 40)))


def dsn(rng: random.Random) -> Secret:
    password = _pick(rng, BASE62, 14)
    scheme = rng.choice(("postgresql", "mysql", "redis", "amqp", "mongodb+srv"))
    text = f"{scheme}://app_{_pick(rng, string.ascii_lowercase, 4)}:{password}@db.internal:5432/x"
    return Secret("dsn", text, (password,))


def jwt(rng: random.Random) -> Secret:
    def segment(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    header = segment({"alg": rng.choice(("HS256", "RS256", "ES256")), "typ": "JWT"})
    payload = segment({"sub": _pick(rng, BASE62, 12), "iat": rng.randrange(1_600_000_000, 2**31)})
    signature = _pick(rng, URLSAFE, 43)
    return Secret("jwt", f"{header}.{payload}.{signature}", (payload, signature))


def bearer(rng: random.Random) -> Secret:
    token = _pick(rng, URLSAFE + ".~", 40)
    return Secret("bearer", f"Authorization: Bearer {token}", (token[:-4],))


def basic(rng: random.Random) -> Secret:
    user, password = _pick(rng, string.ascii_lowercase, 6), _pick(rng, BASE62, 12)
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return Secret("basic", f"Authorization: Basic {encoded}", (encoded,))


def email(rng: random.Random) -> Secret:
    local = rng.choice(("jane.doe", "j.smith", "ops+alerts", "x_y")) + str(rng.randrange(100))
    domain = rng.choice(("example.com", "mail.example.co.uk", "corp-mail.example.org"))
    return Secret("email", f"{local}@{domain}", (f"{local}@", local))


_CARD_RANGES = (  # (prefix, length): Visa, Mastercard (both ranges), Amex, Discover, JCB, UnionPay
    ("4", 16), ("4", 13), ("4", 19), ("51", 16), ("55", 16), ("2221", 16), ("2720", 16),
    ("34", 15), ("37", 15), ("6011", 16), ("65", 16), ("3528", 16), ("62", 18),
)  # fmt: skip


def card(rng: random.Random) -> Secret:
    prefix, length = rng.choice(_CARD_RANGES)
    digits = _luhn_complete(rng, prefix, length)
    separator = rng.choice(("", " ", "-", ".", " - "))
    if length == 15:
        groups = [digits[:4], digits[4:10], digits[10:]]
    else:
        groups = [digits[i : i + 4] for i in range(0, length, 4)]
    text = separator.join(groups)
    formatted = (text[: -4 - len(separator)],) if separator else ()
    return Secret("card", text, (digits[:-4], *formatted))


# BBAN formats (SWIFT IBAN registry): n digits, a upper-case letters, c alphanumerics.
_BBAN = {
    "DE": "18n", "FR": "10n11c2n", "GB": "4a14n", "ES": "20n", "IT": "1a10n12c", "NL": "4a10n",
    "BE": "12n", "CH": "5n12c", "PL": "24n", "SE": "20n",
}  # fmt: skip


def iban(rng: random.Random) -> Secret:
    country = rng.choice(sorted(_BBAN))
    spec = _BBAN[country]
    bban, number = "", ""
    for char in spec:
        if char.isdigit():
            number += char
            continue
        alphabet = {"n": string.digits, "a": string.ascii_uppercase}.get(
            char, string.digits + string.ascii_uppercase
        )
        bban += _pick(rng, alphabet, int(number))
        number = ""
    numeric = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    check = 98 - int(numeric) % 97
    value = f"{country}{check:02d}{bban}"
    if rng.random() < 0.5:
        value = " ".join(value[i : i + 4] for i in range(0, len(value), 4))
    return Secret("iban", value, (value[4:-4],))


def ssn(rng: random.Random) -> Secret:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    text = f"{area:03d}-{rng.randrange(1, 100):02d}-{rng.randrange(1, 10000):04d}"
    return Secret("ssn", text, (text,))


def phone(rng: random.Random) -> Secret:
    form = rng.randrange(6)
    if form == 0:  # E.164, France
        digits = f"{rng.choice('67')}{_pick(rng, string.digits, 8)}"
        text = f"+33 {digits[0]} " + " ".join(digits[i : i + 2] for i in range(1, 9, 2))
    elif form == 1:  # E.164 without spaces, UK mobile
        text = f"+447{_pick(rng, string.digits, 9)}"
    elif form == 2:  # NANP national
        text = f"({rng.randrange(201, 990)}) {rng.randrange(201, 999)}-{rng.randrange(10000):04d}"
    elif form == 3:  # NANP with dashes
        text = f"{rng.randrange(201, 990)}-{rng.randrange(201, 999)}-{rng.randrange(10000):04d}"
    elif form == 4:  # UK national
        text = f"020 {rng.randrange(7000, 8999)} {rng.randrange(10000):04d}"
    else:  # France national
        text = (
            "0" + rng.choice("67") + " " + " ".join(_pick(rng, string.digits, 2) for _ in range(4))
        )
    return Secret("phone", text, (text,))


FAMILIES: dict[str, Callable[[random.Random], Secret]] = {
    "github": github, "github_fine_grained": github_fine_grained, "gitlab": gitlab, "aws": aws,
    "gcp": gcp, "azure_connection_string": azure_connection_string, "azure_sas": azure_sas,
    "stripe": stripe, "slack_token": slack_token, "slack_webhook": slack_webhook,
    "discord_bot": discord_bot, "discord_webhook": discord_webhook, "openai": openai,
    "anthropic": anthropic, "npm": npm, "pypi": pypi, "sendgrid": sendgrid, "mailgun": mailgun,
    "pem": pem, "dsn": dsn, "jwt": jwt, "bearer": bearer, "basic": basic, "email": email,
    "card": card, "iban": iban, "ssn": ssn, "phone": phone,
}  # fmt: skip


def draw(rng: random.Random, family: str | None = None) -> Secret:
    """A fresh value of `family` (any family when None)."""
    return FAMILIES[family or rng.choice(sorted(FAMILIES))](rng)
