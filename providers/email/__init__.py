"""Email providers. `get_email_provider()` picks the configured one."""

from __future__ import annotations

from partnerflow.settings import Settings, check_settings, get_settings
from partnerflow.providers.email.base import EmailProvider, OutgoingEmail, SendOutcome


def get_email_provider(settings: Settings | None = None) -> EmailProvider:
    settings = check_settings(settings or get_settings())
    if settings.email_provider == "outbox":
        from partnerflow.providers.email.outbox import OutboxProvider

        return OutboxProvider(settings)
    if settings.email_provider == "smtp":
        from partnerflow.providers.email.smtp import SmtpProvider

        return SmtpProvider(settings)
    from partnerflow.providers.email.sendgrid import SendGridProvider

    return SendGridProvider(settings)


__all__ = ["EmailProvider", "OutgoingEmail", "SendOutcome", "get_email_provider"]
