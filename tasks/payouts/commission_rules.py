"""The commission rules: one partner's month of conversions -> commissions, by their CommissionTerms.

Plain computation, no database (tasks/payouts/commissions.py feeds it and stores the results).

Rounding rule (documented for partners in every contract): each commission is computed exactly in
Decimal and rounded once, half-to-even, to the minor unit of the conversion's currency
(`partnerflow.tasks.shared.money.round_minor`). Stored as integer minor units. No floats.

Periods are calendar months (UTC). Tiers and monthly caps look at the partner's whole month, so
commissions still inside their lock period (status `pending`) are recomputed on every run: once a
month is complete every pending commission of that month carries the final tier. Commissions that
are payable, paid or cancelled never change; their amounts count toward caps.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext

from partnerflow.models.payouts import CommissionStatus, ConversionKind
from partnerflow.tasks.payouts.balances import FxLookup
from partnerflow.tasks.shared.money import exponent, round_minor
from partnerflow.tasks.shared.terms import CommissionTerms

PAYING_KINDS = (ConversionKind.SALE, ConversionKind.RECURRING, ConversionKind.LEAD, ConversionKind.SIGNUP)
REVERSAL_KINDS = (ConversionKind.REFUND, ConversionKind.CHARGEBACK, ConversionKind.REVERSAL)
VOLUME_KINDS = (ConversionKind.SALE, ConversionKind.RECURRING)  # what counts toward tiers
FLAT_FEE_KINDS = ("flat", "flat_plus_percentage")  # terms under which leads and sign-ups earn the flat fee
FROZEN = (CommissionStatus.PAYABLE, CommissionStatus.PAID, CommissionStatus.CANCELLED)


@dataclass
class Row:
    """A conversion as the engine sees it (plain values, no ORM)."""

    id: int
    partner_id: int
    kind: str
    amount_minor: int
    currency: str
    occurred_at: datetime
    customer_ref: str | None = None
    product: str | None = None
    category: str | None = None
    # the existing commission, if any
    commission_id: int | None = None
    commission_minor: int | None = None
    commission_status: str | None = None


@dataclass
class Result:
    conversion_id: int
    amount_minor: int
    rule: str
    qualifies: bool


def period_of(at: datetime) -> str:
    return f"{at.year:04d}-{at.month:02d}"


def add_months(at: datetime, months: int) -> datetime:
    month = at.month - 1 + months
    year, month = at.year + month // 12, month % 12 + 1
    return at.replace(year=year, month=month, day=min(at.day, calendar.monthrange(year, month)[1]))


def _convert_exact(amount: Decimal, base: str, quote: str, at: datetime, fx: FxLookup | None) -> Decimal:
    """Minor units of base -> exact (unrounded) minor units of quote."""
    if base == quote:
        return amount
    if fx is None:
        raise LookupError(f"no exchange rate {base}/{quote}")
    return (amount * fx(base, quote, at)).scaleb(exponent(quote) - exponent(base))


def compute_period(terms: CommissionTerms, rows: list[Row], *, first_purchase: dict[str, tuple[datetime, int]],
                   fx: FxLookup | None = None, frozen_statuses: Iterable[str] = FROZEN,
                   ) -> list[Result]:
    """Commissions for one partner's month. `rows` are that month's paying conversions, oldest first.

    `first_purchase` maps customer_ref -> (when, conversion id) of the customer's first sale anywhere.
    Rows whose commission is frozen keep their amount (it counts toward the monthly cap).
    Terms changed during the month (effective_from, previous) split it: conversions before the change are
    computed under the previous terms, later ones under the new; each part has its own tiers and caps.
    """
    if terms.effective_from is not None and terms.previous is not None:
        before = [r for r in rows if r.occurred_at < terms.effective_from]
        current = terms.model_copy(update={"effective_from": None, "previous": None})
        if not before:
            return compute_period(current, rows, first_purchase=first_purchase, fx=fx,
                                  frozen_statuses=frozen_statuses)
        after = [r for r in rows if r.occurred_at >= terms.effective_from]
        return (compute_period(terms.previous, before, first_purchase=first_purchase, fx=fx,
                               frozen_statuses=frozen_statuses)
                + compute_period(current, after, first_purchase=first_purchase, fx=fx,
                                 frozen_statuses=frozen_statuses))
    frozen_statuses = set(frozen_statuses)
    results: list[Result] = []
    with localcontext() as ctx:
        ctx.prec = 50
        # Volume for tiers: qualifying sale/recurring amounts not cancelled, in the terms' currency.
        qualifying: dict[int, str | None] = {r.id: _disqualified(terms, r, first_purchase) for r in rows}
        volume_rows = [r for r in rows if qualifying[r.id] is None and r.kind in VOLUME_KINDS
                       and r.commission_status != CommissionStatus.CANCELLED]
        total_volume = sum((_convert_exact(Decimal(r.amount_minor), r.currency, terms.currency, r.occurred_at, fx)
                            for r in volume_rows), Decimal(0))
        running_volume = Decimal(0)
        paid_in_period = Decimal(0)  # in terms.currency, for the monthly cap
        for r in rows:
            if r.commission_status in frozen_statuses and r.commission_minor is not None:
                if r.commission_status != CommissionStatus.CANCELLED:
                    paid_in_period += _convert_exact(Decimal(r.commission_minor), r.currency, terms.currency,
                                                     r.occurred_at, fx)
                if r.kind in VOLUME_KINDS and qualifying[r.id] is None \
                        and r.commission_status != CommissionStatus.CANCELLED:
                    running_volume += _convert_exact(Decimal(r.amount_minor), r.currency, terms.currency,
                                                     r.occurred_at, fx)
                continue
            reason = qualifying[r.id]
            if reason is not None:
                results.append(Result(r.id, 0, f"not qualifying: {reason}", False))
                continue
            amount = Decimal(r.amount_minor)
            volume_here = _convert_exact(amount, r.currency, terms.currency, r.occurred_at, fx)
            override = next((o for o in terms.overrides if o.matches(r.product, r.category)), None)
            if override is not None:
                if override.kind == "flat":
                    exact = _convert_exact(Decimal(override.flat_minor), terms.currency, r.currency, r.occurred_at, fx)
                    rule = f"flat {override.flat_minor} ({override.product or override.category})"
                else:
                    exact = amount * override.rate
                    rule = f"{override.rate} of sale ({override.product or override.category})"
            elif terms.kind == "flat" or r.kind not in VOLUME_KINDS:
                if terms.kind not in FLAT_FEE_KINDS:
                    results.append(Result(r.id, 0, f"not qualifying: {r.kind} earns only under flat terms", False))
                    continue
                exact = _convert_exact(Decimal(terms.flat_minor), terms.currency, r.currency, r.occurred_at, fx)
                rule = f"flat {terms.flat_minor} {terms.currency}"
            elif terms.kind == "percentage":
                exact = amount * terms.rate
                rule = f"{terms.rate} of sale"
            elif terms.kind == "flat_plus_percentage":
                # One exact sum, rounded once below: rounding the parts apart could differ by a unit.
                exact = _convert_exact(Decimal(terms.flat_minor), terms.currency, r.currency, r.occurred_at,
                                       fx) + amount * terms.rate
                rule = f"flat {terms.flat_minor} {terms.currency} + {terms.rate} of sale"
            elif terms.tier_mode == "whole":
                rate = _tier_rate(terms, total_volume)
                exact = amount * rate
                rule = f"tier {rate} (month volume {round_minor(total_volume)} {terms.currency})"
            else:
                start, end = running_volume, running_volume + volume_here
                earned = _marginal(terms, start, end)  # in terms.currency
                # Earned in the terms' currency; no division (earned/volume*amount would blur exact ties).
                exact = _convert_exact(earned, terms.currency, r.currency, r.occurred_at, fx)
                rule = "marginal tiers"
            if r.kind in VOLUME_KINDS:
                running_volume += volume_here
            if terms.cap_per_conversion_minor is not None:
                cap = _convert_exact(Decimal(terms.cap_per_conversion_minor), terms.currency, r.currency,
                                     r.occurred_at, fx)
                if exact > cap:
                    exact, rule = cap, rule + ", capped per conversion"
            commission = round_minor(exact)
            if terms.cap_per_period_minor is not None:
                room = Decimal(terms.cap_per_period_minor) - paid_in_period
                room_here = _convert_exact(max(room, Decimal(0)), terms.currency, r.currency, r.occurred_at, fx)
                if commission > room_here:
                    commission = max(0, int(room_here.to_integral_value(rounding="ROUND_FLOOR")))
                    rule += ", capped per month"
            paid_in_period += _convert_exact(Decimal(commission), r.currency, terms.currency, r.occurred_at, fx)
            results.append(Result(r.id, commission, rule, True))
    return results


def _disqualified(terms: CommissionTerms, r: Row, first_purchase: dict[str, tuple[datetime, int]]) -> str | None:
    if r.kind not in PAYING_KINDS:
        return f"{r.kind} does not earn"
    if r.amount_minor < 0:
        return "negative amount"
    first = first_purchase.get(r.customer_ref) if r.customer_ref else None
    if terms.first_purchase_only and r.kind in VOLUME_KINDS:
        if r.kind == ConversionKind.RECURRING or (first is not None and first[1] != r.id):
            return "not the customer's first purchase"
    if r.kind == ConversionKind.RECURRING:
        if terms.recurring_months == 0:
            return "recurring payments do not earn"
        if terms.recurring_months is not None and first is not None:
            if r.occurred_at >= add_months(first[0], terms.recurring_months):
                return f"more than {terms.recurring_months} months after the first purchase"
    return None


def _tier_rate(terms: CommissionTerms, volume: Decimal) -> Decimal:
    rate = terms.tiers[0].rate
    for tier in terms.tiers:
        if volume >= tier.from_volume_minor:
            rate = tier.rate
    return rate


def _marginal(terms: CommissionTerms, start: Decimal, end: Decimal) -> Decimal:
    """Commission (exact) on the volume between start and end, each part at its tier's rate."""
    earned = Decimal(0)
    for i, tier in enumerate(terms.tiers):
        lo = Decimal(tier.from_volume_minor)
        hi = Decimal(terms.tiers[i + 1].from_volume_minor) if i + 1 < len(terms.tiers) else None
        a = max(start, lo)
        b = end if hi is None else min(end, hi)
        if b > a:
            earned += (b - a) * tier.rate
    return earned
