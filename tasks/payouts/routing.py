"""Which rail pays a partner: the method they chose, among the rails the team enabled, in their currency.

A partner who chose nothing is paid by PARTNERFLOW_PAYOUT_RAIL. PARTNERFLOW_PAYOUT_METHOD_RAILS maps a
method to another rail; left unset while only the ledger is enabled (the demo), the ledger pays every
method. A method that is not enabled, or a currency the rail cannot pay, is a reason to hold the payout,
never a silent skip.
"""

from __future__ import annotations

from dataclasses import dataclass

from partnerflow.models import Partner
from partnerflow.providers.payout.registry import RAILS
from partnerflow.providers.payout.settings import names as _names
from partnerflow.settings import get_settings

SEPA_CURRENCIES = frozenset({"EUR"})  # SEPA credit transfers are in euro only


def _currencies(text: str) -> frozenset[str]:
    return frozenset(part.strip().upper() for part in (text or "").split(",") if part.strip())


@dataclass(frozen=True)
class Routing:
    """The payout settings read once per batch."""

    default_rail: str
    enabled: frozenset[str]
    method_rails: dict[str, str]
    currencies: dict[str, frozenset[str]]  # rail -> currencies it may pay; a rail not listed pays any

    @classmethod
    def from_settings(cls, default_rail: str | None = None) -> Routing:
        """`default_rail` replaces PARTNERFLOW_PAYOUT_RAIL (for partners who chose no method). The settings
        were checked when read (providers/payout/settings.py): every rail named here is known."""
        s = get_settings().payouts
        default = (default_rail or s.payout_rail).strip().lower()
        method_rails = {method.strip(): rail.strip()
                        for method, _, rail in (pair.partition("=") for pair in _names(s.payout_method_rails))}
        enabled = frozenset(_names(s.payout_rails_enabled) or [default])
        if s.payout_method_rails is None and enabled == {"ledger"}:  # the demo's stand-in for every method
            method_rails = dict.fromkeys(RAILS, "ledger")
        currencies = {"sepa": SEPA_CURRENCIES}
        for rail, text in (("stripe", s.payout_stripe_currencies), ("paypal", s.payout_paypal_currencies)):
            if _currencies(text):
                currencies[rail] = _currencies(text)
        return cls(default, enabled, method_rails, currencies)

    def rail_for(self, partner: Partner) -> tuple[str, str | None]:
        """(the rail that pays this partner, the reason it cannot, or None)."""
        method = (partner.payout_method or self.default_rail).strip().lower()
        rail = self.method_rails.get(method, method)
        if rail not in self.enabled:
            return rail, f"payout method {method} is not enabled (rails enabled: {', '.join(sorted(self.enabled))})"
        allowed = self.currencies.get(rail)
        currency = (partner.payout_currency or "").upper()
        if allowed is not None and currency not in allowed:
            return rail, f"the {rail} rail cannot pay {currency} (it pays {', '.join(sorted(allowed))})"
        return rail, None
