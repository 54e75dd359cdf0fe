"""When a step may go out: business hours in the recipient's time zone, and a daily cap per sender."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import false, func, text, update
from sqlmodel import Session, select

from partnerflow.models import Message, MessageStatus
from partnerflow.models.engine import is_postgres
from partnerflow.settings import get_settings

KIND = "outreach"
# Messages that count against today's cap: everything handed, or about to be handed, to the provider.
COUNTED = (MessageStatus.PENDING, MessageStatus.SENDING, MessageStatus.SENT, MessageStatus.BOUNCED)


def next_business_start(zone: ZoneInfo, now: datetime, start: int, end: int) -> datetime | None:
    """None when `now` is inside business hours in `zone`, else the next opening (UTC)."""
    local = now.astimezone(zone)
    if local.weekday() < 5 and start <= local.hour < end:
        return None
    day = local.date() if (local.weekday() < 5 and local.hour < start) else local.date() + timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return datetime.combine(day, time(start), tzinfo=zone).astimezone(UTC)


def _zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def outside_business_hours(timezone: str | None, now: datetime) -> datetime | None:
    """The next opening when it is outside business hours for this recipient; None to send now.

    A recipient without a known time zone is mailed at any hour.
    """
    zone = _zone(timezone)
    if zone is None:
        return None
    settings = get_settings().outreach
    return next_business_start(zone, now, settings.outreach_business_hours_start,
                               settings.outreach_business_hours_end)


def tomorrow(now: datetime) -> datetime:
    """UTC midnight after `now`, when the daily caps start again."""
    return datetime.combine(now.date() + timedelta(days=1), time(0), tzinfo=UTC)


def _sent_today(session: Session, sender: str, now: datetime, cap: int) -> int:
    """Outreach messages from `sender` since UTC midnight, counted only up to `cap` (all we need to know)."""
    midnight = datetime.combine(now.date(), time(0), tzinfo=UTC)
    today = (select(Message.id).where(
        Message.kind == KIND, Message.sender_email == sender, Message.created_at >= midnight,
        Message.status.in_(COUNTED)).limit(max(cap, 0)).subquery())
    return session.exec(select(func.count()).select_from(today)).one()


def hold_cap(session: Session, senders: Iterable[str]) -> None:
    """Hold these senders' daily caps until the session's transaction ends: the caller counts what was sent
    today and inserts its messages in that transaction, so two workers never both spend the same remainder."""
    if is_postgres():
        for sender in sorted(set(senders)):  # one order everywhere: two batches never wait on each other in a ring
            key = int.from_bytes(hashlib.sha256(f"daily-cap:{sender}".encode()).digest()[:8], "big", signed=True)
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    elif senders:  # SQLite: a write, even of nothing, takes the database's one write lock until commit
        session.execute(update(Message).where(false()).values(status=Message.status))


class DailyCap:
    """What is left of today's cap per sender, counted once per batch and then kept in memory.

    Pass the batch's `senders` to hold their caps (hold_cap) until the batch's messages are inserted."""

    def __init__(self, session: Session, now: datetime, senders: Iterable[str] = ()):
        self.session, self.now = session, now
        self.cap = get_settings().outreach.daily_send_cap
        self.left: dict[str, int] = {}
        hold_cap(session, list(senders))

    def take(self, sender: str) -> bool:
        """Use one of `sender`'s messages for today; False when the cap is reached."""
        if sender not in self.left:
            self.left[sender] = self.cap - _sent_today(self.session, sender, self.now, self.cap)
        if self.left[sender] <= 0:
            return False
        self.left[sender] -= 1
        return True
