"""E-mail notifier against a real aiosmtpd server on a loopback port."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from observability.alerting.notifiers import EmailNotifier, NotifierError
from tests.observability.notifiers import make_notification, smtp_server
from tests.support.servers import LOOPBACK, free_port

USER, PASSWORD = "alerts", "correct-horse-PA55WORD"


def _notifier(port: int, **options: Any) -> EmailNotifier:
    return EmailNotifier(
        host=LOOPBACK,
        port=port,
        sender="alerts@example.test",
        recipients=["oncall@example.test", "team@example.test"],
        timeout=5,
        **options,
    )


def _parts(message: Any) -> tuple[str, str]:
    plain = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    return plain, html


def test_firing_mail_has_tagged_subject_and_plain_and_html_parts() -> None:
    notification = make_notification()
    with smtp_server() as server:
        _notifier(server.port).send(notification)
        (message,) = server.handler.wait_for(1)
        mail_from, rcpt_tos = server.handler.envelopes[0]

    assert message["Subject"] == f"[HIGH][FIRING] {notification.title}"
    assert mail_from == "alerts@example.test"
    assert rcpt_tos == ["oncall@example.test", "team@example.test"]
    assert message.get_content_type() == "multipart/alternative"
    plain, html = _parts(message)
    for body in (plain, html):
        assert notification.summary in body
        assert "value 0.073 (threshold 0.05)" in body
        assert "HIGH" in body
    assert f"Runbook: {notification.runbook_url}" in plain
    assert f"href='{notification.dashboard_url}'" in html
    assert "<table>" in html


def test_resolved_mail_says_so_in_the_subject() -> None:
    notification = make_notification(status="resolved", resolved_at=dt.datetime.now(dt.UTC))
    with smtp_server() as server:
        _notifier(server.port).send(notification)
        (message,) = server.handler.wait_for(1)
    assert message["Subject"].startswith("[HIGH][RESOLVED]")
    plain, _ = _parts(message)
    assert "resolved at" in plain


def test_html_is_escaped_and_headers_cannot_be_injected() -> None:
    notification = make_notification(
        title="disk full\r\nBcc: attacker@example.test", summary="<script>alert(1)</script>"
    )
    with smtp_server() as server:
        _notifier(server.port).send(notification)
        (message,) = server.handler.wait_for(1)
        _, rcpt_tos = server.handler.envelopes[0]
    assert message["Bcc"] is None
    assert "attacker@example.test" not in rcpt_tos
    assert "\n" not in message["Subject"]
    _, html = _parts(message)
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def _certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOOPBACK)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == USER.encode()
    ok = ok and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)  # False: let aiosmtpd answer 535


@pytest.fixture
def tls_server(tmp_path: Path) -> Any:
    cert_path, key_path = _certificate(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_path, key_path)
    client_context = ssl.create_default_context(cafile=str(cert_path))
    with smtp_server(
        tls_context=server_context,
        require_starttls=True,
        authenticator=_authenticator,
        auth_required=True,
    ) as server:
        yield server, client_context


def test_starttls_and_login_deliver(tls_server: Any) -> None:
    server, client_context = tls_server
    notifier = _notifier(
        server.port,
        starttls=True,
        ssl_context=client_context,
        username=USER,
        password=PASSWORD,
    )
    notifier.send(make_notification(severity="critical"))
    (message,) = server.handler.wait_for(1)
    assert message["Subject"].startswith("[CRITICAL][FIRING]")
    assert PASSWORD not in repr(notifier)


def test_wrong_password_is_final_and_never_echoed(tls_server: Any) -> None:
    server, client_context = tls_server
    wrong = "wrong-" + PASSWORD
    notifier = _notifier(
        server.port, starttls=True, ssl_context=client_context, username=USER, password=wrong
    )
    with pytest.raises(NotifierError) as caught:
        notifier.send(make_notification())
    assert not caught.value.retryable
    assert wrong not in str(caught.value)
    assert server.handler.messages == []


def test_server_refusing_plain_text_mail_without_starttls(tls_server: Any) -> None:
    server, _ = tls_server
    with pytest.raises(NotifierError) as caught:
        _notifier(server.port).send(make_notification())
    assert "SMTP 530" in str(caught.value)  # "must issue a STARTTLS command first"
    assert not caught.value.retryable


def test_unreachable_server_is_retryable() -> None:
    with pytest.raises(NotifierError) as caught:
        _notifier(free_port()).send(make_notification())
    assert caught.value.retryable


def test_configuration_mistakes_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="recipients"):
        EmailNotifier(host=LOOPBACK, sender="a@example.test", recipients=[])
    with pytest.raises(ValueError, match="starttls"):
        _notifier(25, starttls=True, use_ssl=True)
