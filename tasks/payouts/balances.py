"""Balances and FX: commissions leaving their lock period, exchange rates, amounts in the payout currency.

Rates are Decimal (stored as text); an amount is converted exactly and rounded half-even once, at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation, localcontext

from sqlalchemy import update
from sqlmodel import Session, select

from partnerflow.models import Commission, Partner, session_scope, utcnow
from partnerflow.models.payouts import CommissionStatus, FxRate
from partnerflow.tasks.shared.money import check_currency, exponent, round_minor
from partnerflow.tasks.shared.terms import CommissionTerms, default_for

FxLookup = Callable[[str, str, datetime], Decimal]
# (total minor units, number of commissions) per currency
Sums = dict[str, tuple[int, int]]


def release_locked(now: datetime | None = None) -> int:
    """Commissions whose lock period is over become payable. Returns how many."""
    now = now or utcnow()
    with session_scope() as session:
        result = session.execute(
            update(Commission).where(Commission.status == CommissionStatus.PENDING, Commission.payable_at <= now)
            .values(status=CommissionStatus.PAYABLE)
        )
        return result.rowcount or 0


def fx_rate(session: Session, base: str, quote: str, on: datetime) -> Decimal:
    """The latest rate on or before `on` (1 base = rate quote); an inverse rate is used when only that exists."""
    if base == quote:
        return Decimal(1)
    day = on.date()
    row = session.exec(select(FxRate).where(FxRate.base == base, FxRate.quote == quote, FxRate.day <= day)
                       .order_by(FxRate.day.desc())).first()
    if row:
        return Decimal(row.rate)
    inverse = session.exec(select(FxRate).where(FxRate.base == quote, FxRate.quote == base, FxRate.day <= day)
                           .order_by(FxRate.day.desc())).first()
    if inverse:
        with localcontext() as ctx:
            ctx.prec = 34
            return Decimal(1) / Decimal(inverse.rate)
    raise LookupError(f"no exchange rate {base}/{quote} on or before {day}; add one to the fx_rate table")


def add_fx_rate(day: date, base: str, quote: str, rate: str) -> Decimal:
    """Record 1 base = rate quote on day; ValueError when the rate is not a positive decimal."""
    try:
        value = Decimal(rate)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or value <= 0:
        raise ValueError(f"rate {rate!r} is not a positive decimal")
    with session_scope() as session:
        session.add(FxRate(day=day, base=check_currency(base), quote=check_currency(quote), rate=str(value)))
    return value


def fx_lookup(session: Session) -> FxLookup:
    """fx_rate() for one session, each (pair, day) read once."""
    cache: dict[tuple[str, str, str], Decimal] = {}

    def lookup(base: str, quote: str, at: datetime) -> Decimal:
        key = (base, quote, at.date().isoformat())
        if key not in cache:
            cache[key] = fx_rate(session, base, quote, at)
        return cache[key]

    return lookup


def convert(amount_minor: int, base: str, quote: str, rate: Decimal) -> int:
    """Minor units of `base` to minor units of `quote`, rounded half-even once, at the end."""
    if base == quote:
        return amount_minor
    with localcontext() as ctx:
        ctx.prec = 50
        value = Decimal(amount_minor) * rate
        value = value.scaleb(exponent(quote) - exponent(base))
    return round_minor(value)


def balance(by_currency: Sums, payout_currency: str, on: datetime, fx: FxLookup) -> tuple[int, dict[str, str]]:
    """Sum per currency, converted once per currency into the payout currency; also the rates used."""
    total, used = 0, {}
    for cur, (amount, _n) in sorted(by_currency.items()):
        if cur != payout_currency:
            rate = fx(cur, payout_currency, on)
            used[f"{cur}/{payout_currency}"] = str(rate)
            total += convert(amount, cur, payout_currency, rate)
        else:
            total += amount
    return total, used


def payout_threshold(partner: Partner) -> int:
    """The partner's payout threshold: from their terms when they set one, else the partner's own."""
    try:
        terms = CommissionTerms.parse(partner.commission_terms) or default_for(partner.partner_type, partner.tier)
    except Exception:  # unreadable terms never block the balance; the defaults apply
        terms = default_for(partner.partner_type, partner.tier)
    return terms.payout_threshold_minor if terms.payout_threshold_minor is not None else partner.payout_threshold_minor
