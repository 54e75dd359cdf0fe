"""One-off mail whose send was never confirmed: settled by asking the provider, or given up and the team told.

A mail is left `sending` when the provider's answer never came (a timeout after the request
went out, SMTP cut after DATA) or the process died between the call and our update. SendGrid's
`processed` event settles it through the event webhook (web/outreach.py); the outbox can be
looked up. What nothing settles within `mail_unconfirmed_after_seconds` of the attempt is
marked failed and audited, and the team gets one mail about it. It is never sent again by
itself: the recipient may already have it.

Outreach steps are reconciled by the outreach sender (tasks/outreach/outcomes.py), not here.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from sqlalchemy import String, cast, exists, literal, update
from sqlalchemy.orm import aliased
from sqlmodel import select

from partnerflow.models import Message, MessageStatus, audit, session_scope, utcnow
from partnerflow.providers.email import get_email_provider
from partnerflow.providers.errors import RetryableError
from partnerflow.settings import get_settings
from partnerflow.tasks.shared.mail import deliver

ALERT_KIND = "mail_unconfirmed"  # the team's mail about one given-up message (never alerted about itself)
ALERT_KEY = "mail-unconfirmed:"
GIVEN_UP = "never confirmed by the provider; not re-sent automatically (the recipient may have it)"


def settle_unconfirmed_mail(now: datetime | None = None) -> dict[str, int]:
    """Settle or give up every one-off mail still `sending`; then tell the team about the given-up ones."""
    now = now or utcnow()
    settings = get_settings().mail
    provider = get_email_provider(settings)
    cutoff = now - timedelta(seconds=settings.mail_unconfirmed_after_seconds)
    with session_scope() as session:
        stuck = session.exec(select(Message).where(Message.status == MessageStatus.SENDING,
                                                   Message.enrollment_id.is_(None)).order_by(Message.id)).all()
    counts: Counter = Counter()
    for message in stuck:
        accepted = provider.lookup(message.idempotency_key) if message.provider in (None, provider.name) else None
        if accepted is not None:
            counts["confirmed"] += _settle(message, MessageStatus.SENT, provider.name, accepted, now)
        elif (message.attempted_at or message.created_at) > cutoff:
            counts["waiting"] += 1
        else:
            counts["failed"] += _settle(message, MessageStatus.FAILED, message.provider, None, now)
    counts["team_told"], counts["alerts_deferred"] = tell_team()
    return dict(counts)


def _settle(message: Message, status: MessageStatus, provider: str | None, provider_message_id: str | None,
            now: datetime) -> int:
    """Compare-and-set from `sending`: a webhook that settled it meanwhile wins. Audited in the same transaction."""
    values = {"status": status, "provider": provider}
    if status == MessageStatus.SENT:
        values |= {"provider_message_id": provider_message_id, "sent_at": now, "error": None}
    else:
        values["error"] = GIVEN_UP
    with session_scope() as session:
        won = session.execute(update(Message).where(Message.id == message.id,
                                                    Message.status == MessageStatus.SENDING)
                              .values(**values)).rowcount == 1
        if won:
            attempted = message.attempted_at or message.created_at
            audit(session, actor="system",
                  action="mail.confirmed_by_lookup" if status == MessageStatus.SENT else "mail.unconfirmed_failed",
                  subject_type="message", subject_id=message.id,
                  details={"kind": message.kind, "provider": provider, "attempted_at": attempted.isoformat()})
    return int(won)


def tell_team() -> tuple[int, int]:
    """Mail the team once per given-up message (key `mail-unconfirmed:{id}`); (told, deferred to the next sweep).

    Looked up from the table rather than remembered by the sweep, so an alert whose sweep died after
    the message was failed, or whose send was refused for now, goes out on the next sweep.
    """
    alert = aliased(Message)
    settled_alert = exists().where(alert.idempotency_key == literal(ALERT_KEY) + cast(Message.id, String),
                                   alert.status != MessageStatus.PENDING)
    with session_scope() as session:
        owed = session.exec(select(Message).where(Message.status == MessageStatus.FAILED, Message.error == GIVEN_UP,
                                                  Message.kind != ALERT_KIND, ~settled_alert)
                            .order_by(Message.id)).all()
    team = get_settings().team_email
    for told, message in enumerate(owed):
        attempted = message.attempted_at or message.created_at
        context = {"message_id": message.id, "kind": message.kind, "to_email": message.to_email,
                   "subject": message.subject, "provider": message.provider or "unknown",
                   "attempted_at": f"{attempted:%Y-%m-%d %H:%M} UTC"}
        try:
            deliver(f"{ALERT_KEY}{message.id}", kind=ALERT_KIND, to_email=team, template="shared/mail_unconfirmed",
                    context=context)
        except RetryableError:  # the provider refuses for now; the next sweep tries again
            return told, len(owed) - told
    return len(owed), 0
