"""Sending a batch of program-news mails exactly once: one Message row per key before the provider is called.

The same rules as every mail we send (tasks/shared/mail.py), for a whole batch at a time:
- the rows of the batch are inserted (pending) under their deterministic keys, one statement;
- only rows this run moves from pending to sending (one compare-and-set UPDATE) go to the provider,
  so a re-run, a retried task or a second worker finds them and sends nothing twice;
- a send whose answer never came stays `sending` (never back to pending): the provider's events or the
  unconfirmed-mail sweep settle it; nothing re-sends it blindly;
- an address that hard-bounced or reported us as spam is never mailed (the recruitment unsubscribes
  are a different list: program news has its own opt-out, tasks/news/preferences.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import bindparam, insert, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from partnerflow.models import Message, MessageStatus, session_scope, utcnow
from partnerflow.models.mail import Suppression
from partnerflow.models.outreach import StopReason
from partnerflow.providers.email import EmailProvider, OutgoingEmail, SendOutcome, get_email_provider
from partnerflow.providers.errors import AmbiguousError, PermanentError, ProviderError, RetryableError
from partnerflow.settings import get_settings
from partnerflow.tasks.shared import limits
from partnerflow.tasks.shared.identity import email_key
from partnerflow.tasks.shared.mail import RenderedEmail

BLOCKING = (StopReason.BOUNCE, StopReason.SPAM_REPORT)
FINAL = (MessageStatus.SENT, MessageStatus.FAILED, MessageStatus.BOUNCED)


@dataclass
class NewsMail:
    key: str
    kind: str
    partner_id: int
    to_email: str
    rendered: RenderedEmail
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Delivered:
    counts: Counter
    message_ids: dict[str, int]  # by key, for every mail of the batch
    provider_error: str | None = None

    def report(self, **skipped: int) -> dict:
        """The batch's non-zero counts plus the mails skipped before sending (by reason), and any provider error."""
        counts = self.counts + Counter(skipped)
        return {**dict(counts), **({"provider_error": self.provider_error} if self.provider_error else {})}


def deliver_batch(mails: list[NewsMail], *, provider: EmailProvider | None = None,
                  now: datetime | None = None) -> Delivered:
    """Record, claim and send `mails`; each key is mailed at most once whatever runs it again."""
    if not mails:
        return Delivered(Counter(), {})
    provider = provider or get_email_provider(get_settings().mail)
    now = now or utcnow()
    counts: Counter = Counter()
    by_key = {mail.key: mail for mail in mails}
    with session_scope() as session:
        ids, statuses = _record_intents(session, mails, now)
        blocked = _blocked(session, [m for m in mails if statuses[m.key] == MessageStatus.PENDING])
        if blocked:
            table = Message.__table__  # core UPDATE: one statement for every row
            session.execute(update(table).where(table.c.id == bindparam("_id"), table.c.status == MessageStatus.PENDING)
                            .values(status=MessageStatus.FAILED, error=bindparam("_err")),
                            [{"_id": ids[key], "_err": f"suppressed ({reason}): not mailed"}
                             for key, reason in blocked.items()])
            counts["suppressed"] += len(blocked)
    counts["already_sent"] += sum(1 for status in statuses.values() if status in FINAL)
    claimable = [MessageStatus.PENDING, MessageStatus.SENDING] if provider.idempotent else [MessageStatus.PENDING]
    wanted = [ids[key] for key, status in statuses.items() if status in claimable and key not in blocked]
    counts["awaiting_confirmation"] += sum(1 for key, status in statuses.items()
                                           if status == MessageStatus.SENDING and ids[key] not in wanted)
    claimed = _claim(wanted, claimable, now)
    outgoing = [_outgoing(by_key[key], ids[key]) for key in by_key if ids[key] in claimed]
    outcomes, error, tried = _send(provider, outgoing)
    _write(outgoing[:tried], outcomes, error, outgoing[tried:], provider.name, counts, now)
    if isinstance(error, PermanentError):  # nothing can be sent with these settings: say so, lose nothing
        raise error
    return Delivered(counts, ids, error.reason if error is not None and not isinstance(error, AmbiguousError)
                     else None)


def settled(keys: list[str]) -> set[str]:
    """The keys whose mail is final (sent, failed, bounced): nothing to render or send for them again."""
    found: set[str] = set()
    with session_scope() as session:
        for i in range(0, len(keys), 500):
            found.update(session.exec(select(Message.idempotency_key).where(
                Message.idempotency_key.in_(keys[i:i + 500]), Message.status.in_(FINAL))).all())
    return found


def _record_intents(session: Session, mails: list[NewsMail],
                    now: datetime) -> tuple[dict[str, int], dict[str, str]]:
    """Insert the rows missing (pending); returns (id, status) of every key's row, as found."""
    keys = [m.key for m in mails]
    existing = set(session.exec(select(Message.idempotency_key).where(Message.idempotency_key.in_(keys))).all())
    rows = [{"idempotency_key": m.key, "kind": m.kind, "to_email": m.to_email, "subject": m.rendered.subject,
             "partner_id": m.partner_id, "status": MessageStatus.PENDING, "attempts": 0, "created_at": now}
            for m in mails if m.key not in existing]
    if rows:
        try:
            with session.begin_nested():
                session.execute(insert(Message), rows)
        except IntegrityError:  # another worker recorded some of them first: theirs stand
            for row in rows:
                try:
                    with session.begin_nested():
                        session.execute(insert(Message), [row])
                except IntegrityError:
                    pass
    session.commit()
    found = session.execute(select(Message.idempotency_key, Message.id, Message.status)
                            .where(Message.idempotency_key.in_(keys))).all()
    return {k: i for k, i, _ in found}, {k: s for k, _, s in found}


def _blocked(session: Session, mails: list[NewsMail]) -> dict[str, str]:
    """Key -> suppression reason, for the mails whose address bounced or reported spam."""
    addresses = {m.key: email_key(m.to_email) for m in mails}
    wanted = sorted(set(addresses.values()))
    reasons: dict[str, str] = {}
    for i in range(0, len(wanted), 500):
        reasons.update(session.execute(select(Suppression.email, Suppression.reason).where(
            Suppression.email.in_(wanted[i:i + 500]), Suppression.reason.in_(BLOCKING))).all())
    return {key: reasons[address] for key, address in addresses.items() if address in reasons}


def _claim(message_ids: list[int], claimable: list[MessageStatus], now: datetime) -> set[int]:
    """Move the rows to `sending`; the ids this caller won (a compare-and-set, one statement per 500)."""
    won: set[int] = set()
    with session_scope() as session:
        for i in range(0, len(message_ids), 500):
            won.update(session.scalars(
                update(Message).where(Message.id.in_(message_ids[i:i + 500]), Message.status.in_(claimable))
                .values(status=MessageStatus.SENDING, attempts=Message.attempts + 1, attempted_at=now)
                .returning(Message.id)).all())
    return won


def _outgoing(mail: NewsMail, message_id: int) -> OutgoingEmail:
    return OutgoingEmail(message_id=message_id, idempotency_key=mail.key, to=mail.to_email,
                         subject=mail.rendered.subject, text=mail.rendered.text, html=mail.rendered.html,
                         headers=dict(mail.headers), categories=[mail.kind])


def _send(provider: EmailProvider, outgoing: list[OutgoingEmail]
          ) -> tuple[list[SendOutcome], ProviderError | None, int]:
    """Send in the parts the shared email rate limit allows; stop at the first part that fails.
    Returns (outcomes so far, that part's error, how many were handed over)."""
    outcomes: list[SendOutcome] = []
    tried = 0
    if not outgoing:
        return outcomes, None, 0
    try:
        for part in limits.Permits(limits.EMAIL, provider.name, len(outgoing)).chunks(outgoing):
            tried += len(part)
            outcomes += provider.send_batch(part)
    except (RetryableError, PermanentError) as exc:  # the provider's, or no permit in time
        if not isinstance(exc, AmbiguousError) and len(outcomes) < tried:
            tried = len(outcomes)  # the failing part was not accepted: it goes back with the untried rest
        return outcomes, exc, tried
    return outcomes, None, tried


def _write(tried: list[OutgoingEmail], outcomes: list[SendOutcome], error: ProviderError | None,
           untried: list[OutgoingEmail], provider: str, counts: Counter, now: datetime) -> None:
    """What the provider said: sent, failed, maybe accepted (kept `sending`), or back to pending."""
    sent = [o for o in outcomes if o.error is None]
    failed = [o for o in outcomes if o.error is not None and not isinstance(o.error, RetryableError)]
    retry = [(o.message_id, o.error.reason) for o in outcomes
             if isinstance(o.error, RetryableError) and not isinstance(o.error, AmbiguousError)]
    ambiguous = [o for o in outcomes if isinstance(o.error, AmbiguousError)]
    answered = {o.message_id for o in outcomes}
    unanswered = [item for item in tried if item.message_id not in answered]  # the part an ambiguous error hit
    retry += [(item.message_id, error.reason if error else "not sent") for item in untried]
    table = Message.__table__
    with session_scope() as session:
        if sent:  # one executemany: the outbox names each message apart, SendGrid one id per request
            session.execute(update(table).where(table.c.id == bindparam("_id"), table.c.status == MessageStatus.SENDING)
                            .values(status=MessageStatus.SENT, provider=provider, sent_at=now, error=None,
                                    provider_message_id=bindparam("_pmid")),
                            [{"_id": o.message_id, "_pmid": o.provider_message_id} for o in sent])
        if failed:
            session.execute(update(table).where(table.c.id == bindparam("_id"))
                            .values(status=MessageStatus.FAILED, provider=provider, error=bindparam("_err")),
                            [{"_id": o.message_id, "_err": o.error.reason[:500]} for o in failed])
        if retry:  # nothing was accepted: pending again, for a re-run
            session.execute(update(table).where(table.c.id == bindparam("_id"),
                                                table.c.status == MessageStatus.SENDING)
                            .values(status=MessageStatus.PENDING, error=bindparam("_err")),
                            [{"_id": mid, "_err": reason[:500]} for mid, reason in retry])
        if ambiguous or unanswered:
            session.execute(update(table).where(table.c.id.in_([o.message_id for o in ambiguous]
                                                               + [i.message_id for i in unanswered]))
                            .values(provider=provider))
    counts["sent"] += len(sent)
    counts["failed"] += len(failed)
    counts["retry_later"] += len(retry)
    counts["unconfirmed"] += len(ambiguous) + len(unanswered)
