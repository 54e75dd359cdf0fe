"""A broadcast's life: prepared (audience fixed, preview rendered), decided by a person, sent in batches.

Identity: a broadcast is found by its key (the flow run's id unless the person names it), so a run
resumed after its approval, or started again with the same key, continues the same broadcast.
Exactly once: each recipient's mail has the key `news:broadcast:<id>:partner:<partner id>`
(tasks/news/delivery.py), so running the send again mails nobody twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from prefect.input import RunInput
from pydantic import Field
from sqlalchemy import bindparam, update
from sqlmodel import Session, select

from partnerflow.models import Message, MessageStatus, Partner, audit, session_scope, utcnow
from partnerflow.models.news import Broadcast, BroadcastRecipient, BroadcastStatus
from partnerflow.providers.email import EmailProvider
from partnerflow.settings import get_settings
from partnerflow.tasks.news.delivery import NewsMail, deliver_batch, settled
from partnerflow.tasks.news.preferences import list_headers, opt_out_url, opted_out_among
from partnerflow.tasks.news.rendering import check_request, render_broadcast
from partnerflow.tasks.news.segments import Segment, fix_audience, parse_segment

KIND = "news_broadcast"
OPEN = (MessageStatus.PENDING, MessageStatus.SENDING)


class BroadcastDecision(RunInput):
    """The approval form: send the broadcast to the audience shown, or cancel it."""

    decision: Literal["send", "cancel"]
    note: str = ""
    approver: str = Field(min_length=1, description="Your name: who decided.")


def message_key(broadcast_id: int, partner_id: int) -> str:
    return f"news:broadcast:{broadcast_id}:partner:{partner_id}"


def prepare(key: str, template: str, subject: str, fields: dict[str, Any], segment: Segment | dict | None,
            flow_run_id: str | None = None, now: datetime | None = None) -> tuple[int, str]:
    """The broadcast under `key`: created with its audience on the first call, found on later ones.

    Refuses (TemplateError, SegmentError) before anything is recorded when the template, subject, offer
    fields or segment are wrong, or the template cannot be rendered for the first recipient.
    Returns (broadcast id, status).
    """
    now = now or utcnow()
    with session_scope() as session:
        found = session.exec(select(Broadcast).where(Broadcast.key == key)).first()
        if found is not None:
            return found.id, found.status
    template, subject, fields = check_request(template, subject, fields)
    chosen = parse_segment(segment)
    with session_scope() as session:  # one transaction: a template error records nothing
        row = Broadcast(key=key, template=template, subject=subject, fields=fields,
                        segment=chosen.model_dump(mode="json"), flow_run_id=flow_run_id, created_at=now)
        session.add(row)
        session.flush()
        row.audience_size, _ = fix_audience(session, row.id, chosen, now)
        first = first_recipient(session, row.id)
        if first is not None:
            render_broadcast(template, subject, fields, first, opt_out_url("news", first.id))
        else:  # nobody to tell: nothing for a person to decide
            row.status, row.decided_by, row.decided_at = BroadcastStatus.CANCELLED, "policy", now
            row.decision_note = "nobody in the segment gets program news"
        session.add(row)
        audit(session, actor="system", action="broadcast.prepared", subject_type="broadcast", subject_id=row.id,
              details={"template": template, "audience": row.audience_size, "segment": row.segment})
        return row.id, row.status


def first_recipient(session: Session, broadcast_id: int) -> Partner | None:
    return session.exec(select(Partner).join(BroadcastRecipient, BroadcastRecipient.partner_id == Partner.id)
                        .where(BroadcastRecipient.broadcast_id == broadcast_id)
                        .order_by(Partner.id).limit(1)).first()


def broadcast(broadcast_id: int) -> Broadcast:
    with session_scope() as session:
        row = session.get(Broadcast, broadcast_id)
        session.expunge(row)
        return row


def record_decision(broadcast_id: int, answer: BroadcastDecision | None) -> str:
    """The person's answer, or the safe default (nothing sent) when nobody answered; returns the status.
    Only a broadcast still waiting is decided, so a late or repeated answer changes nothing."""
    if answer is None:
        status, actor, note = BroadcastStatus.EXPIRED, "policy", "nobody answered in time; nothing sent"
    else:
        approved = answer.decision == "send"
        status = BroadcastStatus.APPROVED if approved else BroadcastStatus.CANCELLED
        actor, note = answer.approver.strip(), answer.note.strip()[:1000]
    with session_scope() as session:
        changed = session.execute(update(Broadcast).where(Broadcast.id == broadcast_id,
                                                          Broadcast.status == BroadcastStatus.AWAITING_APPROVAL)
                                  .values(status=status, decided_by=actor, decision_note=note,
                                          decided_at=utcnow())).rowcount == 1
        if changed:
            audit(session, actor=actor, action=f"broadcast.{status}", subject_type="broadcast",
                  subject_id=broadcast_id, details={"note": note})
        return session.get(Broadcast, broadcast_id).status


def expire(broadcast_id: str, _details: dict) -> None:
    """Nobody answered the broadcast's approval form in time: it is dropped and sends nothing."""
    record_decision(int(broadcast_id), None)


def approval_timeout_seconds() -> int:
    return get_settings().news.news_approval_timeout_seconds


def pending_batches(broadcast_id: int) -> list[list[int]]:
    """The recipients still to mail (no mail yet, or one not settled), in batches of partner ids."""
    R = BroadcastRecipient
    with session_scope() as session:
        ids = session.exec(select(R.partner_id).outerjoin(Message, Message.id == R.message_id)
                           .where(R.broadcast_id == broadcast_id, R.skipped.is_(None),
                                  (R.message_id.is_(None)) | Message.status.in_(OPEN))
                           .order_by(R.partner_id)).all()
    size = get_settings().news.news_batch_size
    return [list(ids[i:i + size]) for i in range(0, len(ids), size)]


def send_batch(broadcast_id: int, partner_ids: list[int], *, provider: EmailProvider | None = None,
               now: datetime | None = None) -> dict[str, Any]:
    """Mail these recipients of an approved broadcast once each; returns counts by outcome."""
    row = broadcast(broadcast_id)
    if row.status != BroadcastStatus.APPROVED:
        return {"not_approved": len(partner_ids)}
    R = BroadcastRecipient
    with session_scope() as session:
        partners = session.exec(select(Partner).join(R, R.partner_id == Partner.id).where(
            R.broadcast_id == broadcast_id, R.partner_id.in_(partner_ids), R.skipped.is_(None))).all()
        left = opted_out_among(session, [p.id for p in partners], "news")  # at send time: a late opt-out wins
        _skip(session, broadcast_id, left, "opted out of program news before it was sent")
        session.expunge_all()
    done = settled([message_key(broadcast_id, p.id) for p in partners if p.id not in left])
    mails = []
    for partner in (p for p in partners if p.id not in left and message_key(broadcast_id, p.id) not in done):
        url = opt_out_url("news", partner.id)
        mails.append(NewsMail(message_key(broadcast_id, partner.id), KIND, partner.id, partner.email,
                              render_broadcast(row.template, row.subject, row.fields, partner, url),
                              list_headers(url)))
    delivered = deliver_batch(mails, provider=provider, now=now)
    table = R.__table__
    if mails:
        with session_scope() as session:  # one executemany links each recipient to their mail
            session.execute(update(table).where(table.c.broadcast_id == broadcast_id,
                                                table.c.partner_id == bindparam("_partner"),
                                                table.c.message_id.is_(None))
                            .values(message_id=bindparam("_message")),
                            [{"_partner": m.partner_id, "_message": delivered.message_ids[m.key]} for m in mails])
    return delivered.report(already_sent=len(done), opted_out=len(left))


def _skip(session: Session, broadcast_id: int, partner_ids: set[int], why: str) -> None:
    """Recipients who must not get it after all; a mail recorded but not sent for them is failed."""
    if not partner_ids:
        return
    R = BroadcastRecipient
    session.execute(update(R).where(R.broadcast_id == broadcast_id, R.partner_id.in_(sorted(partner_ids)))
                    .values(skipped=why))
    keys = [message_key(broadcast_id, pid) for pid in sorted(partner_ids)]
    session.execute(update(Message).where(Message.idempotency_key.in_(keys), Message.status == MessageStatus.PENDING)
                    .values(status=MessageStatus.FAILED, error=why))


def finish(broadcast_id: int) -> str:
    """Mark the broadcast sent once no recipient is left to mail; returns its status."""
    with session_scope() as session:
        row = session.get(Broadcast, broadcast_id)
        if row.status == BroadcastStatus.APPROVED and not pending_batches(broadcast_id):
            row.status, row.finished_at = BroadcastStatus.SENT, utcnow()
            session.add(row)
            audit(session, actor="system", action="broadcast.sent", subject_type="broadcast", subject_id=row.id)
        return row.status
