"""Sending one claimed batch of due steps exactly once, and a whole send run without Prefect.

For each claimed enrollment the Message row is written under the key
`outreach:enrollment:<id>:step:<n>` BEFORE the provider is called, then marked `sending`;
after the provider answers, messages become `sent` and enrollments advance. Suppression
and sign-up are checked again here, at send time, so a stop found meanwhile always wins.
The run renews its claim before deciding and before each part it hands over, and sends only
rows it still holds (see claims.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from types import SimpleNamespace
from typing import Any

from prefect import task
from sqlalchemy import insert, update
from sqlmodel import Session, select

from partnerflow.models import Message, MessageStatus, Prospect, session_scope, utcnow
from partnerflow.models.outreach import Enrollment, EnrollmentStatus, Sequence, StopReason
from partnerflow.providers.email import EmailProvider, OutgoingEmail, SendOutcome, get_email_provider
from partnerflow.providers.errors import AmbiguousError, RetryableError
from partnerflow.settings import get_settings
from partnerflow.tasks.outreach.claims import SendRun, advance, message_key, release, renew
from partnerflow.tasks.outreach.enrollment import signed_up_among
from partnerflow.tasks.outreach.outcomes import may_resend, record_outcomes, settle_prior
from partnerflow.tasks.outreach.pacing import KIND, DailyCap, outside_business_hours, tomorrow
from partnerflow.tasks.outreach.sequences import (
    RenderedStep,
    base_context,
    prospect_context,
    render_step,
    step_applies,
)
from partnerflow.tasks.outreach.unsubscribe import unsubscribe_url
from partnerflow.tasks.shared import limits
from partnerflow.tasks.shared.suppression import stop_enrollments_for, suppressed_among


@dataclass
class _Plan:
    enrollment: Any
    prospect: Any
    definition: dict[str, Any]
    step: int
    unsubscribe_url: str
    rendered: RenderedStep

    @cached_property
    def key(self) -> str:
        return message_key(self.enrollment.id, self.step)

    @property
    def sender(self) -> dict[str, Any]:
        return self.definition.get("sender") or {}


@dataclass
class _Batch:
    """One batch being decided: what to send, and each enrollment's changes when it is released."""

    token: str
    now: datetime
    provider: EmailProvider
    stats: Counter = field(default_factory=Counter)
    release: dict[int, dict[str, Any]] = field(default_factory=dict)
    plans: list[_Plan] = field(default_factory=list)


def _definition(session: Session, sequence_id: int, cache: dict[int, dict[str, Any]]) -> dict[str, Any]:
    if sequence_id not in cache:
        row = session.get(Sequence, sequence_id)
        cache[sequence_id] = {**row.definition, "_hash": row.definition_hash}
    return cache[sequence_id]


def _load_claimed(session: Session, enrollment_ids: list[int], token: str) -> list[tuple[Any, Any]]:
    """(enrollment, prospect) views of the claimed rows: plain columns only, no ORM objects (speed)."""
    E, P = Enrollment, Prospect
    query = (select(E.id, E.email, E.current_step, E.status, E.sequence_id, P.id.label("prospect_id"),
                    P.email.label("prospect_email"), P.name, P.company, P.website, P.domain, P.country, P.score,
                    P.topics, P.timezone)
             .join(P, P.id == E.prospect_id).where(E.id.in_(enrollment_ids), E.claim_token == token))
    out = []
    for row in session.execute(query):
        prospect = SimpleNamespace(id=row.prospect_id, email=row.prospect_email, name=row.name, company=row.company,
                                   website=row.website, domain=row.domain, country=row.country, score=row.score,
                                   topics=row.topics, timezone=row.timezone)
        out.append((row, prospect))
    return out


def _decide(session: Session, batch: _Batch, enrollment_ids: list[int]) -> dict[str, Message]:
    """Fill `batch`: each claimed enrollment is stopped, deferred, advanced or planned for sending.

    Returns the step messages that already exist (earlier attempts), by key.
    """
    rows = _load_claimed(session, enrollment_ids, batch.token)
    emails = {e.email for e, _ in rows}
    suppressed = suppressed_among(session, emails)
    signed_up = signed_up_among(session, emails)
    keys = [message_key(e.id, e.current_step) for e, _ in rows]
    existing = {m.idempotency_key: m for m in session.exec(
        select(Message).where(Message.idempotency_key.in_(keys))).all()} if keys else {}
    definitions: dict[int, dict[str, Any]] = {}
    default_sender = get_settings().mail.sender_email
    senders = {(_definition(session, e.sequence_id, definitions).get("sender") or {}).get("email") or default_sender
               for e, _ in rows}
    cap = DailyCap(session, batch.now, senders)  # held until _record_intents commits this batch's messages
    for enrollment, prospect in rows:
        definition = _definition(session, enrollment.sequence_id, definitions)
        step, now, stats = enrollment.current_step, batch.now, batch.stats
        if enrollment.status != EnrollmentStatus.ACTIVE:
            batch.release[enrollment.id] = {}
            continue
        stop = (StopReason.SUPPRESSED if enrollment.email in suppressed
                else StopReason.SIGNUP if enrollment.email in signed_up else None)
        if stop is not None:
            stop_enrollments_for(session, enrollment.email, stop)
            stats[f"stopped_{stop}"] += 1
            batch.release[enrollment.id] = {}
            continue
        if step >= len(definition["steps"]):
            batch.release[enrollment.id] = {"status": EnrollmentStatus.COMPLETED, "next_due_at": None}
            continue
        prior = existing.get(message_key(enrollment.id, step))
        if not may_resend(prior, batch.provider):
            batch.release[enrollment.id] = settle_prior(session, prior, definition, step, now, stats)
            continue
        opening = outside_business_hours(prospect.timezone, now)
        if opening is not None:
            batch.release[enrollment.id] = {"next_due_at": opening}
            stats["deferred_business_hours"] += 1
            continue
        pctx = prospect_context(prospect)
        if not step_applies(definition, step, pctx):
            batch.release[enrollment.id] = advance(definition, step, now)
            stats["step_skipped"] += 1
            continue
        sender = definition.get("sender") or {}
        if prior is None and not cap.take(sender.get("email") or default_sender):
            batch.release[enrollment.id] = {"next_due_at": tomorrow(now)}
            stats["deferred_daily_cap"] += 1
            continue
        url = unsubscribe_url(enrollment.id)
        ctx = base_context(pctx, unsubscribe_url=url, sender_name=sender.get("name"), sender_email=sender.get("email"))
        try:
            rendered = render_step(definition, step, ctx)
        except Exception:
            session.rollback()
            release(session, batch.token, {eid: {} for eid in enrollment_ids})
            session.commit()
            raise  # a template error stops the run before this batch sends anything
        batch.plans.append(_Plan(enrollment, prospect, definition, step, url, rendered))
    return existing


def _record_intents(session: Session, batch: _Batch, existing: dict[str, Message]) -> dict[str, int]:
    """Intent first: every planned message's row is committed as `sending`, under its key, before the provider
    is called. New rows are inserted so (their ids come back from the insert); earlier attempts move to it."""
    default_sender = get_settings().mail.sender_email
    table = Message.__table__
    new_rows = [{"idempotency_key": p.key, "kind": KIND, "to_email": p.prospect.email, "subject": p.rendered.subject,
                 "prospect_id": p.prospect.id, "status": MessageStatus.SENDING, "attempts": 1,
                 "created_at": batch.now, "enrollment_id": p.enrollment.id, "step": p.step,
                 "sender_email": p.sender.get("email") or default_sender}
                for p in batch.plans if p.key not in existing]
    ids: dict[str, int] = {}
    if new_rows:
        ids.update(session.execute(insert(table).returning(table.c.idempotency_key, table.c.id), new_rows).all())
    earlier = {p.key: existing[p.key].id for p in batch.plans if p.key in existing}
    if earlier:
        session.execute(update(table).where(table.c.id.in_(list(earlier.values())))
                        .values(status=MessageStatus.SENDING, attempts=table.c.attempts + 1))
        ids.update(earlier)
    session.commit()
    return ids


def _outgoing(plan: _Plan, message_id: int) -> OutgoingEmail:
    url = plan.unsubscribe_url
    return OutgoingEmail(
        message_id=message_id, idempotency_key=plan.key, to=plan.prospect.email, subject=plan.rendered.subject,
        text=plan.rendered.text, html=plan.rendered.html, categories=[KIND, plan.definition["name"]],
        headers={"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
        from_email=plan.sender.get("email"), from_name=plan.sender.get("name"))


def process_batch(enrollment_ids: list[int], token: str, now: datetime | None = None,
                  provider: EmailProvider | None = None) -> dict[str, Any]:
    """Send the due step of each enrollment claimed by `token`; returns counts by outcome."""
    batch = _Batch(token, now or utcnow(), provider or get_email_provider(get_settings().mail))
    held = renew(token, enrollment_ids, batch.now)  # a fresh lease for deciding; rows lost meanwhile drop out
    with session_scope() as session:
        existing = _decide(session, batch, [i for i in enrollment_ids if i in held])
        ids = _record_intents(session, batch, existing)
    outgoing = [_outgoing(plan, ids[plan.key]) for plan in batch.plans]
    plans = {ids[plan.key]: plan for plan in batch.plans}

    def still_held(part: list[OutgoingEmail]) -> bool:
        wanted = {plans[item.message_id].enrollment.id for item in part}
        return wanted <= renew(token, sorted(wanted), batch.now)

    outcomes, batch_error, tried = _send(batch.provider, outgoing, still_held)
    record_outcomes(outgoing[len(outcomes):tried], outcomes, batch_error, plans, batch.release, batch.stats,
                    batch.provider, batch.now)
    if tried < len(outgoing):  # never handed to the provider: pending again, for the next run
        rest, reason = outgoing[tried:], "not sent: an earlier part of the batch failed"
        if batch_error is None:  # this run's claim ran out on part of the batch
            rest, reason = _give_back_lost(token, rest, plans, batch), "not sent: this run's claim ran out"
        record_outcomes(rest, [], RetryableError(reason), plans, batch.release, batch.stats, batch.provider,
                        batch.now)
    with session_scope() as session:
        release(session, token, batch.release)
    if batch_error is not None and not isinstance(batch_error, AmbiguousError):
        batch.stats["provider_error"] = batch_error.reason
    return dict(batch.stats)


def _give_back_lost(token: str, rest: list[OutgoingEmail], plans: dict[int, _Plan],
                    batch: _Batch) -> list[OutgoingEmail]:
    """Of the messages this run did not hand over, those whose enrollment another run took go back to
    pending (unless that run moved them on already) and are not touched again; returns the ones still held."""
    held = renew(token, sorted({plans[item.message_id].enrollment.id for item in rest}), batch.now)
    lost = [item for item in rest if plans[item.message_id].enrollment.id not in held]
    if lost:
        with session_scope() as session:
            session.execute(update(Message).where(Message.id.in_([item.message_id for item in lost]),
                                                  Message.status == MessageStatus.SENDING)
                            .values(status=MessageStatus.PENDING, error="not sent: another run took it over")
                            .execution_options(synchronize_session=False))
        for item in lost:
            batch.release.pop(plans[item.message_id].enrollment.id, None)
        batch.stats["claim_lost"] += len(lost)
    return [item for item in rest if plans[item.message_id].enrollment.id in held]


def _send(provider: EmailProvider, outgoing: list[OutgoingEmail],
          still_held: Callable[[list[OutgoingEmail]], bool] = lambda part: True,
          ) -> tuple[list[SendOutcome], RetryableError | None, int]:
    """Send in the parts the shared email rate limit allows (one part at the default burst); stop at the
    first part that fails, or whose enrollments this run no longer holds every one of (a part is handed
    over only right after its lease was renewed). Returns (outcomes so far, that part's error, how many
    were handed over)."""
    outcomes: list[SendOutcome] = []
    tried = 0
    if not outgoing:
        return outcomes, None, tried
    try:
        for part in limits.Permits(limits.EMAIL, provider.name, len(outgoing)).chunks(outgoing):
            if not still_held(part):
                return outcomes, None, tried
            tried += len(part)
            outcomes += provider.send_batch(part)
    except RetryableError as exc:  # the provider's, or no permit in time (then `part` was not handed over)
        return outcomes, exc, tried
    return outcomes, None, tried


@task(name="send-outreach-batch")  # no retries: the provider retries itself; the DB makes re-runs safe
def send_outreach_batch(enrollment_ids: list[int], token: str, now: datetime) -> dict[str, Any]:
    """One task per batch (up to outreach_batch_size messages), never one per email."""
    return process_batch(enrollment_ids, token, now)


def send_due(limit: int = 5000, *, now: datetime | None = None,
             provider: EmailProvider | None = None) -> dict[str, Any]:
    """A whole send run in this process (tests, benchmarks); the flow runs the same loop as tasks."""
    run = SendRun(limit, now or utcnow())
    while ids := run.claim():
        run.add(process_batch(ids, run.token, run.now, provider))
    return run.summary()
