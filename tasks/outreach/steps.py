"""Enrolling prospects into sequences and sending the due steps exactly once.

How a send run stays exactly-once with many workers:
1. It claims due enrollments in the database (one UPDATE setting a run token and a lease;
   `FOR UPDATE SKIP LOCKED` on PostgreSQL), so two runs never hold the same row.
2. For each claimed enrollment it writes the Message row under the key
   `outreach:enrollment:<id>:step:<n>` BEFORE calling the provider, then marks it `sending`.
3. After the provider answers, messages become `sent` and enrollments advance.
A crash after step 2 leaves `sending` rows: an idempotent provider (the outbox) may repeat
them; SendGrid may not, so those wait for its event webhook (`processed`) to confirm them.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import bindparam, func, insert, or_, update
from sqlmodel import Session, select

from partnerflow.models import (
    Application,
    Message,
    MessageStatus,
    Partner,
    Prospect,
    audit,
    session_scope,
    utcnow,
)
from partnerflow.models.engine import is_postgres
from partnerflow.models.outreach import (
    Enrollment,
    EnrollmentStatus,
    Sequence,
    StopReason,
)
from partnerflow.providers.email import EmailProvider, OutgoingEmail, get_email_provider
from partnerflow.providers.errors import AmbiguousError, RetryableError
from partnerflow.secrets import master_key, token_hash
from partnerflow.settings import get_settings
from partnerflow.tasks.outreach.sequences import (
    base_context,
    latest_version,
    render_step,
    step_applies,
    step_delay,
)
from partnerflow.tasks.shared.suppression import (
    normalise_email,
    stop_enrollments_for,
    suppressed_among,
)

KIND = "outreach"
CLAIM_LEASE = timedelta(minutes=30)
RECHECK_AMBIGUOUS = timedelta(hours=1)
RETRY_LATER = timedelta(minutes=10)


def message_key(enrollment_id: int, step: int) -> str:
    return f"outreach:enrollment:{enrollment_id}:step:{step}"


# --- unsubscribe tokens: "<enrollment id>-<keyed hash>", unguessable without the secret key ---

def unsubscribe_token(enrollment_id: int) -> str:
    # Same value as secrets.token_hash(f"unsubscribe:{id}"), with the derived key computed once per key.
    key = _token_key(master_key())
    signature = hmac.new(key, f"unsubscribe:{enrollment_id}".encode(), hashlib.sha256).hexdigest()
    return f"{enrollment_id}-{signature[:32]}"


@functools.lru_cache(maxsize=4)
def _token_key(master: bytes) -> bytes:
    return hmac.new(master, b"token", hashlib.sha256).digest()


def enrollment_for_token(token: str) -> int | None:
    head, _, sig = (token or "").partition("-")
    if not head.isdigit() or not sig:
        return None
    expected = token_hash(f"unsubscribe:{int(head)}")[:32]
    return int(head) if hmac.compare_digest(sig, expected) else None


def unsubscribe_url(enrollment_id: int) -> str:
    return f"{get_settings().public_base_url.rstrip('/')}/u/{unsubscribe_token(enrollment_id)}"


# --- enrollment ---

def prospect_context(p: Prospect | Any) -> dict[str, Any]:
    name = (p.name or "").strip()
    return {"id": p.id, "name": name, "first_name": name.split()[0] if name else "", "email": p.email,
            "company": p.company or "", "website": p.website or "", "domain": p.domain or "",
            "country": p.country or "", "score": p.score or 0, "topics": list(p.topics or [])}


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
            emails = {normalise_email(p.email) for p in chunk}
            suppressed = suppressed_among(session, emails)
            signed_up = signed_up_among(session, emails)
            already = set(session.exec(select(Enrollment.prospect_id).where(
                Enrollment.sequence_name == sequence, Enrollment.prospect_id.in_([p.id for p in chunk]))).all())
            rows = []
            for p in chunk:
                email = normalise_email(p.email)
                if p.id in already:
                    stats["already_enrolled"] += 1
                elif email in suppressed:
                    stats["suppressed"] += 1
                elif email in signed_up or p.status in ("applied", "replied", "unsubscribed", "bounced"):
                    stats["skipped"] += 1
                else:
                    rows.append({"prospect_id": p.id, "sequence_id": version.id, "sequence_name": sequence,
                                 "email": email, "current_step": 0, "status": EnrollmentStatus.ACTIVE,
                                 "next_due_at": first_due, "created_at": now, "updated_at": now})
            if rows:
                session.execute(insert(Enrollment), rows)
                session.execute(update(Prospect).where(Prospect.id.in_([r["prospect_id"] for r in rows]))
                                .values(status="enrolled", updated_at=now))
                stats["enrolled"] += len(rows)
            session.commit()
        audit(session, actor="system", action="outreach.enrolled", subject_type="sequence", subject_id=version.id,
              details=dict(stats))
    return {"enrolled": 0, **stats}


def stop_enrollment(*, enrollment_id: int | None = None, email: str | None = None,
                    reason: str = StopReason.MANUAL, actor: str = "cli") -> int:
    """Manual stop of one enrollment (by id) or of all of a person's (by email). Returns how many."""
    with session_scope() as session:
        if email:
            return stop_enrollments_for(session, email, reason, actor=actor)
        stopped = session.execute(
            update(Enrollment).where(Enrollment.id == enrollment_id, Enrollment.status == EnrollmentStatus.ACTIVE)
            .values(status=EnrollmentStatus.STOPPED, stop_reason=reason, next_due_at=None, updated_at=utcnow())
        ).rowcount
        if stopped:
            audit(session, actor=actor, action="enrollment.stopped", subject_type="enrollment",
                  subject_id=enrollment_id, details={"reason": reason})
        return stopped


# --- claiming due work ---

def claim_due(token: str, size: int, now: datetime) -> list[int]:
    """Claim up to `size` due enrollments for run `token`; returns their ids (none held by another run)."""
    with session_scope() as session:
        due = (select(Enrollment.id)
               .where(Enrollment.status == EnrollmentStatus.ACTIVE, Enrollment.next_due_at <= now,
                      or_(Enrollment.claimed_until.is_(None), Enrollment.claimed_until < now))
               .order_by(Enrollment.next_due_at, Enrollment.id).limit(size))
        if is_postgres():
            due = due.with_for_update(skip_locked=True)
        session.execute(update(Enrollment).where(Enrollment.id.in_(due.scalar_subquery()))
                        .values(claim_token=token, claimed_until=now + CLAIM_LEASE)
                        .execution_options(synchronize_session=False))
        session.commit()
        return list(session.exec(select(Enrollment.id).where(Enrollment.claim_token == token,
                                                             Enrollment.claimed_until > now)).all())


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


@dataclass
class _Plan:
    enrollment: Enrollment
    prospect: Prospect
    definition: dict[str, Any]
    step: int
    unsubscribe_url: str


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


def _sent_today(session: Session, sender: str, now: datetime, cap: int) -> int:
    """Outreach messages from `sender` since UTC midnight, counted only up to `cap` (all we need to know)."""
    midnight = datetime.combine(now.date(), time(0), tzinfo=UTC)
    today = (select(Message.id).where(
        Message.kind == KIND, Message.sender_email == sender, Message.created_at >= midnight,
        Message.status.in_([MessageStatus.PENDING, MessageStatus.SENDING, MessageStatus.SENT,
                            MessageStatus.BOUNCED])).limit(max(cap, 0)).subquery())
    return session.exec(select(func.count()).select_from(today)).one()


def process_batch(enrollment_ids: list[int], token: str, now: datetime | None = None,
                  provider: EmailProvider | None = None) -> dict[str, Any]:
    """Send the due step of each enrollment claimed by `token`; returns counts by outcome."""
    now = now or utcnow()
    settings = get_settings()
    provider = provider or get_email_provider(get_settings().mail)
    stats: Counter = Counter()
    release: dict[int, dict[str, Any]] = {}  # enrollment id -> column values to write when done
    to_send: list[tuple[_Plan, Any]] = []  # (plan, rendered)
    with session_scope() as session:
        rows = _load_claimed(session, enrollment_ids, token)
        emails = {e.email for e, _ in rows}
        suppressed = suppressed_among(session, emails)
        signed_up = signed_up_among(session, emails)
        keys = [message_key(e.id, e.current_step) for e, _ in rows]
        existing = {m.idempotency_key: m for m in session.exec(
            select(Message).where(Message.idempotency_key.in_(keys))).all()} if keys else {}
        cap_left: dict[str, int] = {}
        definitions: dict[int, dict[str, Any]] = {}
        for enrollment, prospect in rows:
            definition = _definition(session, enrollment.sequence_id, definitions)
            step = enrollment.current_step
            sender = (definition.get("sender") or {}).get("email") or settings.mail.sender_email
            if enrollment.status != EnrollmentStatus.ACTIVE:
                release[enrollment.id] = {}
                continue
            if enrollment.email in suppressed:
                stop_enrollments_for(session, enrollment.email, StopReason.SUPPRESSED)
                stats["stopped_suppressed"] += 1
                release[enrollment.id] = {}
                continue
            if enrollment.email in signed_up:
                stop_enrollments_for(session, enrollment.email, StopReason.SIGNUP)
                stats["stopped_signup"] += 1
                release[enrollment.id] = {}
                continue
            if step >= len(definition["steps"]):
                release[enrollment.id] = {"status": EnrollmentStatus.COMPLETED, "next_due_at": None}
                continue
            prior = existing.get(message_key(enrollment.id, step))
            resend = prior is not None and (prior.status == MessageStatus.PENDING or (
                prior.status == MessageStatus.SENDING and provider.idempotent))  # outbox: a repeat overwrites
            if prior is not None and not resend:
                if prior.status == MessageStatus.SENT:
                    release[enrollment.id] = _advance(definition, step, now)
                    stats["already_sent"] += 1
                elif prior.status == MessageStatus.SENDING:
                    # Maybe accepted (crash or timeout): never re-send blindly; wait for the provider's events.
                    if now - prior.created_at >= timedelta(seconds=settings.outreach.outreach_reconcile_after_seconds):
                        session.execute(update(Message).where(Message.id == prior.id,
                                                              Message.status == MessageStatus.SENDING)
                                        .values(status=MessageStatus.FAILED,
                                                error="send timed out and was never confirmed by the provider"))
                        release[enrollment.id] = _advance(definition, step, now)
                        stats["unconfirmed"] += 1
                    else:
                        release[enrollment.id] = {"next_due_at": now + RECHECK_AMBIGUOUS}
                        stats["awaiting_confirmation"] += 1
                else:  # failed or bounced: this address cannot be mailed
                    release[enrollment.id] = {"status": EnrollmentStatus.STOPPED, "stop_reason": "failed",
                                              "next_due_at": None}
                continue
            zone = _zone(prospect.timezone)
            if zone is not None:
                opening = next_business_start(zone, now, settings.outreach.outreach_business_hours_start,
                                              settings.outreach.outreach_business_hours_end)
                if opening is not None:
                    release[enrollment.id] = {"next_due_at": opening}
                    stats["deferred_business_hours"] += 1
                    continue
            pctx = prospect_context(prospect)
            if not step_applies(definition, step, pctx):
                release[enrollment.id] = _advance(definition, step, now)
                stats["step_skipped"] += 1
                continue
            if sender not in cap_left:
                cap_left[sender] = settings.outreach.daily_send_cap - _sent_today(session, sender, now, settings.outreach.daily_send_cap)
            is_new = prior is None
            if is_new and cap_left[sender] <= 0:
                tomorrow = datetime.combine(now.date() + timedelta(days=1), time(0), tzinfo=UTC)
                release[enrollment.id] = {"next_due_at": tomorrow}
                stats["deferred_daily_cap"] += 1
                continue
            if is_new:
                cap_left[sender] -= 1
            sender_info = definition.get("sender") or {}
            url = unsubscribe_url(enrollment.id)
            ctx = base_context(pctx, unsubscribe_url=url,
                               sender_name=sender_info.get("name"), sender_email=sender_info.get("email"))
            try:
                rendered = render_step(definition, step, ctx)
            except Exception:
                session.rollback()
                _release(session, token, {eid: {} for eid in enrollment_ids})
                session.commit()
                raise  # a template error stops the run before this batch sends anything
            to_send.append((_Plan(enrollment, prospect, definition, step, url), rendered))
        # Intent first: the message rows exist (pending) before the provider is called.
        new_rows = [{"idempotency_key": message_key(p.enrollment.id, p.step), "kind": KIND,
                     "to_email": p.prospect.email, "subject": r.subject, "prospect_id": p.prospect.id,
                     "status": MessageStatus.PENDING, "attempts": 0, "created_at": now,
                     "enrollment_id": p.enrollment.id, "step": p.step,
                     "sender_email": (p.definition.get("sender") or {}).get("email") or settings.mail.sender_email}
                    for p, r in to_send if message_key(p.enrollment.id, p.step) not in existing]
        if new_rows:
            session.execute(insert(Message), new_rows)
        session.commit()
        ids = dict(session.execute(select(Message.idempotency_key, Message.id).where(
            Message.idempotency_key.in_([message_key(p.enrollment.id, p.step) for p, _ in to_send]))).all())
        if ids:
            session.execute(update(Message).where(Message.id.in_(list(ids.values())))
                            .values(status=MessageStatus.SENDING, attempts=Message.attempts + 1)
                            .execution_options(synchronize_session=False))
        session.commit()

    outgoing = []
    by_message: dict[int, _Plan] = {}
    for plan, rendered in to_send:
        key = message_key(plan.enrollment.id, plan.step)
        url = plan.unsubscribe_url
        sender_info = plan.definition.get("sender") or {}
        outgoing.append(OutgoingEmail(
            message_id=ids[key], idempotency_key=key, to=plan.prospect.email, subject=rendered.subject,
            text=rendered.text, html=rendered.html, categories=[KIND, plan.definition["name"]],
            headers={"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
            from_email=sender_info.get("email"), from_name=sender_info.get("name")))
        by_message[ids[key]] = plan

    outcomes = []
    batch_error: Exception | None = None
    if outgoing:
        try:
            outcomes = provider.send_batch(outgoing)
        except RetryableError as exc:
            batch_error = exc
    _record(outgoing, outcomes, batch_error, by_message, release, stats, provider, now)
    with session_scope() as session:
        _release(session, token, release)
    if batch_error is not None and not isinstance(batch_error, AmbiguousError):
        stats["provider_error"] = batch_error.reason
    return dict(stats)


def _record(outgoing, outcomes, batch_error, by_message, release, stats, provider, now) -> None:
    """Write what the provider said: sent rows, failed rows, rows to retry or to reconcile."""
    sent, failed, retry = [], [], []
    if batch_error is not None:
        if isinstance(batch_error, AmbiguousError):
            for item in outgoing:  # maybe accepted: keep `sending`, wait for the provider's events
                release[by_message[item.message_id].enrollment.id] = {"next_due_at": now + RECHECK_AMBIGUOUS}
            stats["ambiguous"] += len(outgoing)
        else:
            retry = [(item.message_id, batch_error.reason) for item in outgoing]
            for item in outgoing:
                release[by_message[item.message_id].enrollment.id] = {"next_due_at": now + RETRY_LATER}
    for outcome in outcomes:
        plan = by_message[outcome.message_id]
        if outcome.error is None:
            sent.append({"_id": outcome.message_id, "_pmid": outcome.provider_message_id})
            release[plan.enrollment.id] = _advance(plan.definition, plan.step, now)
        elif isinstance(outcome.error, AmbiguousError):
            release[plan.enrollment.id] = {"next_due_at": now + RECHECK_AMBIGUOUS}
            stats["ambiguous"] += 1
        elif isinstance(outcome.error, RetryableError):
            retry.append((outcome.message_id, outcome.error.reason))
            release[plan.enrollment.id] = {"next_due_at": now + RETRY_LATER}
            stats["provider_error"] = outcome.error.reason  # stops this run; the next one tries again
        else:
            failed.append({"_id": outcome.message_id, "_err": outcome.error.reason[:500]})
            release[plan.enrollment.id] = {"status": EnrollmentStatus.STOPPED, "stop_reason": "failed",
                                           "next_due_at": None}
    stats["sent"] += len(sent)
    stats["failed"] += len(failed)
    stats["retry_later"] += len(retry)
    table = Message.__table__
    with session_scope() as session:
        by_request: dict[str | None, list[int]] = {}  # one X-Message-Id per SendGrid request: one UPDATE each
        for row in sent:
            by_request.setdefault(row["_pmid"], []).append(row["_id"])
        for pmid, message_ids in by_request.items():
            for i in range(0, len(message_ids), 500):
                session.execute(update(table).where(table.c.id.in_(message_ids[i:i + 500]),
                                                    table.c.status == MessageStatus.SENDING)
                                .values(status=MessageStatus.SENT, provider=provider.name, provider_message_id=pmid,
                                        sent_at=now, error=None))
        if failed:
            session.execute(update(table).where(table.c.id == bindparam("_id"))
                            .values(status=MessageStatus.FAILED, provider=provider.name, error=bindparam("_err")),
                            failed)
        if retry:  # nothing was accepted: back to pending, sent by a later run
            session.execute(update(table).where(table.c.id == bindparam("_id"))
                            .values(status=MessageStatus.PENDING, error=bindparam("_err")),
                            [{"_id": mid, "_err": reason[:500]} for mid, reason in retry])


def _advance(definition: dict[str, Any], step: int, now: datetime) -> dict[str, Any]:
    following = step + 1
    if following >= len(definition["steps"]):
        return {"current_step": following, "status": EnrollmentStatus.COMPLETED, "next_due_at": None}
    return {"current_step": following, "next_due_at": now + step_delay(definition, following)}


def _release(session: Session, token: str, changes: dict[int, dict[str, Any]]) -> None:
    """Apply each enrollment's changes and give the claim back (only rows this run still holds)."""
    groups: dict[tuple, list[int]] = {}
    for enrollment_id, values in changes.items():
        groups.setdefault(tuple(sorted(values.items(), key=lambda kv: kv[0])), []).append(enrollment_id)
    for values, ids in groups.items():
        for i in range(0, len(ids), 500):
            session.execute(update(Enrollment).where(Enrollment.id.in_(ids[i:i + 500]), Enrollment.claim_token == token)
                            .values(**dict(values), claim_token=None, claimed_until=None, updated_at=utcnow())
                            .execution_options(synchronize_session=False))


def send_due(limit: int = 5000, *, now: datetime | None = None, provider: EmailProvider | None = None,
             run_batch: Callable[..., dict[str, Any]] | None = None) -> dict[str, Any]:
    """Claim and send due steps in batches until none are due or `limit` enrollments were handled."""
    now = now or utcnow()
    token = uuid.uuid4().hex
    size = max(1, get_settings().outreach.outreach_batch_size)
    totals: Counter = Counter()
    errors: list[str] = []
    handled = batches = 0
    while handled < limit:
        ids = claim_due(token, min(size, limit - handled), now)
        if not ids:
            break
        handled += len(ids)
        batches += 1
        if run_batch is not None:
            result = run_batch(ids, token, now)
        else:
            result = process_batch(ids, token, now, provider)
        error = result.pop("provider_error", None)
        totals.update(result)
        if error:
            errors.append(error)
            break  # the provider is failing: leave the rest for the next run
    return {"claimed": handled, "batches": batches, **totals, "errors": errors}
