"""Commission terms: the one description of what a partner earns.

The contract text (`describe()`) and the payout engine (`tasks/commission_rules.py`) read the same
object, so what a partner signs is what they are paid. Rates are Decimal (serialised as strings),
amounts are integer minor units of `currency`. Stored as JSON in Partner.commission_terms and
Contract.commission_terms (`terms.model_dump(mode="json")`).

Kinds:
- flat: `flat_minor` per paying conversion;
- percentage: `rate` x conversion amount;
- flat_plus_percentage: `flat_minor` plus `rate` x conversion amount on the same sale (leads and sign-ups,
  which have no sale amount, earn `flat_minor`), the sum rounded once;
- tiered: the rate of the tier reached by the partner's sales volume in the calendar month (UTC),
  applied to the whole month (`tier_mode="whole"`) or only to the part of the volume inside each
  tier (`tier_mode="marginal"`).
Then: `overrides` per product or category (first match wins), `recurring_months` (recurring
payments earn only within N months of the customer's first purchase; None = always, 0 = never),
`first_purchase_only`, caps per conversion and per month, `lock_days` before a commission becomes
payable, `payout_threshold_minor` (the least balance paid out), `signing_bonus_minor` (paid once per partner
from the signature on, as a bonus line: tasks/growth/bonuses.py; the per-conversion engines ignore it).
"""

from __future__ import annotations

import functools
from datetime import datetime
from decimal import Decimal
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_validator,
)

from partnerflow.tasks.shared.money import check_currency, format_money

Rate = Decimal


def _rate(value: Any) -> Decimal:
    if isinstance(value, float):
        raise ValueError("rates must be strings or Decimals, not floats (e.g. \"0.10\")")
    rate = Decimal(str(value))
    if not rate.is_finite() or rate < 0 or rate > 1:
        raise ValueError(f"a rate must be between 0 and 1, got {value}")
    return rate


def _pct(rate: Decimal) -> str:
    text = format((rate * 100).normalize(), "f")
    return f"{text}%"


class Tier(BaseModel):
    model_config = ConfigDict(extra="forbid")
    from_volume_minor: int = Field(ge=0)
    rate: Decimal

    _check = field_validator("rate", mode="before")(lambda cls, v: _rate(v))

    @field_serializer("rate")
    def _ser(self, v: Decimal) -> str:
        return str(v)


class Override(BaseModel):
    """Different terms for one product or category."""

    model_config = ConfigDict(extra="forbid")
    product: str | None = None
    category: str | None = None
    kind: Literal["flat", "percentage"] = "percentage"
    rate: Decimal | None = None
    flat_minor: int | None = Field(default=None, ge=0)

    _check = field_validator("rate", mode="before")(lambda cls, v: None if v is None else _rate(v))

    @field_serializer("rate")
    def _ser(self, v: Decimal | None) -> str | None:
        return None if v is None else str(v)

    @model_validator(mode="after")
    def _complete(self) -> Override:
        if not (self.product or self.category):
            raise ValueError("an override names a product or a category")
        if self.kind == "flat" and self.flat_minor is None:
            raise ValueError("a flat override needs flat_minor")
        if self.kind == "percentage" and self.rate is None:
            raise ValueError("a percentage override needs rate")
        return self

    def matches(self, product: str | None, category: str | None) -> bool:
        if self.product is not None and self.product == product:
            return True
        return self.category is not None and self.category == category


class CommissionTerms(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["flat", "percentage", "flat_plus_percentage", "tiered"] = "percentage"
    currency: str = "USD"  # currency of flat amounts, caps, tier volumes and threshold
    rate: Decimal | None = None
    flat_minor: int | None = Field(default=None, ge=0)
    tiers: list[Tier] = Field(default_factory=list)
    tier_mode: Literal["whole", "marginal"] = "whole"
    overrides: list[Override] = Field(default_factory=list)
    recurring_months: int | None = Field(default=None, ge=0)
    first_purchase_only: bool = False
    cap_per_conversion_minor: int | None = Field(default=None, ge=0)
    cap_per_period_minor: int | None = Field(default=None, ge=0)
    lock_days: int = Field(default=30, ge=0)
    payout_threshold_minor: int | None = Field(default=None, ge=0)
    signing_bonus_minor: int | None = Field(default=None, gt=0)
    # After a tier change: these terms apply to conversions from `effective_from` (the amendment's signature,
    # or the end of a demotion's notice); earlier ones keep `previous` (compute_period splits the month).
    effective_from: datetime | None = None
    previous: CommissionTerms | None = None

    _check_rate = field_validator("rate", mode="before")(lambda cls, v: None if v is None else _rate(v))
    _check_currency = field_validator("currency")(lambda cls, v: check_currency(v))

    @field_serializer("rate")
    def _ser(self, v: Decimal | None) -> str | None:
        return None if v is None else str(v)

    @model_validator(mode="after")
    def _complete(self) -> CommissionTerms:
        if self.kind == "flat" and self.flat_minor is None:
            raise ValueError("flat terms need flat_minor")
        if self.kind == "percentage" and self.rate is None:
            raise ValueError("percentage terms need rate")
        if self.kind == "flat_plus_percentage" and (self.flat_minor is None or self.rate is None):
            raise ValueError("flat_plus_percentage terms need both flat_minor and rate")
        if (self.previous is None) != (self.effective_from is None):
            raise ValueError("effective_from and previous go together")
        if self.effective_from is not None and self.effective_from.tzinfo is None:
            raise ValueError("effective_from needs a time zone (UTC)")
        if self.kind == "tiered":
            if not self.tiers:
                raise ValueError("tiered terms need at least one tier")
            starts = [t.from_volume_minor for t in self.tiers]
            if starts[0] != 0 or starts != sorted(set(starts)):
                raise ValueError("tiers start at volume 0 and increase strictly")
        return self

    # --- reading -------------------------------------------------------------------------
    @classmethod
    def parse(cls, data: CommissionTerms | dict[str, Any] | None) -> CommissionTerms | None:
        if data is None or isinstance(data, CommissionTerms):
            return data
        return cls.model_validate(data) if data else None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_defaults=False)

    # --- the contract's words ------------------------------------------------------------
    def describe(self) -> str:
        """Plain English with exact numbers, for the contract and the partner's statement."""
        money = functools.partial(_money, currency=self.currency)
        if self.kind == "flat":
            parts = [f"{money(self.flat_minor)} for each qualifying sale or sign-up."]
        elif self.kind == "percentage":
            parts = [f"{_pct(self.rate)} of the net amount of each qualifying sale."]
        elif self.kind == "flat_plus_percentage":
            parts = [f"{money(self.flat_minor)} plus {_pct(self.rate)} of the net amount of each qualifying sale, "
                     f"and {money(self.flat_minor)} for each qualifying lead or sign-up."]
        else:
            bands = []
            for i, tier in enumerate(self.tiers):
                upper = self.tiers[i + 1].from_volume_minor if i + 1 < len(self.tiers) else None
                if upper is None:
                    bands.append(f"{_pct(tier.rate)} from {money(tier.from_volume_minor)}")
                else:
                    bands.append(f"{_pct(tier.rate)} from {money(tier.from_volume_minor)} up to {money(upper)}")
            how = ("the rate of the tier reached applies to the whole month's sales" if self.tier_mode == "whole"
                   else "each rate applies only to the part of the month's sales inside its tier")
            parts = [f"A tiered commission by monthly sales volume: {'; '.join(bands)} ({how})."]
        for o in self.overrides:
            what = f"product {o.product}" if o.product else f"category {o.category}"
            pay = money(o.flat_minor) + " per sale" if o.kind == "flat" else f"{_pct(o.rate)} of the sale"
            parts.append(f"For {what}: {pay}.")
        if self.first_purchase_only:
            parts.append("Only a customer's first purchase qualifies.")
        if self.recurring_months is None:
            parts.append("Recurring subscription payments qualify for as long as the customer pays.")
        elif self.recurring_months == 0:
            parts.append("Recurring subscription payments do not qualify.")
        else:
            parts.append(f"Recurring subscription payments qualify for {self.recurring_months} months "
                         "after the customer's first purchase.")
        if self.cap_per_conversion_minor is not None:
            parts.append(f"At most {money(self.cap_per_conversion_minor)} per conversion.")
        if self.cap_per_period_minor is not None:
            parts.append(f"At most {money(self.cap_per_period_minor)} per calendar month.")
        parts.append(f"Commissions become payable {self.lock_days} days after the sale; refunds and chargebacks "
                     "within that period cancel them, later ones are deducted from the next payout.")
        if self.payout_threshold_minor is not None:
            parts.append(f"Payouts are made once the balance reaches {money(self.payout_threshold_minor)}.")
        if self.signing_bonus_minor is not None:
            parts.append(f"A one-time signing bonus of {money(self.signing_bonus_minor)} is earned on signature "
                         f"and becomes payable {self.lock_days} days later, like a commission.")
        parts.append("Amounts are rounded half-to-even to the smallest currency unit.")
        if self.effective_from is not None:
            parts.append(f"These terms apply to sales from {self.effective_from:%Y-%m-%d %H:%M} UTC; earlier sales "
                         "keep the terms that applied when they were made.")
        return " ".join(parts)


def _money(amount_minor: int | None, currency: str) -> str:
    return format_money(int(amount_minor or 0), currency)


@functools.lru_cache(maxsize=1)
def _policy() -> dict[str, Any]:
    text = resources.files("partnerflow.templates").joinpath("payouts/commission_policy.yaml").read_text()
    return yaml.safe_load(text) or {}


def default_for(partner_type: str, tier: str = "standard") -> CommissionTerms:
    """The program's default terms for a partner type and tier (templates/payouts/commission_policy.yaml)."""
    policy = _policy()
    by_type = policy.get(partner_type) or policy.get("affiliate") or {}
    data = by_type.get(tier) or by_type.get("*")
    if not data:
        raise ValueError(f"no default commission terms for partner type {partner_type!r}")
    return CommissionTerms.model_validate(data)


def terms_for_partner(partner) -> CommissionTerms:
    """The partner's own terms (from the signed contract) or the program default."""
    return CommissionTerms.parse(partner.commission_terms) or default_for(partner.partner_type, partner.tier)


def program_policy() -> dict[str, Any]:
    """The program policy YAML (default terms by type and tier, bonus rules, tier rules)."""
    return _policy()


def parse_rate(value: Any) -> Decimal:
    """A rate from text or Decimal, between 0 and 1 (floats refused)."""
    return _rate(value)
