"""Payout rail settings: which rail pays, and each rail's own settings."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import SecretStr, field_validator, model_validator

from partnerflow.providers.payout.registry import RAILS
from partnerflow.providers.secret_settings import checked_secret
from partnerflow.providers.settings_base import VendorSettings, one_of, require


def names(text: str | None) -> list[str]:
    """"sepa, Stripe" -> ["sepa", "stripe"]."""
    return [part.strip().lower() for part in (text or "").split(",") if part.strip()]


class PayoutRailSettings(VendorSettings):
    choice = "payout_rail"
    vendors = RAILS

    payout_rail: str = "ledger"  # pays partners who chose no payout method
    # Rails the team pays through, comma-separated ("ledger,sepa,stripe"); empty = only PARTNERFLOW_PAYOUT_RAIL.
    # A partner whose chosen method is not among them is held with that reason.
    payout_rails_enabled: str = ""
    # Which rail pays a partner's chosen method, "sepa=ledger,paypal=ledger"; a method not listed is paid by
    # the rail of the same name. Unset while only the ledger is enabled (the demo, a fresh install): the
    # ledger stands in for every method.
    payout_method_rails: str | None = None
    # Currencies the Stripe / PayPal rails may pay, comma-separated ISO 4217; empty = any. SEPA pays EUR only.
    payout_stripe_currencies: str = ""
    payout_paypal_currencies: str = ""
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

    @model_validator(mode="after")
    def _enabled_rails_with_their_settings(self) -> Self:
        """Every enabled rail, and every rail a method is mapped to, is known and has its settings."""
        enabled = [one_of("payout_rails_enabled", rail, tuple(RAILS)) for rail in names(self.payout_rails_enabled)]
        for pair in names(self.payout_method_rails):
            method, _, rail = pair.partition("=")
            if not method.strip() or not rail.strip():
                raise ValueError(f"PARTNERFLOW_PAYOUT_METHOD_RAILS: {pair!r} is not method=rail")
            one_of("payout_method_rails", rail.strip(), tuple(RAILS))
        for rail in enabled:
            require("payout_rails_enabled", rail, self, RAILS[rail].requires)
        for setting in ("payout_stripe_currencies", "payout_paypal_currencies"):
            for code in names(getattr(self, setting)):
                if len(code) != 3 or not code.isalpha():
                    raise ValueError(f"PARTNERFLOW_{setting.upper()}: {code!r} is not a three-letter currency code")
        return self

    @field_validator("stripe_api_key", "stripe_webhook_secret", "paypal_client_secret")
    @classmethod
    def _real_secret(cls, value, info):
        return checked_secret(info.field_name, value)
