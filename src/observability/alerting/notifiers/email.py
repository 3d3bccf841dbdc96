"""E-mail over SMTP: a plain-text body with an HTML alternative.

The subject leads with severity and status (`[HIGH][FIRING] ...`) so mail filters and
phones sort it. The password is held out of `repr` and error texts; smtplib's debug output
(which would print the AUTH exchange) stays off.
"""

from __future__ import annotations

import html
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from observability.alerting.notifiers.base import (
    Notification,
    NotifierError,
    facts,
    plain_text,
    redact,
    truncate,
)

__all__ = ["EmailNotifier"]

_SUBJECT_LIMIT = 200


def _one_line(text: str) -> str:
    # Header values may not hold line breaks (and must not: header injection).
    return " ".join(text.split())


class EmailNotifier:
    """Sends each notification as one e-mail to a fixed list of recipients."""

    def __init__(
        self,
        *,
        host: str,
        sender: str,
        recipients: Sequence[str],
        port: int = 25,
        starttls: bool = False,
        use_ssl: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        name: str = "email",
    ) -> None:
        if not recipients:
            raise ValueError("recipients must name at least one address")
        if starttls and use_ssl:
            raise ValueError("choose starttls (upgrade on port 587) or use_ssl (port 465)")
        self.name = name
        self.host = host
        self.port = port
        self.sender = sender
        self.recipients = list(recipients)
        self._starttls = starttls
        self._use_ssl = use_ssl
        self._username = username
        self._password = password
        self._timeout = timeout
        self._ssl_context = ssl_context

    def __repr__(self) -> str:  # never the password
        return (
            f"EmailNotifier(name={self.name!r}, host={self.host!r}, port={self.port}, "
            f"recipients={self.recipients!r})"
        )

    def subject(self, notification: Notification) -> str:
        tag = f"[{notification.severity.upper()}][{notification.status.upper()}]"
        return truncate(_one_line(f"{tag} {notification.title}"), _SUBJECT_LIMIT)

    def build_message(self, notification: Notification) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = self.subject(notification)
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain="observability")
        message["X-Notification-Severity"] = notification.severity
        message["X-Notification-Status"] = notification.status
        message.set_content(plain_text(notification))
        message.add_alternative(_html(notification), subtype="html")
        return message

    def send(self, notification: Notification) -> None:
        message = self.build_message(notification)
        try:
            with self._connect() as smtp:
                if self._starttls:
                    smtp.starttls(context=self._ssl_context or ssl.create_default_context())
                    smtp.ehlo()
                if self._username is not None:
                    smtp.login(self._username, self._password or "")
                smtp.send_message(message)
        except smtplib.SMTPAuthenticationError as exc:
            raise self._error(f"authentication failed ({exc.smtp_code})", retryable=False) from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _ in exc.recipients.values()})
            retryable = all(400 <= code < 500 for code in codes)
            raise self._error(f"recipients refused {codes}", retryable=retryable) from None
        except smtplib.SMTPResponseException as exc:
            # 4xx is a transient refusal (greylisting, busy); 5xx is permanent.
            raw = exc.smtp_error
            detail = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            retryable = 400 <= exc.smtp_code < 500
            raise self._error(f"SMTP {exc.smtp_code} {detail}", retryable=retryable) from None
        except (smtplib.SMTPException, OSError) as exc:  # refused, reset, timeout, TLS failure
            raise self._error(f"{type(exc).__name__}: {exc}", retryable=True) from None

    def _connect(self) -> smtplib.SMTP:
        if self._use_ssl:
            context = self._ssl_context or ssl.create_default_context()
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self._timeout, context=context)
        return smtplib.SMTP(self.host, self.port, timeout=self._timeout)

    def _error(self, text: str, *, retryable: bool) -> NotifierError:
        secrets = [self._password] if self._password else []
        return NotifierError(redact(f"{self.name}: {text}", secrets), retryable=retryable)


def _html(n: Notification) -> str:
    esc = html.escape
    colour = "#2e7d32" if n.status == "resolved" else "#c62828"
    rows = "".join(
        f"<tr><th align='left'>{esc(name)}</th><td>{esc(value)}</td></tr>"
        for name, value in facts(n)
    )
    links = " | ".join(f"<a href='{esc(url)}'>{esc(text)}</a>" for text, url in n.links)
    description = f"<p>{esc(n.description)}</p>" if n.description else ""
    return (
        "<html><body>"
        f"<h2 style='color:{colour}'>{esc(n.status.upper())}: {esc(n.title)}</h2>"
        f"<p><strong>{esc(n.summary)}</strong></p>{description}"
        f"<table>{rows}</table>" + (f"<p>{links}</p>" if links else "") + "</body></html>"
    )
