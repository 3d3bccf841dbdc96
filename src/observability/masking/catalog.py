"""The detector catalog: every value the masker recognises, one row each.

A row is data: a name (shown in the marker, ``[MASKED:github_token]``), a regex, a cheap
prefilter (literal ``anchors`` one of which occurs in every match, or a ``gate`` regex for
formats without a fixed literal, such as card numbers), an optional validator (the format's own
rule: Luhn, IBAN mod-97, SSN area rules, JWT header...) and whether the replacement may keep
the last four characters as a hint. The engine (`engine.py`) compiles the table once; nothing
else knows about individual formats.

Conventions of a row's regex:
- a group ``secret`` marks the part replaced (the rest of the match is context kept in the
  line, e.g. ``Bearer `` or ``postgres://app:``); without it, the whole match is replaced;
- repeats are bounded and a look-behind keeps a match from starting inside a longer token, so
  no input makes a regex slow and an id that merely contains a prefix is not cut;
- the regex sees the text as logged and its decoded forms (percent, plus and JSON escapes):
  write it for the decoded form.

To add a format: add one `Detector` to `CATALOG` below (most specific formats first: on overlap
the earlier row names the finding), a fake example to `tests/observability/masking_corpus.py`,
and a line to the table in docs/logging-standards.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from observability.masking import validators

__all__ = ["CATALOG", "KEY_VALUE", "Detector", "Family"]

Family = Literal["credential", "pii", "structure"]
Validator = Callable[["re.Match[str]"], bool]

# A token character class and the boundary that keeps a match from starting or ending in the
# middle of a longer token.
_T = r"A-Za-z0-9_\-"
_START = r"(?<![A-Za-z0-9])"
_END = rf"(?![{_T}])"


@dataclass(frozen=True)
class Detector:
    name: str
    family: Family
    pattern: str
    # The prefilter: literals one of which occurs in every match, or else a gate: regexes for
    # the start of every match, which always follows a character that is not a letter or
    # digit (or the start of the text); each begins with a literal character or a character
    # class. Neither: the detector runs on every text (slow).
    anchors: tuple[str, ...] = ()
    # True: every match starts with one of the anchors, right after a character that is not
    # a letter or digit (or at the start). False: an anchor sits inside the match ("@" of an
    # e-mail address) and must hold such a character.
    anchored_start: bool = True
    gate: tuple[str, ...] = ()
    validator: Validator | None = None
    # Finds the secrets inside a validated match (card numbers inside a run of digit groups).
    locate: Callable[[str], list[tuple[int, int]]] | None = None
    hint: bool = False  # the replacement keeps the last 4 characters of a long secret
    summary: str = ""

    def secret(self, match: re.Match[str]) -> tuple[int, int]:
        """The span of `match` that is replaced."""
        if "secret" in match.re.groupindex and match.group("secret") is not None:
            return match.span("secret")
        return match.span()


def _secret_is(check: Callable[[str], bool]) -> Validator:
    def validate(match: re.Match[str]) -> bool:
        group = "secret" if "secret" in match.re.groupindex else 0
        return check(match.group(group))

    return validate


_URL_USERINFO = re.compile(r"://[^\s/@]{0,128}:$")


def _not_url_userinfo(match: re.Match[str]) -> bool:
    # In scheme://user:password@host the password is url_password's, not an e-mail's local part.
    return _URL_USERINFO.search(match.string, max(0, match.start() - 140), match.start()) is None


# The key=value detector: the engine checks the key against the key policy (keys.py).
KEY_VALUE = "key_value"
_KV_VALUE = (
    r"\"(?:[^\"\\\n]|\\.){0,1024}\"|'[^'\n]{0,1024}'|\\\"(?:[^\"\\]|\\[^\"]){0,1024}\\\""
    r"|(?:(?:[Bb]earer|BEARER|[Bb]asic|BASIC|[Dd]igest|[Tt]oken|[Bb]ot)[ ]+)?"
    r"[^\s&;,\"'<>()\[\]{}]{1,1024}"
)

_GITLAB_PREFIXES = (
    "glpat-", "gldt-", "glptt-", "glrt-", "glcbt-", "glsoat-", "glffct-", "gloas-", "glimt-",
    "glagent-", "glft-", "glwt-", "GR1348941",
)  # fmt: skip

CATALOG: tuple[Detector, ...] = (
    # -- structure: whole blocks -----------------------------------------------------------
    Detector(
        "private_key",
        "credential",
        r"-----BEGIN[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----(?:[\s\S]{0,16384}?"
        r"-----END[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----|[\s\S]{0,16384})",
        anchors=("-----BEGIN",),
        summary="PEM private keys (RSA, EC, OpenSSH, PKCS#8, PGP), to the END line or the end",
    ),
    Detector(
        "sql_parameters",
        "structure",
        r"\[parameters: (?P<secret>[^\n]{1,65536})",
        anchors=("[parameters: ",),
        summary="SQLAlchemy's [parameters: ...] in exception messages (the statement is kept)",
    ),
    # -- cloud providers -------------------------------------------------------------------
    Detector(
        "aws_access_key",
        "credential",
        r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}(?![A-Za-z0-9])",
        anchors=("AKIA", "ASIA", "ABIA", "ACCA", "A3T"),
        hint=True,
        summary="AWS access key ids",
    ),
    Detector(
        "gcp_api_key",
        "credential",
        rf"{_START}AIza[{_T}]{{35,64}}{_END}",
        anchors=("AIza",),
        hint=True,
        summary="Google Cloud / Firebase API keys",
    ),
    Detector(
        "gcp_oauth_secret",
        "credential",
        rf"{_START}GOCSPX-[{_T}]{{24,100}}{_END}",
        anchors=("GOCSPX-",),
        hint=True,
        summary="Google OAuth client secrets",
    ),
    Detector(
        "gcp_access_token",
        "credential",
        rf"{_START}ya29\.[{_T}.]{{20,2048}}",
        anchors=("ya29.",),
        hint=True,
        summary="Google OAuth access tokens",
    ),
    Detector(
        "azure_storage_key",
        "credential",
        r"(?<![A-Za-z0-9])(?:AccountKey|SharedAccessKey|SharedKey)=(?P<secret>[A-Za-z0-9+/]{20,120}={0,2})",
        anchors=("AccountKey=", "SharedAccessKey=", "SharedKey="),
        summary="Azure storage / Service Bus / Event Hubs keys in connection strings",
    ),
    Detector(
        "azure_sas_signature",
        "credential",
        r"(?<![A-Za-z0-9_])sig=(?P<secret>[A-Za-z0-9%+/=]{20,256})",
        anchors=("sig=",),
        summary="the signature of Azure shared access signature (SAS) URLs and tokens",
    ),
    Detector(
        "azure_client_secret",
        "credential",
        r"(?<![A-Za-z0-9_~.\-])[A-Za-z0-9_~.\-]{3}[0-9]Q~[A-Za-z0-9_~.\-]{31,34}"
        r"(?![A-Za-z0-9_~.\-])",
        anchors=("Q~",),
        anchored_start=False,
        hint=True,
        summary="Microsoft Entra ID (Azure AD) client secrets",
    ),
    # -- version control -------------------------------------------------------------------
    Detector(
        "github_token",
        "credential",
        r"(?<![A-Za-z0-9])gh[pousr]_[A-Za-z0-9]{36,251}(?![A-Za-z0-9])",
        anchors=("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
        hint=True,
        summary="GitHub classic, OAuth, user-to-server, server-to-server and refresh tokens",
    ),
    Detector(
        "github_fine_grained_token",
        "credential",
        r"(?<![A-Za-z0-9])github_pat_[A-Za-z0-9_]{22,255}(?![A-Za-z0-9_])",
        anchors=("github_pat_",),
        hint=True,
        summary="GitHub fine-grained personal access tokens",
    ),
    Detector(
        "gitlab_token",
        "credential",
        rf"{_START}(?:gl(?:pat|dt|ptt|rt|cbt|soat|ffct|oas|imt|agent|ft|wt)-|GR1348941)"
        rf"[{_T}]{{20,255}}(?:\.[{_T}]{{2,64}}){{0,3}}{_END}",
        anchors=_GITLAB_PREFIXES,
        hint=True,
        summary="GitLab personal, deploy, trigger, runner, CI job and other tokens",
    ),
    # -- payment ---------------------------------------------------------------------------
    Detector(
        "stripe_key",
        "credential",
        r"(?<![A-Za-z0-9])(?:(?:sk|rk)_(?:live|test|prod)_[A-Za-z0-9]{10,247}"
        r"|whsec_[A-Za-z0-9]{24,247})(?![A-Za-z0-9])",
        anchors=("sk_live_", "sk_test_", "sk_prod_", "rk_live_", "rk_test_", "rk_prod_", "whsec_"),
        hint=True,
        summary="Stripe secret and restricted keys, webhook signing secrets",
    ),
    # -- chat ------------------------------------------------------------------------------
    Detector(
        "slack_token",
        "credential",
        r"(?<![A-Za-z0-9])(?:xoxe\.)?(?:xox[abposre]|xapp)-[A-Za-z0-9\-]{10,250}"
        r"(?![A-Za-z0-9\-])",
        anchors=("xoxa-", "xoxb-", "xoxp-", "xoxo-", "xoxs-", "xoxr-", "xoxe-", "xoxe.", "xapp-"),
        hint=True,
        summary="Slack bot, user, app, configuration and refresh tokens",
    ),
    Detector(
        "slack_webhook",
        "credential",
        r"(?<![A-Za-z0-9\-])hooks\.slack\.com/(?:services|workflows|triggers)/(?P<secret>[A-Za-z0-9_/\-]{16,200})",
        anchors=("hooks.slack.com/",),
        summary="Slack incoming-webhook and workflow URLs (the path is the credential)",
    ),
    Detector(
        "discord_webhook",
        "credential",
        r"(?<![A-Za-z0-9\-])discord(?:app)?\.com/api(?:/v[0-9]{1,2})?/webhooks/[0-9]{5,30}/"
        r"(?P<secret>[A-Za-z0-9_\-]{30,100})",
        anchors=("discord.com/api", "discordapp.com/api"),
        summary="Discord webhook URLs (the last path segment is the credential)",
    ),
    Detector(
        "discord_bot_token",
        "credential",
        r"(?<![A-Za-z0-9])[MNO][A-Za-z0-9_\-]{23,27}\.[A-Za-z0-9_\-]{6}\.[A-Za-z0-9_\-]{27,40}"
        r"(?![A-Za-z0-9_\-])",
        gate=(r"[MNO][A-Za-z0-9_\-]{23,27}\.[A-Za-z0-9_\-]{6}\.",),
        validator=_secret_is(validators.discord_bot_token),
        hint=True,
        summary="Discord bot tokens (base64 user id . timestamp . HMAC)",
    ),
    # -- AI APIs ---------------------------------------------------------------------------
    Detector(
        "anthropic_key",
        "credential",
        r"(?<![A-Za-z0-9])sk-ant-(?:api|admin|sid|oat)[0-9]{2}-[A-Za-z0-9_\-]{20,250}"
        r"(?![A-Za-z0-9_\-])",
        anchors=("sk-ant-",),
        hint=True,
        summary="Anthropic API and admin keys",
    ),
    Detector(
        "openai_key",
        "credential",
        r"(?<![A-Za-z0-9])sk-(?:(?:proj|svcacct|admin|None)-[A-Za-z0-9_\-]{20,250}"
        r"|[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}|[A-Za-z0-9]{32,64})(?![A-Za-z0-9_\-])",
        anchors=("sk-",),
        hint=True,
        summary="OpenAI project, service-account, admin and legacy API keys",
    ),
    # -- package registries ----------------------------------------------------------------
    Detector(
        "npm_token",
        "credential",
        r"(?<![A-Za-z0-9])npm_[A-Za-z0-9]{36}(?![A-Za-z0-9])",
        anchors=("npm_",),
        hint=True,
        summary="npm access tokens",
    ),
    Detector(
        "pypi_token",
        "credential",
        rf"{_START}pypi-AgE[{_T}]{{40,1024}}",
        anchors=("pypi-AgE",),
        hint=True,
        summary="PyPI and TestPyPI API tokens (macaroons)",
    ),
    # -- mail ------------------------------------------------------------------------------
    Detector(
        "sendgrid_key",
        "credential",
        rf"{_START}SG\.[{_T}]{{16,32}}\.[{_T}]{{40,100}}{_END}",
        anchors=("SG.",),
        hint=True,
        summary="SendGrid API keys",
    ),
    Detector(
        "mailgun_key",
        "credential",
        rf"{_START}key-[0-9A-Za-z]{{32}}(?![A-Za-z0-9])",
        anchors=("key-",),
        hint=True,
        summary="Mailgun private API keys",
    ),
    # -- generic credentials ---------------------------------------------------------------
    Detector(
        "jwt",
        "credential",
        rf"{_START}eyJ[{_T}]{{5,4096}}\.[{_T}]{{2,16384}}\.[{_T}]{{0,4096}}"
        rf"(?:\.[{_T}]{{0,16384}}){{0,2}}",
        anchors=("eyJ",),
        validator=_secret_is(validators.jwt),
        summary="JSON Web Tokens (JWS and JWE), header checked",
    ),
    Detector(
        "url_password",
        "credential",
        r"(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]{0,30}://[^\s:/?#@\[\]]{0,128}:"
        r"(?P<secret>[^\s/?#@]{1,256})(?=@)",
        anchors=("://",),
        anchored_start=False,
        summary="passwords in URLs and DSNs (scheme://user:password@host)",
    ),
    Detector(
        "bearer",
        "credential",
        r"(?<![A-Za-z0-9])(?:[Bb]earer|BEARER)[ \t]+(?P<secret>[A-Za-z0-9\-._~+/]{8,4096}=*)",
        anchors=("Bearer", "bearer", "BEARER"),
        validator=_secret_is(validators.opaque_token),
        hint=True,
        summary="bearer credentials in text (Authorization: Bearer ...)",
    ),
    Detector(
        "basic_auth",
        "credential",
        r"(?<![A-Za-z0-9])(?:[Bb]asic|BASIC)[ \t]+(?P<secret>[A-Za-z0-9+/]{4,4096}={0,2})"
        r"(?![A-Za-z0-9+/=])",
        anchors=("Basic", "basic", "BASIC"),
        validator=_secret_is(validators.basic_credentials),
        summary="HTTP Basic credentials (base64 of user:password)",
    ),
    # -- personal data ---------------------------------------------------------------------
    Detector(
        "email",
        "pii",
        r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}"
        r"[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?){0,8}"
        r"\.[A-Za-z]{2,24}(?![A-Za-z0-9\-])",
        anchors=("@",),
        anchored_start=False,
        validator=_not_url_userinfo,
        summary="e-mail addresses",
    ),
    Detector(
        "card",
        "pii",
        # Digit groups with separators between them; `card_numbers` finds the cards inside.
        r"(?<![0-9A-Za-z])(?:[0-9]{12,19}|[0-9]{2,6}(?:[ \-./_+]{1,3}[0-9]{1,7}){1,8})"
        r"(?![0-9A-Za-z])",
        gate=(r"[0-9](?:[ \-./_+]{0,3}[0-9]){12}",),
        locate=validators.card_numbers,
        hint=True,
        summary="payment card numbers, any separator (issuer range + Luhn checked)",
    ),
    Detector(
        "iban",
        "pii",
        r"(?<![A-Za-z0-9_\-])[A-Z]{2}[0-9]{2}(?:[ \-]?[A-Z0-9]){11,30}(?![A-Za-z0-9])",
        gate=(r"[A-Z][A-Z][0-9][0-9]",),
        locate=validators.ibans,
        hint=True,
        summary="IBANs (country length + mod-97 checked)",
    ),
    Detector(
        "us_ssn",
        "pii",
        r"(?<![0-9A-Za-z\-])[0-9]{3}(?P<sep>[\- ])[0-9]{2}(?P=sep)[0-9]{4}(?![0-9A-Za-z\-])",
        gate=(r"[0-9][0-9][0-9][\- ][0-9][0-9][\- ][0-9]",),
        validator=_secret_is(validators.us_ssn),
        summary="US social security numbers written 123-45-6789 (SSA area rules)",
    ),
    Detector(
        "phone",
        "pii",
        r"(?<![0-9A-Za-z+_.\-])(?:\+[1-9][0-9]{0,2}(?:[ .\-]?\(?[0-9]{1,5}\)?){1,6}"
        r"|\(?0[1-9][0-9]{0,4}\)?(?:[ .\-][0-9]{2,8}){1,5}"
        r"|(?:1[ .\-])?\(?[2-9][0-9]{2}\)?[ .\-]?[2-9][0-9]{2}[ .\-][0-9]{4})"
        r"(?![0-9A-Za-z_\-]|\.[0-9])",
        gate=(
            r"\+[1-9]",
            r"\(0[1-9]",
            r"0[1-9][0-9]{0,4}\)?[ .\-][0-9]",
            r"1[ .\-]\(?[2-9][0-9][0-9]\)?[ .\-]?[2-9][0-9][0-9][ .\-][0-9]",
            r"\([2-9][0-9][0-9]\)",
            r"[2-9][0-9][0-9]\)?[ .\-]?[2-9][0-9][0-9][ .\-][0-9]",
        ),
        validator=_secret_is(validators.phone_number),
        summary="phone numbers: E.164 (+33 6 12 34 56 78) and national forms (020 7946 0958, "
        "(415) 555-0172)",
    ),
    # -- sensitive key followed by a value, in free text and query strings -------------------
    Detector(
        KEY_VALUE,
        "credential",
        r"(?<![A-Za-z0-9_.\-])(?<!MASKED:)(?P<key>[A-Za-z_][A-Za-z0-9_.\-]{0,63})"
        r"(?P<sep>\\?[\"']?[ \t]*[:=][ \t]*)(?P<secret>" + _KV_VALUE + ")",
        summary='password=..., "api_key": "...", X-Api-Key: ..., ?token=...: any key the '
        "key policy names",
    ),
)
