"""The SMTP provider against a real local SMTP server (aiosmtpd): plain, STARTTLS with login, refusals."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ssl

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from partnerflow.providers.email import OutgoingEmail, get_email_provider
from partnerflow.providers.email.smtp import SmtpProvider
from partnerflow.providers.errors import PermanentError, RetryableError
from partnerflow.settings import get_settings


class Recorder:
    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("nobody@"):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 Message accepted"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"mailer" and auth_data.password == b"pw"
    return AuthResult(success=ok)


def _tls_files(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def items(*addresses: str) -> list[OutgoingEmail]:
    return [OutgoingEmail(message_id=i, idempotency_key=f"outreach:enrollment:{i}:step:0", to=a, subject="Hi",
                          text="plain body", html="<p>html body</p>",
                          headers={"List-Unsubscribe": "<https://x.example/u/1>",
                                   "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"})
            for i, a in enumerate(addresses)]


def test_plain_smtp_sends_multipart_with_headers_and_reports_refused_recipients(configure):
    recorder = Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        configure(email_provider="smtp", smtp_host="127.0.0.1", smtp_port=port)
        outcomes = get_email_provider(get_settings().mail).send_batch(
            items("a@example.com", "nobody@example.com", "c@example.com"))
    finally:
        controller.stop()
    assert [o.error is None for o in outcomes] == [True, False, True]
    assert isinstance(outcomes[1].error, PermanentError) and "550" in outcomes[1].error.reason
    assert [m["To"] for m in recorder.messages] == ["a@example.com", "c@example.com"]
    mail = recorder.messages[0]
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail.get_body(("plain",)).get_content().strip() == "plain body"
    assert mail.get_body(("html",)).get_content().strip() == "<p>html body</p>"


def test_starttls_with_login(configure, tmp_path):
    cert, key = _tls_files(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    recorder = Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, tls_context=server_ctx, require_starttls=True,
                            authenticator=authenticator, auth_require_tls=True)
    controller.start()
    try:
        settings = configure(email_provider="smtp", smtp_host="127.0.0.1", smtp_port=port, smtp_security="starttls",
                             smtp_username="mailer", smtp_password="pw")
        client_ctx = ssl.create_default_context(cafile=str(cert))
        outcomes = SmtpProvider(settings.mail, ssl_context=client_ctx).send_batch(items("a@example.com"))
        assert outcomes[0].error is None and len(recorder.messages) == 1
        # Without TLS the server refuses to go on: nothing is sent in clear.
        plain = configure(smtp_security="none")
        with pytest.raises(RetryableError):
            SmtpProvider(plain.mail, ssl_context=client_ctx).send_batch(items("b@example.com"))
    finally:
        controller.stop()
    assert len(recorder.messages) == 1


def test_unreachable_server_is_retryable(configure):
    configure(email_provider="smtp", smtp_host="127.0.0.1", smtp_port=9)
    with pytest.raises(RetryableError):
        get_email_provider(get_settings().mail).send_batch(items("a@example.com"))


def test_every_registered_provider_implements_the_one_interface():
    from partnerflow.providers.email import EmailProvider
    from partnerflow.providers.email.registry import PROVIDERS

    for name, vendor in PROVIDERS.items():
        implementation = vendor.load()
        assert issubclass(implementation, EmailProvider) and implementation.name == name
