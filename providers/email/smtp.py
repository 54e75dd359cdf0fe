"""SMTP provider: stdlib smtplib with STARTTLS or implicit TLS and optional login."""

from __future__ import annotations

import smtplib
import ssl

from partnerflow.providers.email.base import EmailProvider, OutgoingEmail, SendOutcome
from partnerflow.providers.email.outbox import build_mime
from partnerflow.providers.email.settings import MailSettings
from partnerflow.providers.errors import AmbiguousError, PermanentError, RetryableError


def _reason(code: int, message: bytes | str) -> str:
    text = message.decode(errors="replace") if isinstance(message, bytes) else str(message)
    return f"SMTP {code}: {text}"


class SmtpProvider(EmailProvider):
    name = "smtp"
    idempotent = False  # an SMTP server cannot tell a repeat from a new message

    def __init__(self, settings: MailSettings, ssl_context: ssl.SSLContext | None = None):
        self.settings = settings
        self.ssl_context = ssl_context or ssl.create_default_context()

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        timeout = s.sendgrid_timeout_seconds  # one client timeout for every email provider
        if s.smtp_security == "ssl":
            conn: smtplib.SMTP = smtplib.SMTP_SSL(s.smtp_host, s.smtp_port, timeout=timeout, context=self.ssl_context)
        else:
            conn = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=timeout)
        conn.ehlo()
        if s.smtp_security == "starttls":
            conn.starttls(context=self.ssl_context)
            conn.ehlo()
        if s.smtp_username:
            password = s.smtp_password.get_secret_value() if s.smtp_password else ""
            conn.login(s.smtp_username, password)
        return conn

    def send_batch(self, emails: list[OutgoingEmail]) -> list[SendOutcome]:
        try:
            conn = self._connect()
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentError(_reason(exc.smtp_code, exc.smtp_error)) from None
        except (OSError, smtplib.SMTPException) as exc:  # nothing was sent yet
            where = f"{self.settings.smtp_host}:{self.settings.smtp_port}"
            raise RetryableError(f"SMTP connection to {where} failed: {exc}") from None
        outcomes: list[SendOutcome] = []
        try:
            for index, item in enumerate(emails):
                mime = build_mime(self.settings, item)
                try:
                    conn.send_message(mime)
                    outcomes.append(SendOutcome(item.message_id, provider_message_id=mime["Message-ID"]))
                except smtplib.SMTPRecipientsRefused as exc:
                    code, message = next(iter(exc.recipients.values()))
                    error_cls = RetryableError if 400 <= code < 500 else PermanentError
                    outcomes.append(SendOutcome(item.message_id, error=error_cls(_reason(code, message))))
                except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
                    error_cls = RetryableError if 400 <= exc.smtp_code < 500 else PermanentError
                    error = error_cls(_reason(exc.smtp_code, exc.smtp_error))
                    outcomes.append(SendOutcome(item.message_id, error=error))
                except (OSError, smtplib.SMTPServerDisconnected) as exc:
                    # The connection died during this message: it may or may not have gone out.
                    outcomes.append(SendOutcome(item.message_id, error=AmbiguousError(f"SMTP connection lost: {exc}")))
                    outcomes.extend(SendOutcome(rest.message_id, error=RetryableError("SMTP connection lost earlier"))
                                    for rest in emails[index + 1:])
                    break
        finally:
            try:
                conn.quit()
            except (OSError, smtplib.SMTPException):
                pass
        return outcomes
