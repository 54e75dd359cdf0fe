"""The one list of email providers: setting value -> implementation and the settings it needs."""

from __future__ import annotations

from partnerflow.providers.registry import Vendor

PROVIDERS: dict[str, Vendor] = {
    "outbox": Vendor("partnerflow.providers.email.outbox:OutboxProvider"),
    "smtp": Vendor("partnerflow.providers.email.smtp:SmtpProvider"),
    "sendgrid": Vendor("partnerflow.providers.email.sendgrid:SendGridProvider", requires=("sendgrid_api_key",)),
}
