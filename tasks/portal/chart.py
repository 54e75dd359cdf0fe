"""The portal home's chart: one partner's own clicks, conversions and commission per week, as a PNG.

Weeks are counted back from the current week's Monday (UTC); each figure is one GROUP BY over a CASE
that maps a timestamp to its week. Drawn with matplotlib's Agg canvas (no display, no pyplot state),
so concurrent requests never share a figure.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator
from sqlalchemy import func, select

from partnerflow.models import Commission, Conversion, session_scope, utcnow
from partnerflow.models.payouts import CommissionStatus
from partnerflow.models.tracking import Click
from partnerflow.tasks.payouts.commission_rules import PAYING_KINDS
from partnerflow.tasks.portal.statements import bucket
from partnerflow.tasks.shared.money import format_money

WEEKS = 12


@dataclass
class WeeklySeries:
    week_starts: list[datetime]
    clicks: list[int]
    conversions: list[int]
    commission: dict[str, list[int]] = field(default_factory=dict)  # minor units per currency


def weekly_series(partner_id: int, now: datetime | None = None, weeks: int = WEEKS) -> WeeklySeries:
    """The last `weeks` weeks (this one included) of the partner's people clicks, conversions and commission."""
    now = now or utcnow()
    monday = (now - timedelta(days=now.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    starts = [monday - timedelta(weeks=weeks - 1 - i) for i in range(weeks + 1)]
    series = WeeklySeries(starts[:-1], [0] * weeks, [0] * weeks)
    with session_scope() as session:
        by_week = bucket(Click.clicked_at, starts)
        for index, count in session.execute(
                select(by_week, func.count()).where(Click.partner_id == partner_id, Click.is_bot == False,  # noqa: E712
                                                   Click.clicked_at >= starts[0], Click.clicked_at < starts[-1])
                .group_by(by_week)):
            series.clicks[index] = int(count)
        by_week = bucket(Conversion.occurred_at, starts)
        for index, count in session.execute(
                select(by_week, func.count()).where(
                    Conversion.partner_id == partner_id, Conversion.kind.in_([str(k) for k in PAYING_KINDS]),
                    Conversion.occurred_at >= starts[0], Conversion.occurred_at < starts[-1])
                .group_by(by_week)):
            series.conversions[index] = int(count)
        earned_at = func.coalesce(Conversion.occurred_at, Commission.created_at)  # a bonus: when it was granted
        by_week = bucket(earned_at, starts)
        for index, currency, total in session.execute(
                select(by_week, Commission.currency, func.sum(Commission.amount_minor))
                .outerjoin(Conversion, Conversion.id == Commission.conversion_id)
                .where(Commission.partner_id == partner_id, Commission.status != CommissionStatus.CANCELLED,
                       earned_at >= starts[0], earned_at < starts[-1])
                .group_by(by_week, Commission.currency)):
            series.commission.setdefault(currency, [0] * weeks)[index] = int(total or 0)
    return series


def chart_png(series: WeeklySeries) -> bytes:
    """Two panels sharing the weeks: clicks and conversions above, commission per currency below."""
    figure = Figure(figsize=(6.4, 4.8), dpi=100, layout="constrained")  # read on phones: few, large labels
    FigureCanvasAgg(figure)
    counts, money = figure.subplots(2, 1, sharex=True)
    labels = [f"{start:%d %b}" for start in series.week_starts]
    positions = list(range(len(labels)))
    counts.plot(positions, series.clicks, marker="o", label="clicks")
    counts.plot(positions, series.conversions, marker="s", label="conversions")
    counts.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
    counts.set_ylim(bottom=0)
    counts.legend(loc="upper left", fontsize=11)
    counts.set_title("Your links, per week", fontsize=13)
    for currency, values in sorted(series.commission.items()):
        money.plot(positions, values, marker="o", label=f"commission ({currency})")
    if len(series.commission) == 1:  # one currency: the axis reads in money
        (currency,) = series.commission
        money.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: format_money(round(value), currency)))
    else:
        money.set_ylabel("minor units")
    money.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
    money.set_ylim(bottom=min([0, *(v for values in series.commission.values() for v in values)]))
    if series.commission:
        money.legend(loc="upper left", fontsize=11)
    else:
        money.text(0.5, 0.5, "no commission yet", ha="center", va="center", transform=money.transAxes, fontsize=12)
    money.set_xticks(positions[::2], labels[::2], rotation=45, ha="right")
    for axes in (counts, money):
        axes.tick_params(labelsize=11)
        axes.grid(axis="y", alpha=0.3)
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()
