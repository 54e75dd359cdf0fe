"""Mail settings: which provider sends, the sender identity, and each provider's own settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import PositiveInt, SecretStr, field_validator

from partnerflow.providers.email.registry import PROVIDERS
from partnerflow.providers.secret_settings import MIN_CHOSEN_SECRET_LENGTH, checked_secret
from partnerflow.providers.settings_base import VendorSettings, one_of


class MailSettings(VendorSettings):
    choice = "email_provider"
    vendors = PROVIDERS

    email_provider: str = "outbox"
    outbox_dir: Path | None = None  # filled in from the var folder by the top-level settings
    # The sender identity and the postal address every commercial mail carries.
    sender_name: str = "Acme Partnerships"
    sender_email: str = "partners@acme.example"
    postal_address: str = "Acme Analytics Ltd, 1 Market Street, Springfield, USA"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_security: str = "none"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    sendgrid_api_key: SecretStr | None = None
    sendgrid_api_host: str = "https://api.sendgrid.com"
    sendgrid_webhook_public_key: str | None = None
    sendgrid_timeout_seconds: float = 10.0
    sendgrid_webhook_max_age_seconds: int = 600  # signed timestamp window for the event webhook
    sendgrid_max_retries: int = 4
    sendgrid_inbound_token: SecretStr | None = None  # when set, inbound parse posts must carry ?token=
    # A one-off mail whose send stayed unconfirmed (no provider event, no lookup) this long after the
    # attempt is marked failed and the team is told; it is never re-sent by itself.
    mail_unconfirmed_after_seconds: PositiveInt = 24 * 3600

    @field_validator("smtp_security")
    @classmethod
    def _known_security(cls, value: str) -> str:
        return one_of("smtp_security", value, ("none", "starttls", "ssl"))

    @field_validator("smtp_password", "sendgrid_api_key", "sendgrid_webhook_public_key", "sendgrid_inbound_token")
    @classmethod
    def _real_secret(cls, value, info):
        minimum = MIN_CHOSEN_SECRET_LENGTH if info.field_name == "sendgrid_inbound_token" else 1
        return checked_secret(info.field_name, value, minimum)
