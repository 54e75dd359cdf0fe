"""Bonus and tier rules of the program policy (templates/payouts/commission_policy.yaml, keys `bonus_rules`
and `tier_rules`), checked when read: a mistake is one sentence naming the rule.

The order of tiers (which change is a promotion) is the contracting policy's `tiers` list, the same list a
reviewer picks from when approving an application.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer, field_validator, model_validator

from partnerflow.tasks.contracting.policy import load_policy
from partnerflow.tasks.shared.money import check_currency
from partnerflow.tasks.shared.terms import parse_rate, program_policy

NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")


class PolicyError(ValueError):
    """The program policy's bonus or tier rules are wrong; nothing was evaluated."""


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    partner_types: list[str] | None = None  # None = every type
    tiers: list[str] | None = None  # the partner's current tier; None = every tier
    currency: str = "USD"

    _check_currency = field_validator("currency")(lambda cls, v: check_currency(v))

    @field_validator("name")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not NAME.match(v):
            raise ValueError("a rule name is lowercase letters, digits and dashes (it is part of idempotency keys)")
        return v

    def applies_to(self, partner_type: str, tier: str) -> bool:
        return (self.partner_types is None or partner_type in self.partner_types) and \
            (self.tiers is None or tier in self.tiers)


class BonusRule(_Rule):
    """`rate` of a month's net sales above `threshold_minor` (basis: excess) or of the whole month once the
    threshold is reached (basis: whole)."""

    threshold_minor: int = Field(ge=0)
    rate: Decimal
    basis: Literal["excess", "whole"] = "excess"
    reason: str | None = None

    _check_rate = field_validator("rate", mode="before")(lambda cls, v: parse_rate(v))

    @field_serializer("rate")
    def _ser(self, v: Decimal) -> str:
        return str(v)


class TierRule(_Rule):
    """Move a partner to `to_tier` when every condition given holds:
    - revenue_at_least_minor + months: net sales of at least that much in each of the last N complete months;
    - conversions_below + days: fewer than that many paying conversions in the last N days."""

    to_tier: str
    revenue_at_least_minor: int | None = Field(default=None, ge=0)
    months: int = Field(default=1, ge=1, le=24)
    conversions_below: int | None = Field(default=None, ge=1)
    days: int = Field(default=90, ge=1, le=730)

    @model_validator(mode="after")
    def _has_condition(self) -> TierRule:
        if self.revenue_at_least_minor is None and self.conversions_below is None:
            raise ValueError("a tier rule needs revenue_at_least_minor or conversions_below")
        return self


def bonus_rules(policy: dict[str, Any] | None = None) -> list[BonusRule]:
    policy = program_policy() if policy is None else policy
    return _parse(BonusRule, policy.get("bonus_rules") or [], "bonus_rules")


def tier_rules(policy: dict[str, Any] | None = None) -> list[TierRule]:
    policy = program_policy() if policy is None else policy
    rules = _parse(TierRule, policy.get("tier_rules") or [], "tier_rules")
    order = tier_order()
    for rule in rules:
        unknown = [t for t in [rule.to_tier, *(rule.tiers or [])] if t not in order]
        if unknown:
            raise PolicyError(f"tier_rules {rule.name}: unknown tier {unknown[0]!r} (tiers are {', '.join(order)})")
    return rules


def tier_order() -> list[str]:
    """Tiers from lowest to highest (the contracting policy's list)."""
    return list(load_policy().get("tiers") or ["standard"])


def _parse(model: type[_Rule], items: Any, where: str) -> list[Any]:
    if not isinstance(items, list):
        raise PolicyError(f"{where} in the program policy must be a list of rules")
    rules, names = [], set()
    for i, item in enumerate(items):
        try:
            rule = model.model_validate(item)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "rule"
            label = item.get("name") if isinstance(item, dict) else None
            raise PolicyError(f"{where} rule {label or i + 1}: {field}: {first['msg']}") from None
        if rule.name in names:
            raise PolicyError(f"{where}: two rules are named {rule.name!r}")
        names.add(rule.name)
        rules.append(rule)
    return rules
