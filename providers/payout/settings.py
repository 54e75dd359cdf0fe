"""Payout rail settings: which rail pays, and each rail's own settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr, field_validator

from partnerflow.providers.payout.registry import RAILS
from partnerflow.providers.secret_settings import checked_secret
from partnerflow.providers.settings_base import VendorSettings


class PayoutRailSettings(VendorSettings):
    choice = "payout_rail"
    vendors = RAILS

    payout_rail: str = "ledger"
    # Where the ledger rail keeps its record (a database URL); unset means our own database.
    ledger_database_url: str | None = None
    payout_http_timeout_seconds: float = 20.0
    stripe_api_key: SecretStr | None = None
    stripe_api_host: str = "https://api.stripe.com"
    stripe_webhook_secret: SecretStr | None = None
    stripe_webhook_tolerance_seconds: int = 300
    paypal_client_id: str | None = None
    paypal_client_secret: SecretStr | None = None
    paypal_api_host: str = "https://api-m.paypal.com"
    sepa_debtor_name: str = "Acme Analytics Ltd"
    sepa_debtor_iban: str | None = None
    sepa_debtor_bic: str | None = None
    sepa_output_dir: Path | None = None  # pain.001 files; filled in from the var folder by the top-level settings

    @field_validator("stripe_api_key", "stripe_webhook_secret", "paypal_client_secret")
    @classmethod
    def _real_secret(cls, value, info):
        return checked_secret(info.field_name, value)
