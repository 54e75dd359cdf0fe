"""Per-partner figures of a week and the week before, from the SQL aggregates (tasks/reports/aggregates.py).

Money is in minor units of the reporting currency: each (currency, day) group is converted exactly and
each figure is rounded half-even once. Ratios are Decimals (None where the base is zero: a partner with
no clicks has no conversion rate, not 0 %).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from partnerflow.models import AuditLog, Partner, Stage
from partnerflow.tasks.reports import aggregates
from partnerflow.tasks.reports.aggregates import MoneyGroup
from partnerflow.tasks.reports.fx import RateBook
from partnerflow.tasks.reports.period import Period
from partnerflow.tasks.shared.money import round_minor

SHOWN_STAGES = (Stage.ACTIVE, Stage.DORMANT, Stage.SUSPENDED)  # listed even without activity
RATE_PLACES = Decimal("0.0001")
SQL_IN_CHUNK = 900


@dataclass
class Figures:
    clicks: int = 0
    conversions: int = 0
    sales: int = 0
    refunded_sales: int = 0
    revenue_minor: int = 0
    refunded_minor: int = 0
    commission_minor: int = 0

    @property
    def net_revenue_minor(self) -> int:
        return self.revenue_minor - self.refunded_minor

    @property
    def conversion_rate(self) -> Decimal | None:
        return _ratio(self.conversions, self.clicks)

    @property
    def refund_rate(self) -> Decimal | None:
        return _ratio(self.refunded_sales, self.sales)

    @property
    def epc_minor(self) -> int | None:
        """Earnings (commission) per 100 clicks."""
        return round_minor(Decimal(self.commission_minor) * 100 / self.clicks) if self.clicks else None

    @property
    def aov_minor(self) -> int | None:
        """Average order value: gross revenue per sale."""
        return round_minor(Decimal(self.revenue_minor) / self.sales) if self.sales else None

    def add(self, other: Figures) -> None:
        for name in ("clicks", "conversions", "sales", "refunded_sales", "revenue_minor", "refunded_minor",
                     "commission_minor"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def _ratio(part: int, whole: int) -> Decimal | None:
    return (Decimal(part) / whole).quantize(RATE_PLACES) if whole else None


@dataclass
class PartnerRow:
    partner_id: int
    name: str
    stage: str
    tier: str
    week: Figures = field(default_factory=Figures)
    before: Figures = field(default_factory=Figures)


@dataclass
class WeeklyFigures:
    period: Period
    currency: str
    rows: list[PartnerRow]
    newly_dormant: list[dict[str, Any]]

    def totals(self, week: int) -> Figures:
        total = Figures()
        for row in self.rows:
            total.add(row.week if week else row.before)
        return total


def _money(groups: list[MoneyGroup], rates: RateBook) -> dict[tuple[int, int], tuple[int, int]]:
    """(partner, week) -> (count, amount in the reporting currency, rounded once)."""
    exact: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    counts: dict[tuple[int, int], int] = defaultdict(int)
    for g in groups:
        exact[(g.partner_id, g.week)] += rates.convert(g.amount_minor, g.currency, g.day)
        counts[(g.partner_id, g.week)] += g.count
    return {key: (counts[key], round_minor(value)) for key, value in exact.items()}


def _partners(session: Session, wanted: set[int]) -> dict[int, tuple[str, str, str]]:
    rows = list(session.execute(select(Partner.id, Partner.legal_name, Partner.stage, Partner.tier)
                                .where(Partner.stage.in_([str(s) for s in SHOWN_STAGES]))).all())
    missing = sorted(wanted - {r[0] for r in rows})
    for i in range(0, len(missing), SQL_IN_CHUNK):
        rows += session.execute(select(Partner.id, Partner.legal_name, Partner.stage, Partner.tier)
                                .where(Partner.id.in_(missing[i:i + SQL_IN_CHUNK]))).all()
    return {pid: (name, stage, tier) for pid, name, stage, tier in rows}


def newly_dormant(session: Session, period: Period) -> list[dict[str, Any]]:
    """Partners the activation monitor marked dormant during the week (its audit entries)."""
    rows = session.execute(select(AuditLog.subject_id, AuditLog.at, AuditLog.details)
                           .where(AuditLog.action == "partner.dormant", AuditLog.at >= period.start,
                                  AuditLog.at < period.end).order_by(AuditLog.at)).all()
    ids = [int(sid) for sid, _, _ in rows if str(sid).isdigit()]
    names = dict(session.execute(select(Partner.id, Partner.legal_name).where(Partner.id.in_(ids))).all()
                 if ids else [])
    return [{"partner_id": int(sid), "name": names.get(int(sid), ""), "dormant_since": at,
             "quiet_since": (details or {}).get("quiet_since", "")}
            for sid, at, details in rows if str(sid).isdigit()]


def weekly_figures(session: Session, period: Period, currency: str) -> WeeklyFigures:
    clicks = aggregates.clicks(session, period)
    conversion_counts, sales = aggregates.conversions(session, period, currency)
    refunds = aggregates.refunds(session, period, currency)
    earned = aggregates.commissions(session, period, currency)
    rates = RateBook(session, currency, {g.currency for g in (*sales, *refunds, *earned)},
                     period.end.date())
    revenue, refunded, commission = _money(sales, rates), _money(refunds, rates), _money(earned, rates)
    active = {pid for pid, _ in (*clicks, *conversion_counts, *revenue, *commission)}
    partners = _partners(session, active)
    rows = []
    for pid, (name, stage, tier) in sorted(partners.items()):
        row = PartnerRow(pid, name, stage, tier)
        for week, figures in ((1, row.week), (0, row.before)):
            key = (pid, week)
            figures.clicks = clicks.get(key, 0)
            figures.conversions = conversion_counts.get(key, 0)
            figures.sales, figures.revenue_minor = revenue.get(key, (0, 0))
            figures.refunded_sales, figures.refunded_minor = refunded.get(key, (0, 0))
            figures.commission_minor = commission.get(key, (0, 0))[1]
        rows.append(row)
    return WeeklyFigures(period, currency, rows, newly_dormant(session, period))


def ranked(figures: WeeklyFigures, n: int) -> tuple[list[PartnerRow], list[PartnerRow]]:
    """Top n by the week's net revenue (then conversions, clicks), and the bottom n active partners."""
    def key(r: PartnerRow) -> tuple:
        return (r.week.net_revenue_minor, r.week.commission_minor, r.week.conversions, r.week.clicks)

    by_best = sorted(figures.rows, key=lambda r: (*(-v for v in key(r)), r.partner_id))
    top = [r for r in by_best if r.week.net_revenue_minor > 0][:n]
    shown = {r.partner_id for r in top}
    bottom = [r for r in sorted(figures.rows, key=lambda r: (*key(r), r.partner_id))
              if r.stage == Stage.ACTIVE and r.partner_id not in shown][:n]
    return top, bottom
