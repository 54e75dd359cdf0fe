"""The global suppression list: nobody on it is ever mailed again by any flow.

Also the one place that stops a person's enrollments, so a bounce, spam report,
unsubscribe or reply found anywhere (webhooks, inbound mail, CLI) has one effect.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from partnerflow.models import audit, utcnow
from partnerflow.models.discovery import Prospect, ProspectStatus
from partnerflow.models.mail import Suppression
from partnerflow.models.outreach import Enrollment, EnrollmentStatus, StopReason
from partnerflow.tasks.shared.identity import email_key

# What a stop means for the prospect record.
_PROSPECT_STATUS = {
    StopReason.UNSUBSCRIBE: ProspectStatus.UNSUBSCRIBED,
    StopReason.BOUNCE: ProspectStatus.BOUNCED,
    StopReason.SPAM_REPORT: ProspectStatus.UNSUBSCRIBED,
    StopReason.REPLY: ProspectStatus.REPLIED,
    StopReason.SIGNUP: ProspectStatus.APPLIED,
}


def is_suppressed(session: Session, email: str) -> bool:
    return session.exec(select(Suppression.id).where(Suppression.email == email_key(email))).first() is not None


# Mail a person asked for by their own action (their signing link, their remittance) still goes to
# someone who unsubscribed from marketing; only an address that hard-bounced is never mailed.
COMMERCIAL_KINDS = frozenset({"outreach", "activation_nudge"})
BLOCKS_EVERY_KIND = frozenset({StopReason.BOUNCE})


def blocks(session: Session, email: str, kind: str) -> str | None:
    """The suppression reason that stops mail of `kind` to `email`, or None."""
    reason = session.exec(select(Suppression.reason).where(Suppression.email == email_key(email))).first()
    if reason is None:
        return None
    return reason if kind in COMMERCIAL_KINDS or reason in BLOCKS_EVERY_KIND else None


def suppressed_among(session: Session, emails: Iterable[str]) -> set[str]:
    """The normalised addresses of `emails` that are suppressed (one query per 500)."""
    wanted = sorted({email_key(e) for e in emails})
    found: set[str] = set()
    for i in range(0, len(wanted), 500):
        chunk = wanted[i:i + 500]
        found.update(session.exec(select(Suppression.email).where(Suppression.email.in_(chunk))).all())
    return found


def suppress(session: Session, email: str, reason: str, source: str = "") -> bool:
    """Add `email` to the list (idempotent) and stop its active enrollments. True when newly added."""
    address = email_key(email)
    added = False
    if not is_suppressed(session, address):
        try:
            with session.begin_nested():  # a concurrent insert of the same address is fine
                session.add(Suppression(email=address, reason=reason, source=source))
            added = True
        except IntegrityError:
            pass
    stop_enrollments_for(session, address, reason, actor=source or "system")
    if added:
        audit(session, actor=source or "system", action="suppression.added", subject_type="email",
              subject_id=address, details={"reason": reason})
    return added


def stop_enrollments_for(session: Session, email: str, reason: str, *, actor: str = "system",
                         prospect_status: str | None = None) -> int:
    """Stop every active enrollment of `email`; returns how many were stopped."""
    address = email_key(email)
    stopped = session.execute(
        update(Enrollment)
        .where(Enrollment.email == address, Enrollment.status == EnrollmentStatus.ACTIVE)
        .values(status=EnrollmentStatus.STOPPED, stop_reason=reason, next_due_at=None, updated_at=utcnow())
    ).rowcount
    status = prospect_status or _PROSPECT_STATUS.get(reason)
    if status:
        session.execute(update(Prospect).where(func.lower(Prospect.email) == address)
                        .values(status=status, updated_at=utcnow()))
    if stopped:
        audit(session, actor=actor, action="enrollment.stopped", subject_type="email", subject_id=address,
              details={"reason": reason, "enrollments": stopped})
    return stopped
