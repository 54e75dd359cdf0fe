"""What became of a step's message: an earlier attempt found again, or the provider's answer now.

A crash after the provider was called leaves the message `sending`. An idempotent provider
(the outbox) may simply be called again; SendGrid may not, so such a message waits for its
event webhook (`processed`) to confirm it, and is given up as unconfirmed after
`outreach_reconcile_after_seconds`.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, update
from sqlmodel import Session

from partnerflow.models import Message, MessageStatus, session_scope
from partnerflow.models.outreach import EnrollmentStatus, StopReason
from partnerflow.providers.email import EmailProvider, OutgoingEmail, SendOutcome
from partnerflow.providers.errors import AmbiguousError, RetryableError
from partnerflow.settings import get_settings
from partnerflow.tasks.outreach.claims import advance

RECHECK_AMBIGUOUS = timedelta(hours=1)
RETRY_LATER = timedelta(minutes=10)
STOPPED_FAILED = {"status": EnrollmentStatus.STOPPED, "stop_reason": StopReason.FAILED, "next_due_at": None}


def may_resend(prior: Message | None, provider: EmailProvider) -> bool:
    """True when the step's message may (again) be handed to the provider."""
    if prior is None or prior.status == MessageStatus.PENDING:
        return True
    return prior.status == MessageStatus.SENDING and provider.idempotent  # outbox: a repeat overwrites


def settle_prior(session: Session, prior: Message, definition: dict[str, Any], step: int, now: datetime,
                 stats: Counter) -> dict[str, Any]:
    """The enrollment's changes for a step whose message exists and must not be sent again."""
    if prior.status == MessageStatus.SENT:
        stats["already_sent"] += 1
        return advance(definition, step, now)
    if prior.status != MessageStatus.SENDING:  # failed or bounced: this address cannot be mailed
        return dict(STOPPED_FAILED)
    # Maybe accepted (crash or timeout): never re-send blindly; wait for the provider's events.
    if now - prior.created_at < timedelta(seconds=get_settings().outreach.outreach_reconcile_after_seconds):
        stats["awaiting_confirmation"] += 1
        return {"next_due_at": now + RECHECK_AMBIGUOUS}
    session.execute(update(Message).where(Message.id == prior.id, Message.status == MessageStatus.SENDING)
                    .values(status=MessageStatus.FAILED,
                            error="send timed out and was never confirmed by the provider"))
    stats["unconfirmed"] += 1
    return advance(definition, step, now)


def record_outcomes(outgoing: list[OutgoingEmail], outcomes: list[SendOutcome], batch_error: Exception | None,
                    plans: dict[int, Any], release: dict[int, dict[str, Any]], stats: Counter,
                    provider: EmailProvider, now: datetime) -> None:
    """Write what the provider said: sent rows, failed rows, rows to retry or to reconcile.

    `plans` maps each message id to its plan (enrollment, definition, step); `release` gets each
    enrollment's changes.
    """
    sent: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    retry: list[tuple[int, str]] = []
    if batch_error is not None:
        if isinstance(batch_error, AmbiguousError):
            for item in outgoing:  # maybe accepted: keep `sending`, wait for the provider's events
                release[plans[item.message_id].enrollment.id] = {"next_due_at": now + RECHECK_AMBIGUOUS}
            stats["ambiguous"] += len(outgoing)
        else:
            retry = [(item.message_id, batch_error.reason) for item in outgoing]
            for item in outgoing:
                release[plans[item.message_id].enrollment.id] = {"next_due_at": now + RETRY_LATER}
    for outcome in outcomes:
        plan = plans[outcome.message_id]
        if outcome.error is None:
            sent.append({"_id": outcome.message_id, "_pmid": outcome.provider_message_id})
            release[plan.enrollment.id] = advance(plan.definition, plan.step, now)
        elif isinstance(outcome.error, AmbiguousError):
            release[plan.enrollment.id] = {"next_due_at": now + RECHECK_AMBIGUOUS}
            stats["ambiguous"] += 1
        elif isinstance(outcome.error, RetryableError):
            retry.append((outcome.message_id, outcome.error.reason))
            release[plan.enrollment.id] = {"next_due_at": now + RETRY_LATER}
            stats["provider_error"] = outcome.error.reason  # stops this run; the next one tries again
        else:
            failed.append({"_id": outcome.message_id, "_err": outcome.error.reason[:500]})
            release[plan.enrollment.id] = dict(STOPPED_FAILED)
    stats["sent"] += len(sent)
    stats["failed"] += len(failed)
    stats["retry_later"] += len(retry)
    _write(sent, failed, retry, provider.name, now)


def _write(sent: list[dict[str, Any]], failed: list[dict[str, Any]], retry: list[tuple[int, str]],
           provider: str, now: datetime) -> None:
    table = Message.__table__
    with session_scope() as session:
        by_request: dict[str | None, list[int]] = {}  # one X-Message-Id per SendGrid request: one UPDATE each
        for row in sent:
            by_request.setdefault(row["_pmid"], []).append(row["_id"])
        for pmid, message_ids in by_request.items():
            for i in range(0, len(message_ids), 500):
                session.execute(update(table).where(table.c.id.in_(message_ids[i:i + 500]),
                                                    table.c.status == MessageStatus.SENDING)
                                .values(status=MessageStatus.SENT, provider=provider, provider_message_id=pmid,
                                        sent_at=now, error=None))
        if failed:
            session.execute(update(table).where(table.c.id == bindparam("_id"))
                            .values(status=MessageStatus.FAILED, provider=provider, error=bindparam("_err")),
                            failed)
        if retry:  # nothing was accepted: back to pending, sent by a later run
            session.execute(update(table).where(table.c.id == bindparam("_id"))
                            .values(status=MessageStatus.PENDING, error=bindparam("_err")),
                            [{"_id": mid, "_err": reason[:500]} for mid, reason in retry])
