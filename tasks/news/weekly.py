"""The weekly performance email: each active partner's own clicks, conversions and commission, this
week against the week before.

Weeks are ISO weeks in UTC (Monday 00:00 to Monday 00:00). Figures come from three SQL aggregates
per batch of partners (clicks, conversions, commission by currency), each over both weeks at once.
- clicks: recorded clicks on the partner's tracking link, bots apart;
- conversions: sales, leads, sign-ups and renewals that happened in the week (refunds are not conversions);
- commission: the commission earned on the week's conversions and on its refunds (negative adjustments),
  cancelled commission left out, per currency.
Each mail's key is `news:weekly:<ISO week>:partner:<id>`: a re-run that week mails nobody twice.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import String, case, cast, exists, func, literal
from sqlmodel import Session, select

from partnerflow.models import Commission, Conversion, Message, Partner, Stage, session_scope, utcnow
from partnerflow.models.news import NewsPreference
from partnerflow.models.payouts import CommissionStatus
from partnerflow.models.tracking import Click
from partnerflow.providers.email import EmailProvider
from partnerflow.settings import get_settings
from partnerflow.tasks.news.delivery import FINAL, NewsMail, deliver_batch, settled
from partnerflow.tasks.news.preferences import list_headers, opt_out_url, opted_out_among
from partnerflow.tasks.news.rendering import partner_context, render_weekly
from partnerflow.tasks.payouts.commission_rules import REVERSAL_KINDS
from partnerflow.tasks.shared.money import format_money

KIND = "news_weekly"
_ISO_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


class WeekError(ValueError):
    """The week parameter is not an ISO week such as 2026-W48."""


def week_of(value: str | None, now: datetime | None = None) -> str:
    """The ISO week to report ("2026-W48"): the given one (checked), else the last week that has ended."""
    if value:
        match = _ISO_WEEK.match(value.strip())
        try:
            if not match:
                raise ValueError
            date.fromisocalendar(int(match[1]), int(match[2]), 1)
        except ValueError:
            raise WeekError(f"week {value[:20]!r} is not an ISO week such as 2026-W48") from None
        return value.strip()
    year, week, _ = ((now or utcnow()).date() - timedelta(days=7)).isocalendar()
    return f"{year}-W{week:02d}"


def bounds(week: str) -> tuple[datetime, datetime, datetime]:
    """(start of the week before, start of the week, end of the week), UTC."""
    match = _ISO_WEEK.match(week)
    start = datetime.combine(date.fromisocalendar(int(match[1]), int(match[2]), 1), datetime.min.time(), UTC)
    return start - timedelta(days=7), start, start + timedelta(days=7)


def message_key(week: str, partner_id: int) -> str:
    return f"news:weekly:{week}:partner:{partner_id}"


def weekly_batches(week: str) -> list[list[int]]:
    """Active partners who want the weekly email and have not had this week's yet, in batches."""
    if not get_settings().news.news_weekly_email:
        return []
    left = exists().where(NewsPreference.partner_id == Partner.id, NewsPreference.weekly_email.is_(False))
    done = exists().where(Message.idempotency_key == literal(f"news:weekly:{week}:partner:")
                          + cast(Partner.id, String), Message.status.in_(FINAL))
    with session_scope() as session:
        ids = session.exec(select(Partner.id).where(Partner.stage == Stage.ACTIVE, ~left, ~done)
                           .order_by(Partner.id)).all()
    size = get_settings().news.news_batch_size
    return [list(ids[i:i + size]) for i in range(0, len(ids), size)]


def _both_weeks(session: Session, week: str, at, value, keys: list, *where) -> list[tuple]:
    """(key..., this week's sum of `value`, the week before's), grouped by `keys`; `at` says when."""
    last_start, start, end = bounds(week)
    this_week = at >= start
    rows = session.execute(
        select(*keys, func.coalesce(func.sum(case((this_week, value), else_=0)), 0),
               func.coalesce(func.sum(case((this_week, 0), else_=value)), 0))
        .where(at >= last_start, at < end, *where).group_by(*keys)).all()
    return [tuple(r) for r in rows]


def figures(session: Session, partner_ids: list[int], week: str) -> dict[int, dict[str, Any]]:
    """Each partner's clicks, conversions and commission (minor units by currency): (this week, week before)."""
    out: dict[int, dict[str, Any]] = {pid: {"clicks": (0, 0), "conversions": (0, 0), "commission": {}}
                                      for pid in partner_ids}
    one = literal(1)
    for pid, this, last in _both_weeks(session, week, Click.clicked_at, one, [Click.partner_id],
                                       Click.partner_id.in_(partner_ids), Click.is_bot.is_(False)):
        out[pid]["clicks"] = (int(this), int(last))
    for pid, this, last in _both_weeks(session, week, Conversion.occurred_at, one, [Conversion.partner_id],
                                       Conversion.partner_id.in_(partner_ids), Conversion.kind.not_in(REVERSAL_KINDS)):
        out[pid]["conversions"] = (int(this), int(last))
    for pid, currency, this, last in _both_weeks(
            session, week, Conversion.occurred_at, Commission.amount_minor,
            [Commission.partner_id, Commission.currency],
            Commission.conversion_id == Conversion.id, Commission.partner_id.in_(partner_ids),
            Commission.status != CommissionStatus.CANCELLED):
        out[pid]["commission"][currency] = (int(this), int(last))
    return out


def _change(this: int, last: int) -> str:
    return "no change" if this == last else f"{'up' if this > last else 'down'} {abs(this - last)}"


def mail_context(partner: Any, own: dict[str, Any], week: str) -> dict[str, Any]:
    _, start, end = bounds(week)
    commission = [{"currency": currency, "this_week": format_money(this, currency),
                   "last_week": format_money(last, currency),
                   "change": "no change" if this == last else
                   f"{'up' if this > last else 'down'} {format_money(abs(this - last), currency)}"}
                  for currency, (this, last) in sorted(own["commission"].items())]
    return {**partner_context(partner), "week": week, "week_start": f"{start:%d %b %Y}",
            "week_end": f"{end - timedelta(days=1):%d %b %Y}",
            "clicks": {"this_week": own["clicks"][0], "last_week": own["clicks"][1], "change": _change(*own["clicks"])},
            "conversions": {"this_week": own["conversions"][0], "last_week": own["conversions"][1],
                            "change": _change(*own["conversions"])},
            "commission": commission, "opt_out_url": opt_out_url("weekly", partner.id)}


def send_weekly_batch(week: str, partner_ids: list[int], *, provider: EmailProvider | None = None,
                      now: datetime | None = None) -> dict[str, Any]:
    """Each partner's weekly email, once per week; a partner who turned it off meanwhile is left out."""
    with session_scope() as session:
        partners = session.exec(select(Partner).where(Partner.id.in_(partner_ids),
                                                      Partner.stage == Stage.ACTIVE)).all()
        left = opted_out_among(session, [p.id for p in partners], "weekly")
        own = figures(session, [p.id for p in partners if p.id not in left], week)
        session.expunge_all()
    done = settled([message_key(week, p.id) for p in partners if p.id not in left])
    mails = []
    for partner in (p for p in partners if p.id not in left and message_key(week, p.id) not in done):
        context = mail_context(partner, own[partner.id], week)
        mails.append(NewsMail(message_key(week, partner.id), KIND, partner.id, partner.email, render_weekly(context),
                              list_headers(context["opt_out_url"])))
    delivered = deliver_batch(mails, provider=provider, now=now)
    return delivered.report(already_sent=len(done), turned_off=len(left))
