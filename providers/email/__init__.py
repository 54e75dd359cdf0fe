"""Email providers. `get_email_provider(settings)` builds the one PARTNERFLOW_EMAIL_PROVIDER names."""

from __future__ import annotations

from partnerflow.providers.email.base import EmailProvider, OutgoingEmail, SendOutcome
from partnerflow.providers.email.registry import PROVIDERS
from partnerflow.providers.email.settings import MailSettings


def get_email_provider(settings: MailSettings) -> EmailProvider:
    return PROVIDERS[settings.email_provider].load()(settings)


__all__ = ["EmailProvider", "MailSettings", "OutgoingEmail", "SendOutcome", "get_email_provider"]
