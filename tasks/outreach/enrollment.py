"""Enrolling prospects into a sequence, and stopping enrollments by hand."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from prefect import task
from sqlalchemy import func, insert, update
from sqlmodel import Session, select

from partnerflow.models import Application, Partner, Prospect, audit, session_scope, utcnow
from partnerflow.models.discovery import ProspectStatus
from partnerflow.models.outreach import Enrollment, EnrollmentStatus, StopReason
from partnerflow.tasks.outreach.sequences import latest_version, step_delay
from partnerflow.tasks.shared.identity import email_key
from partnerflow.tasks.shared.suppression import stop_enrollments_for, suppress, suppressed_among

# A prospect who already answered, signed up or asked us to stop is never enrolled again.
NOT_ENROLLABLE = frozenset({ProspectStatus.APPLIED, ProspectStatus.REPLIED, ProspectStatus.UNSUBSCRIBED,
                            ProspectStatus.BOUNCED})


def signed_up_among(session: Session, emails: set[str]) -> set[str]:
    """Addresses that already applied or are partners (checked at send time: sign-up stops outreach)."""
    found: set[str] = set()
    wanted = sorted(emails)
    for i in range(0, len(wanted), 500):
        chunk = wanted[i:i + 500]
        for model in (Application, Partner):
            found.update(e.lower() for e in session.exec(
                select(model.email).where(func.lower(model.email).in_(chunk))).all())
    return found


def enroll(sequence: str = "partner-recruitment", prospect_ids: list[int] | None = None,
           min_score: int | None = None, now: datetime | None = None) -> dict[str, int]:
    """Enroll prospects (all with an email, or the given ids, optionally with score >= min_score)."""
    now = now or utcnow()
    stats: Counter = Counter()
    with session_scope() as session:
        version = latest_version(session, sequence)
        if version is None:
            raise ValueError(f"sequence {sequence!r} is not loaded; run `partnerflow outreach load` first")
        first_due = now + step_delay(version.definition, 0)
        last_id = 0
        while True:
            query = (select(Prospect.id, Prospect.email, Prospect.status)
                     .where(Prospect.id > last_id, Prospect.email.is_not(None)).order_by(Prospect.id))
            if prospect_ids is not None:
                query = query.where(Prospect.id.in_(prospect_ids))
            if min_score is not None:
                query = query.where(Prospect.score >= min_score)
            chunk = session.execute(query.limit(1000)).all()
            if not chunk:
                break
            last_id = chunk[-1].id
            emails = {email_key(p.email) for p in chunk}
            suppressed = suppressed_among(session, emails)
            signed_up = signed_up_among(session, emails)
            already = set(session.exec(select(Enrollment.prospect_id).where(
                Enrollment.sequence_name == sequence, Enrollment.prospect_id.in_([p.id for p in chunk]))).all())
            rows = []
            for p in chunk:
                email = email_key(p.email)
                if p.id in already:
                    stats["already_enrolled"] += 1
                elif email in suppressed:
                    stats["suppressed"] += 1
                elif email in signed_up or p.status in NOT_ENROLLABLE:
                    stats["skipped"] += 1
                else:
                    rows.append({"prospect_id": p.id, "sequence_id": version.id, "sequence_name": sequence,
                                 "email": email, "current_step": 0, "status": EnrollmentStatus.ACTIVE,
                                 "next_due_at": first_due, "created_at": now, "updated_at": now})
            if rows:
                session.execute(insert(Enrollment), rows)
                session.execute(update(Prospect).where(Prospect.id.in_([r["prospect_id"] for r in rows]))
                                .values(status=ProspectStatus.ENROLLED, updated_at=now))
                stats["enrolled"] += len(rows)
            session.commit()
        audit(session, actor="system", action="outreach.enrolled", subject_type="sequence", subject_id=version.id,
              details=dict(stats))
    return {"enrolled": 0, **stats}


@task(name="enroll-into-sequence")
def enroll_task(sequence: str, prospect_ids: list[int] | None, min_score: int | None) -> dict[str, int]:
    return enroll(sequence, prospect_ids=prospect_ids, min_score=min_score)


def stop_enrollment(*, enrollment_id: int | None = None, email: str | None = None,
                    reason: str = StopReason.MANUAL, actor: str = "cli", suppress_too: bool = False) -> int:
    """Manual stop of one enrollment (by id) or of all of a person's (by email). Returns how many.

    With `suppress_too` (by email only) the address is also never mailed again.
    """
    with session_scope() as session:
        if email:
            stopped = stop_enrollments_for(session, email, reason, actor=actor)
            if suppress_too:
                suppress(session, email, StopReason.MANUAL, source=actor)
            return stopped
        stopped = session.execute(
            update(Enrollment).where(Enrollment.id == enrollment_id, Enrollment.status == EnrollmentStatus.ACTIVE)
            .values(status=EnrollmentStatus.STOPPED, stop_reason=reason, next_due_at=None, updated_at=utcnow())
        ).rowcount
        if stopped:
            audit(session, actor=actor, action="enrollment.stopped", subject_type="enrollment",
                  subject_id=enrollment_id, details={"reason": reason})
        return stopped
