"""The weekly report's SQL: one GROUP BY query per figure, over the reported week and the one before.

Rows are grouped by partner, week (1 = reported, 0 = the week before), currency and, for currencies other
than the reporting one, the UTC day (its exchange rate). Python only converts and adds these groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import case, func, literal, select
from sqlalchemy.sql import ColumnElement
from sqlmodel import Session

from partnerflow.models import Commission, Conversion
from partnerflow.models.payouts import CommissionStatus
from partnerflow.models.tracking import Click
from partnerflow.tasks.payouts.commission_rules import PAYING_KINDS, REVERSAL_KINDS, VOLUME_KINDS
from partnerflow.tasks.reports.fx import as_day
from partnerflow.tasks.reports.period import Period


@dataclass(frozen=True, slots=True)  # hundreds of thousands of groups at scale: no per-object dict
class MoneyGroup:
    partner_id: int
    week: int  # 1 = the reported week, 0 = the week before
    currency: str
    day: date | None  # None for the reporting currency (no rate needed)
    count: int
    amount_minor: int


def utc_day(session: Session, column: Any) -> ColumnElement:
    """The UTC calendar day of a timestamp column, on SQLite and PostgreSQL."""
    if session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone("UTC", column))
    return func.date(column)


# Computed columns are labelled: the label names them in the result, and GROUP BY repeats the same expression.
def _week(column: Any, period: Period) -> ColumnElement:
    return case((column >= period.start, 1), else_=0).label("week")


def _day_if_foreign(session: Session, currency: Any, when: Any, quote: str) -> ColumnElement:
    return case((currency == quote, literal(None)), else_=utc_day(session, when)).label("day")


def _in_window(column: Any, period: Period) -> ColumnElement:
    return (column >= period.previous.start) & (column < period.end)


def clicks(session: Session, period: Period) -> dict[tuple[int, int], int]:
    """Human clicks (bots, previews and prefetches counted apart) per (partner, week)."""
    week = _week(Click.clicked_at, period)
    rows = session.execute(select(Click.partner_id, week, func.count())
                           .where(_in_window(Click.clicked_at, period), Click.is_bot.is_(False))
                           .group_by(Click.partner_id, week)).all()
    return {(pid, w): n for pid, w, n in rows}


def conversions(session: Session, period: Period, quote: str) -> tuple[dict[tuple[int, int], int], list[MoneyGroup]]:
    """Conversions (every paying kind) per (partner, week), and sales (count, amount) per money group."""
    week = _week(Conversion.occurred_at, period)
    day = _day_if_foreign(session, Conversion.currency, Conversion.occurred_at, quote)
    is_sale = Conversion.kind.in_([str(k) for k in VOLUME_KINDS])
    rows = session.execute(
        select(Conversion.partner_id, week, Conversion.currency, day, func.count(),
               func.sum(case((is_sale, 1), else_=0)), func.sum(case((is_sale, Conversion.amount_minor), else_=0)))
        .where(_in_window(Conversion.occurred_at, period), Conversion.partner_id.is_not(None),
               Conversion.kind.in_([str(k) for k in PAYING_KINDS]))
        .group_by(Conversion.partner_id, week, Conversion.currency, day)).all()
    counts: dict[tuple[int, int], int] = {}
    sales = []
    for pid, w, cur, d, n, n_sales, amount in rows:
        counts[(pid, w)] = counts.get((pid, w), 0) + n
        if n_sales:
            sales.append(MoneyGroup(pid, w, cur, as_day(d), int(n_sales), int(amount or 0)))
    return counts, sales


def refunds(session: Session, period: Period, quote: str) -> list[MoneyGroup]:
    """The week's sales that were refunded, charged back or reversed (so far): how many, and how much.

    A reversal of amount 0 takes back the whole sale; partial ones add up, never beyond the sale.
    """
    sale = Conversion.__table__.alias("sale")
    back = Conversion.__table__.alias("reversal")
    per_sale = (
        select(sale.c.id, sale.c.partner_id, sale.c.occurred_at, sale.c.currency, sale.c.amount_minor,
               func.min(back.c.amount_minor).label("smallest"), func.sum(back.c.amount_minor).label("total"))
        .select_from(back.join(sale, sale.c.id == back.c.reverses_id))
        .where(back.c.kind.in_([str(k) for k in REVERSAL_KINDS]), sale.c.kind.in_([str(k) for k in VOLUME_KINDS]),
               _in_window(sale.c.occurred_at, period), sale.c.partner_id.is_not(None))
        .group_by(sale.c.id, sale.c.partner_id, sale.c.occurred_at, sale.c.currency, sale.c.amount_minor)
    ).subquery()
    week = _week(per_sale.c.occurred_at, period)
    day = _day_if_foreign(session, per_sale.c.currency, per_sale.c.occurred_at, quote)
    whole = (per_sale.c.smallest == 0) | (per_sale.c.total >= per_sale.c.amount_minor)
    refunded = case((whole, per_sale.c.amount_minor), else_=per_sale.c.total)
    rows = session.execute(select(per_sale.c.partner_id, week, per_sale.c.currency, day, func.count(),
                                  func.sum(refunded))
                           .group_by(per_sale.c.partner_id, week, per_sale.c.currency, day)).all()
    return [MoneyGroup(pid, w, cur, as_day(d), int(n), int(amount or 0)) for pid, w, cur, d, n, amount in rows]


def commissions(session: Session, period: Period, quote: str) -> list[MoneyGroup]:
    """Commissions earned by the week's conversions (refund deductions included, cancelled ones not),
    at the rate of the conversion's day; bonus lines (no conversion) count in the week they were granted."""
    rows = []
    for when, linked in ((Conversion.occurred_at, True), (Commission.created_at, False)):
        week, day = _week(when, period), _day_if_foreign(session, Commission.currency, when, quote)
        query = select(Commission.partner_id, week, Commission.currency, day, func.count(),
                       func.sum(Commission.amount_minor))
        query = (query.join(Conversion, Conversion.id == Commission.conversion_id) if linked
                 else query.where(Commission.conversion_id.is_(None)))
        rows += session.execute(query.where(_in_window(when, period), Commission.status != CommissionStatus.CANCELLED)
                                .group_by(Commission.partner_id, week, Commission.currency, day)).all()
    return [MoneyGroup(pid, w, cur, as_day(d), int(n), int(amount or 0)) for pid, w, cur, d, n, amount in rows]


def program_by_day(session: Session, first: Period, last: Period) -> tuple[list[tuple], list[tuple]]:
    """Revenue (sales) and commission of the whole program per (currency, UTC day), for the weekly chart."""
    window = (Conversion.occurred_at >= first.start) & (Conversion.occurred_at < last.end)
    day = utc_day(session, Conversion.occurred_at).label("day")
    revenue = session.execute(
        select(Conversion.currency, day, func.sum(Conversion.amount_minor))
        .where(window, Conversion.partner_id.is_not(None), Conversion.kind.in_([str(k) for k in VOLUME_KINDS]))
        .group_by(Conversion.currency, day)).all()
    earned = session.execute(
        select(Commission.currency, day, func.sum(Commission.amount_minor))
        .join(Conversion, Conversion.id == Commission.conversion_id)
        .where(window, Commission.status != CommissionStatus.CANCELLED)
        .group_by(Commission.currency, day)).all()
    granted_day = utc_day(session, Commission.created_at).label("day")
    earned += session.execute(  # bonus lines, on the day they were granted
        select(Commission.currency, granted_day, func.sum(Commission.amount_minor))
        .where(Commission.conversion_id.is_(None), Commission.created_at >= first.start,
               Commission.created_at < last.end, Commission.status != CommissionStatus.CANCELLED)
        .group_by(Commission.currency, granted_day)).all()
    return ([(cur, as_day(d), int(a or 0)) for cur, d, a in revenue],
            [(cur, as_day(d), int(a or 0)) for cur, d, a in earned])
