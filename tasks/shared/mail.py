"""Rendering and exactly-once delivery of single emails (signing links, welcome, remittance, notices).

Outreach sequences send in batches through the same provider interface; this module is
for one-off mails a flow sends to one person.

Exactly once: `deliver()` first inserts a Message row under a deterministic key. Only the
caller that moves the row from pending to sending (a compare-and-set UPDATE) talks to the
provider, so a retried task, a re-run flow or a second worker finds the row and stops.

At most once, when the answer is unclear: a send that may have been accepted (a timeout after
the request went out, SMTP cut after DATA, a crash right after the call) stays `sending`. The
provider's events (SendGrid `processed`, web/outreach.py) or a lookup settle it; what nothing
settles is failed by the sweep in tasks/shared/unconfirmed_mail.py and the team is told.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jinja2
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from partnerflow.models import Message, MessageStatus, audit, session_scope, utcnow
from partnerflow.providers.email import OutgoingEmail, get_email_provider
from partnerflow.providers.errors import AmbiguousError, RetryableError
from partnerflow.settings import get_settings
from partnerflow.tasks.shared import limits
from partnerflow.tasks.shared.faults import kill_point
from partnerflow.tasks.shared.suppression import blocks


class TemplateError(Exception):
    """A template is missing or uses a field the context lacks; nothing was sent."""


@functools.lru_cache(maxsize=1)
def template_env() -> jinja2.Environment:
    root = resources.files("partnerflow.templates")
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(root)),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        keep_trailing_newline=True,
    )


@dataclass
class RenderedEmail:
    subject: str
    text: str
    html: str | None


def render_email(name: str, context: dict[str, Any]) -> RenderedEmail:
    """Render templates/<stage>/email/<name>/{subject.txt, body.txt, body.html} for a name "<stage>/<name>".

    StrictUndefined names the missing field.
    """
    stage, _, short = name.rpartition("/")
    return render_folder(f"{stage}/email/{short}", context)


def render_folder(folder: str, context: dict[str, Any], subject: str | None = None) -> RenderedEmail:
    """Render the mail in templates/<folder>/; a `subject` given here replaces subject.txt (and is in the
    context as `subject`). body.html is optional."""
    settings = get_settings()
    ctx = {
        "company_name": settings.company_name,
        "sender_name": settings.mail.sender_name,
        "postal_address": settings.mail.postal_address,
        "public_base_url": settings.public_base_url.rstrip("/"),
        **context,
        **({"subject": subject} if subject is not None else {}),
    }
    env = template_env()
    parts: dict[str, str | None] = {"subject.txt": subject} if subject is not None else {}
    for part in ("subject.txt", "body.txt", "body.html"):
        path = f"{folder}/{part}"
        if part in parts:
            continue
        try:
            parts[part] = env.get_template(path).render(ctx)
        except jinja2.TemplateNotFound:
            if part == "body.html":
                parts[part] = None
                continue
            raise TemplateError(f"email template {path} does not exist") from None
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"email template {path}: {exc.message}") from None
    return RenderedEmail(
        subject=" ".join((parts["subject.txt"] or "").split()),
        text=parts["body.txt"] or "",
        html=parts["body.html"],
    )


def record_intent(key: str, *, kind: str, to_email: str, subject: str, partner_id: int | None = None,
                  prospect_id: int | None = None) -> Message:
    """Insert the Message row for `key`, or return the one already there."""
    with session_scope() as session:
        existing = session.exec(select(Message).where(Message.idempotency_key == key)).first()
        if existing:
            return existing
        row = Message(idempotency_key=key, kind=kind, to_email=to_email, subject=subject,
                      partner_id=partner_id, prospect_id=prospect_id)
        session.add(row)
        try:
            session.commit()
        except IntegrityError:  # another worker inserted it first
            session.rollback()
            return session.exec(select(Message).where(Message.idempotency_key == key)).one()
        session.refresh(row)
        return row


def claim(message_id: int, from_statuses: tuple[MessageStatus, ...]) -> bool:
    """Atomically move a message to `sending`; True only for the one caller that won."""
    with session_scope() as session:
        result = session.execute(
            update(Message)
            .where(Message.id == message_id, Message.status.in_(from_statuses))
            .values(status=MessageStatus.SENDING, attempts=Message.attempts + 1, attempted_at=utcnow())
        )
        return result.rowcount == 1


def deliver(key: str, *, kind: str, to_email: str, template: str, context: dict[str, Any],
            partner_id: int | None = None, prospect_id: int | None = None,
            attachments: list[tuple[str, bytes, str]] | None = None) -> Message:
    """Render, record and send one email exactly once under `key`. Returns the Message row.

    Raises TemplateError before anything is recorded, RetryableError for the task's retries when
    nothing was accepted. A send that may have been accepted is returned still `sending`.
    """
    rendered = render_email(template, context)
    message = record_intent(key, kind=kind, to_email=to_email, subject=rendered.subject,
                            partner_id=partner_id, prospect_id=prospect_id)
    if message.status in (MessageStatus.SENT, MessageStatus.FAILED, MessageStatus.BOUNCED):
        return message
    # Commercial mail never goes to anyone on the suppression list; mail the person asked for
    # (signing link, remittance) is stopped only by a hard bounce (suppression.blocks).
    with session_scope() as session:
        reason = blocks(session, to_email, kind)
    if reason and claim(message.id, (MessageStatus.PENDING,)):
        return _set_status(message.id, MessageStatus.FAILED,
                           f"suppressed ({reason}): address is on the suppression list")
    provider = get_email_provider(get_settings().mail)
    # A row left in `sending` by a crash may be re-sent only when the provider is idempotent
    # per key; otherwise it waits for reconciliation (provider webhooks) instead.
    claimable = (MessageStatus.PENDING, MessageStatus.SENDING) if provider.idempotent else (MessageStatus.PENDING,)
    if not claim(message.id, claimable):
        return message
    item = OutgoingEmail(message_id=message.id, idempotency_key=key, to=to_email, subject=rendered.subject,
                         text=rendered.text, html=rendered.html, categories=[kind], attachments=attachments or [])
    try:
        limits.take(limits.EMAIL, provider.name)  # the rate every worker shares
        outcome = provider.send_batch([item])[0]
    except AmbiguousError as exc:
        return _unconfirmed(message.id, provider.name, exc.reason)
    except RetryableError:
        _set_status(message.id, MessageStatus.PENDING, None)
        raise
    kill_point("mail.after_send")  # the provider may have the mail; our row still says `sending`
    if outcome.error is None:
        return _set_status(message.id, MessageStatus.SENT, None, provider.name, outcome.provider_message_id)
    if isinstance(outcome.error, AmbiguousError):
        return _unconfirmed(message.id, provider.name, outcome.error.reason)
    if isinstance(outcome.error, RetryableError):
        _set_status(message.id, MessageStatus.PENDING, outcome.error.reason)
        raise outcome.error
    return _set_status(message.id, MessageStatus.FAILED, outcome.error.reason, provider.name)


def _unconfirmed(message_id: int, provider: str, reason: str) -> Message:
    """Maybe accepted: keep `sending` (never back to pending, which would send it again) and say why."""
    with session_scope() as session:
        row = session.get(Message, message_id)
        row.provider = provider
        session.add(row)
        audit(session, actor=provider, action="mail.unconfirmed", subject_type="message", subject_id=message_id,
              details={"kind": row.kind, "reason": reason[:500]})
    return row


def _set_status(message_id: int, status: MessageStatus, error: str | None, provider: str | None = None,
                provider_message_id: str | None = None) -> Message:
    with session_scope() as session:
        row = session.get(Message, message_id)
        row.status = status
        row.error = error
        if provider:
            row.provider = provider
        if provider_message_id:
            row.provider_message_id = provider_message_id
        if status == MessageStatus.SENT:
            row.sent_at = utcnow()
        session.add(row)
    return row
