"""The one list of payout rails: setting value -> implementation and the settings it needs."""

from __future__ import annotations

from partnerflow.providers.registry import Vendor

RAILS: dict[str, Vendor] = {
    "ledger": Vendor("partnerflow.providers.payout.ledger:LedgerRail"),
    "sepa": Vendor("partnerflow.providers.payout.sepa:SepaRail", requires=("sepa_debtor_iban", "sepa_debtor_bic")),
    "stripe": Vendor("partnerflow.providers.payout.stripe:StripeRail", requires=("stripe_api_key",)),
    "paypal": Vendor("partnerflow.providers.payout.paypal:PayPalRail",
                     requires=("paypal_client_id", "paypal_client_secret")),
}
