"""What a partner reads about their own earnings in the portal: monthly figures, balance by status, commissions.

Every function takes the signed-in partner's id and reads only their rows. Figures are SQL aggregates
(GROUP BY with a CASE per month), never a loop over rows; money stays integer minor units per currency.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import case, func, select
from sqlalchemy.orm import aliased

from partnerflow.models import Commission, Conversion, Payout, session_scope, utcnow
from partnerflow.models.payouts import CommissionStatus
from partnerflow.models.tracking import Click
from partnerflow.tasks.payouts.commission_rules import PAYING_KINDS, REVERSAL_KINDS, add_months, period_of

PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
STATUSES = ("pending", "payable", "paid", "cancelled")
PAGE_SIZE = 50
CSV_CHUNK = 1000
# How each reversal kind reads on the partner's statement.
REVERSED_BY = {"refund": "refunded", "chargeback": "charged back", "reversal": "reversed by the shop"}


def check_period(text: str) -> str:
    """A "YYYY-MM" month, or ValueError with a sentence the partner can act on."""
    text = (text or "").strip()
    if not PERIOD.match(text):
        raise ValueError("Month must look like 2026-01 (year-month).")
    return text


def month_start(period: str) -> datetime:
    year, month = PERIOD.match(check_period(period)).groups()
    return datetime(int(year), int(month), 1, tzinfo=UTC)


@dataclass
class MonthFigures:
    period: str
    clicks: int = 0  # people: bots and prefetchers are counted apart
    bot_clicks: int = 0
    conversions: int = 0
    revenue: dict[str, int] = field(default_factory=dict)  # minor units per currency, before refunds
    refunded: dict[str, int] = field(default_factory=dict)
    commission: dict[str, int] = field(default_factory=dict)  # earned on the month's sales, net of reversals


def bucket(column, starts: list[datetime]):
    """CASE mapping a timestamp to the index of the span it falls in (span starts ascending, plus the end),
    so one GROUP BY counts every month or week on SQLite and PostgreSQL alike."""
    return case(*[(column < starts[i + 1], i) for i in range(len(starts) - 1)], else_=None)


def month_figures(partner_id: int, periods: list[str]) -> list[MonthFigures]:
    """Clicks, conversions, revenue, refunds and commission for each "YYYY-MM" in `periods` (any order)."""
    ordered = sorted({check_period(p) for p in periods})
    if not ordered:
        return []
    starts = [month_start(p) for p in ordered] + [add_months(month_start(ordered[-1]), 1)]
    contiguous = [period_of(add_months(starts[0], i)) for i in range(len(starts) - 1)] == ordered
    if not contiguous:  # buckets need neighbouring months; ask for each month apart
        return [month_figures(partner_id, [p])[0] for p in ordered]
    figures = {p: MonthFigures(p) for p in ordered}
    with session_scope() as session:
        by_month = bucket(Click.clicked_at, starts)
        for index, is_bot, count in session.execute(
                select(by_month, Click.is_bot, func.count()).where(
                    Click.partner_id == partner_id, Click.clicked_at >= starts[0], Click.clicked_at < starts[-1])
                .group_by(by_month, Click.is_bot)):
            target = figures[ordered[index]]
            if is_bot:
                target.bot_clicks += count
            else:
                target.clicks += count
        by_month = bucket(Conversion.occurred_at, starts)
        paying = Conversion.kind.in_([str(k) for k in PAYING_KINDS])
        for index, is_paying, currency, count, total in session.execute(
                select(by_month, paying, Conversion.currency, func.count(), func.sum(Conversion.amount_minor))
                .where(Conversion.partner_id == partner_id, Conversion.occurred_at >= starts[0],
                       Conversion.occurred_at < starts[-1],
                       Conversion.kind.in_([str(k) for k in (*PAYING_KINDS, *REVERSAL_KINDS)]))
                .group_by(by_month, paying, Conversion.currency)):
            target = figures[ordered[index]]
            if is_paying:
                target.conversions += count
                target.revenue[currency] = target.revenue.get(currency, 0) + int(total or 0)
            else:
                target.refunded[currency] = target.refunded.get(currency, 0) + int(total or 0)
        for period, currency, total in session.execute(
                select(Commission.period, Commission.currency, func.sum(Commission.amount_minor))
                .where(Commission.partner_id == partner_id, Commission.period.in_(ordered),
                       Commission.status != CommissionStatus.CANCELLED)
                .group_by(Commission.period, Commission.currency)):
            figures[period].commission[currency] = int(total or 0)
    return [figures[p] for p in ordered]


@dataclass
class BalanceLine:
    """One status and currency of the partner's balance, with what moves it on (a date or a reason)."""

    status: str  # pending | payable | in_payment | held | paid | reversed
    currency: str
    amount_minor: int
    count: int
    first_at: datetime | None = None  # pending: first payable date; paid: last paid date
    last_at: datetime | None = None
    reason: str = ""


def balance_lines(partner_id: int) -> list[BalanceLine]:
    """The partner's commissions summed per status and currency.

    `payable` is what the next batch would take; statements_payouts.balance_with_holds turns it into `held`
    when the batch's own rules would hold the partner."""
    lines: list[BalanceLine] = []
    with session_scope() as session:
        attached = Commission.payout_id.is_not(None)
        for status, in_payout, currency, total, count, first, last, paid_at in session.execute(
                select(Commission.status, attached, Commission.currency, func.sum(Commission.amount_minor),
                       func.count(), func.min(Commission.payable_at), func.max(Commission.payable_at),
                       func.max(Payout.paid_at))
                .outerjoin(Payout, Payout.id == Commission.payout_id)
                .where(Commission.partner_id == partner_id, Commission.status != CommissionStatus.CANCELLED)
                .group_by(Commission.status, attached, Commission.currency)):
            amount, n = int(total or 0), int(count)
            if status == CommissionStatus.PENDING:
                lines.append(BalanceLine("pending", currency, amount, n, first, last))
            elif status == CommissionStatus.PAID:
                lines.append(BalanceLine("paid", currency, amount, n, paid_at, paid_at))
            elif status == CommissionStatus.PAYABLE and in_payout:
                lines.append(BalanceLine("in_payment", currency, amount, n))
            elif status == CommissionStatus.PAYABLE:
                lines.append(BalanceLine("payable", currency, amount, n, first, last))
        reversal = aliased(Conversion)
        for kind, currency, total, count in session.execute(
                select(reversal.kind, Commission.currency, func.sum(Commission.amount_minor), func.count())
                .outerjoin(reversal, (reversal.reverses_id == Commission.conversion_id)
                           & reversal.kind.in_([str(k) for k in REVERSAL_KINDS]))
                .where(Commission.partner_id == partner_id, Commission.status == CommissionStatus.CANCELLED,
                       Commission.amount_minor != 0)
                .group_by(reversal.kind, Commission.currency)):
            lines.append(BalanceLine("reversed", currency, int(total or 0), int(count),
                                     reason=REVERSED_BY.get(kind, "did not qualify under your terms")))
    order = ("pending", "payable", "in_payment", "held", "paid", "reversed")
    return sorted(lines, key=lambda line: (order.index(line.status), line.currency, line.reason))


@dataclass(frozen=True)
class CommissionRow:
    id: int
    occurred_at: datetime
    kind: str
    reference: str
    product: str
    sale_minor: int
    sale_currency: str
    amount_minor: int
    currency: str
    status: str
    period: str
    payable_at: datetime | None
    payout_id: int | None
    rule: str


_occurred_at = func.coalesce(Conversion.occurred_at, Commission.created_at)


def _commission_query(partner_id: int, status: str | None, period: str | None):
    # A bonus line has no conversion: it reads as a "bonus" on the day it was granted, with its reason.
    query = (select(Commission.id, _occurred_at, func.coalesce(Conversion.kind, Commission.kind),
                    func.coalesce(Conversion.external_id, ""), func.coalesce(Conversion.product, ""),
                    func.coalesce(Conversion.amount_minor, 0), func.coalesce(Conversion.currency, Commission.currency),
                    Commission.amount_minor, Commission.currency, Commission.status, Commission.period,
                    Commission.payable_at, Commission.payout_id,
                    func.coalesce(Commission.reason, Commission.rule))
             .outerjoin(Conversion, Conversion.id == Commission.conversion_id)
             .where(Commission.partner_id == partner_id))
    if status:
        query = query.where(Commission.status == status)
    if period:
        query = query.where(Commission.period == period)
    return query


def check_filters(status: str | None, period: str | None) -> tuple[str | None, str | None]:
    """The list's filters from the query string: known status, "YYYY-MM" month; ValueError otherwise."""
    status = (status or "").strip().lower() or None
    if status and status not in STATUSES:
        raise ValueError(f"Status must be one of: {', '.join(STATUSES)}.")
    period = check_period(period) if (period or "").strip() else None
    return status, period


def commission_page(partner_id: int, *, status: str | None = None, period: str | None = None, page: int = 1,
                    size: int = PAGE_SIZE) -> tuple[list[CommissionRow], int]:
    """One page of the partner's commissions, newest first, and how many match the filters."""
    page = max(1, page)
    with session_scope() as session:
        total = session.execute(select(func.count()).select_from(
            _commission_query(partner_id, status, period).subquery())).scalar_one()
        rows = session.execute(_commission_query(partner_id, status, period)
                               .order_by(_occurred_at.desc(), Commission.id.desc())
                               .limit(size).offset((page - 1) * size)).all()
    return [CommissionRow(*row) for row in rows], int(total)


def iter_commissions(partner_id: int, *, status: str | None = None, period: str | None = None,
                     chunk: int = CSV_CHUNK) -> Iterator[CommissionRow]:
    """Every matching commission, oldest first, read in chunks by id so a large export holds little memory."""
    after = 0
    while True:
        with session_scope() as session:
            rows = session.execute(_commission_query(partner_id, status, period).where(Commission.id > after)
                                   .order_by(Commission.id).limit(chunk)).all()
        for row in rows:
            yield CommissionRow(*row)
        if len(rows) < chunk:
            return
        after = rows[-1][0]


def current_periods(now: datetime | None = None) -> tuple[str, str]:
    """(this month, last month) as "YYYY-MM"."""
    start = (now or utcnow()).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return period_of(start), period_of(add_months(start, -1))
