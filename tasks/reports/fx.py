"""Amounts in the reporting currency, converted with the rate of each conversion's day.

The rule is tasks/payouts/balances.py fx_rate's: the latest rate on or before the day, the inverse
pair when only that exists. Rates are read once for the whole report (a small table) and each
(currency, day) factor is computed once; amounts arrive already summed per (currency, day) by SQL.
Sums stay exact Decimals; the caller rounds half-even once per figure.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from datetime import date
from decimal import Decimal, localcontext

from sqlalchemy import and_, or_, select
from sqlmodel import Session

from partnerflow.models.payouts import FxRate
from partnerflow.tasks.shared.money import exponent


class RateBook:
    """Factors from minor units of a currency to minor units of `quote` on a day."""

    def __init__(self, session: Session, quote: str, currencies: Iterable[str], until: date) -> None:
        self.quote = quote
        others = sorted({c for c in currencies if c and c != quote})
        self._direct: dict[str, list[tuple[date, Decimal]]] = {c: [] for c in others}
        self._inverse: dict[str, list[tuple[date, Decimal]]] = {c: [] for c in others}
        self._factors: dict[tuple[str, date | None], Decimal] = {}
        self.missing: set[tuple[str, date]] = set()
        if not others:
            return
        rows = session.execute(
            select(FxRate.day, FxRate.base, FxRate.quote, FxRate.rate)
            .where(FxRate.day <= until,
                   or_(and_(FxRate.base.in_(others), FxRate.quote == quote),
                       and_(FxRate.base == quote, FxRate.quote.in_(others))))
            .order_by(FxRate.day)).all()
        for day, base, rate_quote, rate in rows:
            if rate_quote == quote:
                self._direct[base].append((day, Decimal(rate)))
            else:
                self._inverse[rate_quote].append((day, Decimal(rate)))

    @staticmethod
    def _latest(rates: list[tuple[date, Decimal]], day: date) -> Decimal | None:
        index = bisect_right(rates, day, key=lambda item: item[0])
        return rates[index - 1][1] if index else None

    def rate(self, currency: str, day: date) -> Decimal:
        """1 `currency` = rate `quote` on `day`; LookupError naming the pair when there is none."""
        if currency == self.quote:
            return Decimal(1)
        direct = self._latest(self._direct.get(currency, []), day)
        if direct is not None:
            return direct
        inverse = self._latest(self._inverse.get(currency, []), day)
        if inverse is not None:
            with localcontext() as ctx:
                ctx.prec = 34
                return Decimal(1) / inverse
        raise LookupError(f"no exchange rate {currency}/{self.quote} on or before {day}; "
                          "add one to the fx_rate table (partnerflow fx add)")

    def factor(self, currency: str, day: date | None) -> Decimal:
        """What one minor unit of `currency` on `day` is worth in minor units of the quote currency."""
        key = (currency, day)
        if key not in self._factors:
            if currency == self.quote:
                self._factors[key] = Decimal(1)
            else:
                if day is None:
                    raise ValueError(f"{currency} amounts need their day to be converted")
                with localcontext() as ctx:
                    ctx.prec = 50
                    self._factors[key] = self.rate(currency, day).scaleb(exponent(self.quote) - exponent(currency))
        return self._factors[key]

    def convert(self, amount_minor: int, currency: str, day: date | None) -> Decimal:
        """Exact, not rounded: sums of these are rounded once by the caller."""
        with localcontext() as ctx:
            ctx.prec = 50
            return Decimal(amount_minor) * self.factor(currency, day)


def as_day(value: object) -> date | None:
    """A day from SQL: PostgreSQL gives a date, SQLite's date() a 'YYYY-MM-DD' string."""
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])
