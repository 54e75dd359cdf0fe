"""Partner performance for bonus and tier rules: one SQL aggregate per period, never a loop over conversions.

Net sales of a period: the amounts of its sale and recurring conversions whose commission is not cancelled
(not disqualified, not refunded in full while locked), less what later refunds of those sales gave back
(a refund in another currency than its sale is not netted). Paying conversions: every paying kind (sale,
recurring, lead, sign-up) with a commission that is not cancelled. Conversions whose commissions were not
computed yet do not count: the growth runs come after the daily commission run.

Sales in other currencies than a rule's are converted at the rate of the period's last day (one rate per
partner, currency and period, the same way a payout converts a balance), rounded once.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, localcontext

from sqlalchemy import case, func, select
from sqlmodel import Session

from partnerflow.models import Commission, Conversion
from partnerflow.models.payouts import CommissionStatus
from partnerflow.tasks.payouts.balances import FxLookup
from partnerflow.tasks.payouts.commission_rules import PAYING_KINDS, REVERSAL_KINDS, VOLUME_KINDS
from partnerflow.tasks.shared.money import exponent, round_minor


@dataclass
class Performance:
    """One partner's figures in one period: net sales per currency and paying conversions."""

    sales_minor: dict[str, int] = field(default_factory=dict)
    conversions: int = 0

    def sales_in(self, currency: str, on: datetime, fx: FxLookup) -> int:
        """Net sales in `currency`, other currencies converted at the rate on `on` (exactly, rounded once)."""
        with localcontext() as ctx:
            ctx.prec = 50
            total = Decimal(0)
            for cur, amount in self.sales_minor.items():
                if cur == currency:
                    total += amount
                else:
                    total += (Decimal(amount) * fx(cur, currency, on)).scaleb(exponent(currency) - exponent(cur))
            return round_minor(total)

    def evidence(self) -> dict[str, object]:
        return {"sales_minor_by_currency": dict(sorted(self.sales_minor.items())), "conversions": self.conversions}


def performance(session: Session, start: datetime, end: datetime,
                partner_ids: list[int] | None = None) -> dict[int, Performance]:
    """Per partner with any counted conversion in [start, end): their Performance."""
    refunds = (select(Conversion.reverses_id.label("sale_id"), Conversion.currency.label("currency"),
                      func.sum(Conversion.amount_minor).label("refunded"))
               .where(Conversion.kind.in_(REVERSAL_KINDS), Conversion.reverses_id.is_not(None))
               .group_by(Conversion.reverses_id, Conversion.currency).subquery())
    refunded = func.coalesce(refunds.c.refunded, 0)
    net = case((refunded >= Conversion.amount_minor, 0), else_=Conversion.amount_minor - refunded)
    sales = func.sum(case((Conversion.kind.in_(VOLUME_KINDS), net), else_=0))
    q = (select(Conversion.partner_id, Conversion.currency, sales, func.count())
         .join(Commission, Commission.conversion_id == Conversion.id)
         .outerjoin(refunds, (refunds.c.sale_id == Conversion.id) & (refunds.c.currency == Conversion.currency))
         .where(Conversion.partner_id.is_not(None), Conversion.kind.in_(PAYING_KINDS),
                Conversion.occurred_at >= start, Conversion.occurred_at < end,
                Commission.status != CommissionStatus.CANCELLED)
         .group_by(Conversion.partner_id, Conversion.currency))
    if partner_ids is not None:
        q = q.where(Conversion.partner_id.in_(partner_ids))
    out: dict[int, Performance] = defaultdict(Performance)
    for pid, currency, amount, count in session.execute(q):
        perf = out[pid]
        perf.sales_minor[currency] = perf.sales_minor.get(currency, 0) + int(amount or 0)
        perf.conversions += int(count)
    return dict(out)


def last_day(end: datetime) -> datetime:
    """The last moment inside a period ending (exclusive) at `end`: the day whose rate converts it."""
    return end - timedelta(microseconds=1)
