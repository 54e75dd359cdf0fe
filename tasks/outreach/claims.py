"""Claiming due enrollments for one send run, and giving the claims back with their changes.

A send run claims due enrollments in the database (one UPDATE setting its run token and a
lease; `FOR UPDATE SKIP LOCKED` on PostgreSQL), so two runs on two workers never hold the
same row. A run that dies keeps its rows only until the lease ends.

Leases run on the wall clock, however long the run has been going (its own `now` only says what
is due). A run renews its lease on a batch before it decides it and before each part it hands to
the provider, and only for rows still carrying its token (compare-and-set): once a lease ran out
and another run took the rows, the stale run sends none of them and changes none of them.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, update
from sqlmodel import Session, select

from partnerflow.models import session_scope, utcnow
from partnerflow.models.engine import is_postgres
from partnerflow.models.outreach import Enrollment, EnrollmentStatus
from partnerflow.settings import get_settings
from partnerflow.tasks.outreach.sequences import step_delay


def claim_lease() -> timedelta:
    return timedelta(seconds=get_settings().outreach.outreach_claim_lease_seconds)


def lease_clock(now: datetime) -> datetime:
    """The time leases are measured in: the wall clock, or the run's own clock when that is later
    (tests and backfills that run "as of" a later time)."""
    return max(now, utcnow())


def message_key(enrollment_id: int, step: int) -> str:
    return f"outreach:enrollment:{enrollment_id}:step:{step}"


def claim_due(token: str, size: int, now: datetime) -> list[int]:
    """Claim up to `size` due enrollments for run `token`; returns their ids (none held by another run)."""
    clock = lease_clock(now)
    with session_scope() as session:
        due = (select(Enrollment.id)
               .where(Enrollment.status == EnrollmentStatus.ACTIVE, Enrollment.next_due_at <= now,
                      or_(Enrollment.claimed_until.is_(None), Enrollment.claimed_until < clock))
               .order_by(Enrollment.next_due_at, Enrollment.id).limit(size))
        if is_postgres():
            due = due.with_for_update(skip_locked=True)
        session.execute(update(Enrollment).where(Enrollment.id.in_(due.scalar_subquery()))
                        .values(claim_token=token, claimed_until=clock + claim_lease())
                        .execution_options(synchronize_session=False))
        session.commit()
        return list(session.exec(select(Enrollment.id).where(Enrollment.claim_token == token,
                                                             Enrollment.claimed_until > clock)).all())


def renew(token: str, enrollment_ids: list[int], now: datetime) -> set[int]:
    """Extend run `token`'s lease on these enrollments; returns the ids it still holds. A row another run
    claimed after this run's lease ran out carries that run's token and is left alone."""
    if not enrollment_ids:
        return set()
    clock = lease_clock(now)
    held: set[int] = set()
    table = Enrollment.__table__
    with session_scope() as session:
        for i in range(0, len(enrollment_ids), 500):
            chunk = enrollment_ids[i:i + 500]
            held.update(session.execute(update(table).where(table.c.id.in_(chunk), table.c.claim_token == token)
                                        .values(claimed_until=clock + claim_lease())
                                        .returning(table.c.id)).scalars())
    return held


def advance(definition: dict[str, Any], step: int, now: datetime) -> dict[str, Any]:
    """The enrollment's changes once `step` is done: the next step's due time, or completed."""
    following = step + 1
    if following >= len(definition["steps"]):
        return {"current_step": following, "status": EnrollmentStatus.COMPLETED, "next_due_at": None}
    return {"current_step": following, "next_due_at": now + step_delay(definition, following)}


def release(session: Session, token: str, changes: dict[int, dict[str, Any]]) -> None:
    """Apply each enrollment's changes and give the claim back (only rows this run still holds)."""
    groups: dict[tuple, list[int]] = {}
    for enrollment_id, values in changes.items():
        groups.setdefault(tuple(sorted(values.items(), key=lambda kv: kv[0])), []).append(enrollment_id)
    for values, ids in groups.items():
        for i in range(0, len(ids), 500):
            session.execute(update(Enrollment).where(Enrollment.id.in_(ids[i:i + 500]), Enrollment.claim_token == token)
                            .values(**dict(values), claim_token=None, claimed_until=None, updated_at=utcnow())
                            .execution_options(synchronize_session=False))


@dataclass
class SendRun:
    """One send run: its claim token and clock, what it handled so far, and when to stop claiming.

    The caller loops: `while ids := run.claim(): run.add(<send the batch>)`.
    """

    limit: int
    now: datetime = field(default_factory=utcnow)
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    handled: int = 0
    batches: int = 0
    totals: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def claim(self) -> list[int]:
        """The next batch of claimed enrollment ids; empty when done (none due, limit reached, provider failing)."""
        if self.errors or self.handled >= self.limit:
            return []
        size = max(1, get_settings().outreach.outreach_batch_size)
        ids = claim_due(self.token, min(size, self.limit - self.handled), self.now)
        self.handled += len(ids)
        self.batches += 1 if ids else 0
        return ids

    def add(self, result: dict[str, Any]) -> None:
        """Count one batch's outcome; a provider error ends the run (the rest waits for the next run)."""
        result = dict(result)
        error = result.pop("provider_error", None)
        self.totals.update(result)
        if error:
            self.errors.append(error)

    def summary(self) -> dict[str, Any]:
        return {"claimed": self.handled, "batches": self.batches, **self.totals, "errors": self.errors}
