"""Web routes for recruitment: unsubscribe (link and RFC 8058 one-click), SendGrid's Event
Webhook, and SendGrid Inbound Parse (replies stop their enrollment)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import time
from email.parser import HeaderParser
from email.utils import getaddresses, parseaddr
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from partnerflow.models import (
    Message,
    MessageStatus,
    WebhookEvent,
    session_scope,
    utcnow,
)
from partnerflow.models.outreach import Enrollment, StopReason
from partnerflow.providers.email.settings import MailSettings
from partnerflow.settings import ConfigError, get_settings
from partnerflow.tasks.outreach.unsubscribe import enrollment_for_token
from partnerflow.tasks.shared.suppression import stop_enrollments_for, suppress
from partnerflow.web.pages import render

log = logging.getLogger(__name__)
router = APIRouter()

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


# --- unsubscribe ---

def _page(title: str, text: str, status: int = 200) -> HTMLResponse:
    return render("outreach/pages/message.html", status, title=title, text=text, company=get_settings().company_name)


def _enrollment_email(token: str) -> str | None:
    enrollment_id = enrollment_for_token(token)
    if enrollment_id is None:
        return None
    with session_scope() as session:
        row = session.get(Enrollment, enrollment_id)
        return row.email if row else None


@router.get("/u/{token}", response_class=HTMLResponse)
def unsubscribe_page(token: str) -> HTMLResponse:
    """Shows a confirmation button; a GET never unsubscribes (mail scanners follow links)."""
    email = _enrollment_email(token)
    if email is None:
        return _page("Link not valid", "This unsubscribe link is not valid.", 404)
    return render("outreach/pages/unsubscribe.html", title="Unsubscribe", email=email,
                  company=get_settings().company_name)


@router.post("/u/{token}", response_class=HTMLResponse)
async def unsubscribe(token: str, request: Request) -> HTMLResponse:
    """The form button and RFC 8058 one-click POST (body `List-Unsubscribe=One-Click`); idempotent."""
    body = (await request.body()).decode(errors="replace")
    source = "one-click" if "List-Unsubscribe=One-Click" in body else "unsubscribe-link"
    return await run_in_threadpool(_unsubscribe, token, source)  # database work off the event loop


def _unsubscribe(token: str, source: str) -> HTMLResponse:
    email = _enrollment_email(token)
    if email is None:
        return _page("Link not valid", "This unsubscribe link is not valid.", 404)
    with session_scope() as session:
        suppress(session, email, StopReason.UNSUBSCRIBE, source=source)
    return _page("Unsubscribed", f"{email} will not receive any more emails from us.")


# --- SendGrid Event Webhook ---

def _public_key(value: str) -> ec.EllipticCurvePublicKey:
    value = value.strip()
    if value.startswith("-----BEGIN"):
        return serialization.load_pem_public_key(value.encode())
    return serialization.load_der_public_key(base64.b64decode(value))


def _mail_settings() -> MailSettings:
    """The mail settings; a webhook whose settings are wrong (e.g. an empty secret) is refused, not a 500."""
    try:
        return get_settings().mail
    except ConfigError as exc:
        log.error("a SendGrid webhook is refused until the mail settings are fixed: %s", exc)
        raise HTTPException(403, "this webhook is not configured") from None


def verify_sendgrid_signature(payload: bytes, signature: str | None, timestamp: str | None,
                              now: float | None = None) -> None:
    """Raise HTTPException (4xx) unless the post is signed by SendGrid's key within the time window."""
    mail = _mail_settings()
    if not mail.sendgrid_webhook_public_key:
        raise HTTPException(403, "event webhook verification key is not configured")
    if not signature or not timestamp:
        raise HTTPException(401, "missing signature headers")
    if not timestamp.isascii() or not timestamp.isdigit():
        raise HTTPException(400, "malformed timestamp")
    age = (now or time.time()) - int(timestamp)
    if abs(age) > mail.sendgrid_webhook_max_age_seconds:
        raise HTTPException(403, "timestamp outside the accepted window (replayed or stale)")
    try:
        key = _public_key(mail.sendgrid_webhook_public_key)
        key.verify(base64.b64decode(signature, validate=True), timestamp.encode() + payload,
                   ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, TypeError):
        raise HTTPException(403, "signature does not verify") from None


@router.post("/webhooks/sendgrid/events")
async def sendgrid_events(request: Request) -> JSONResponse:
    if not _mail_settings().sendgrid_webhook_public_key:
        raise HTTPException(403, "event webhook verification key is not configured")
    if _media_type(request) != "application/json":
        raise HTTPException(415, "SendGrid events are expected as application/json")
    payload = await request.body()
    verify_sendgrid_signature(payload, request.headers.get(SIGNATURE_HEADER), request.headers.get(TIMESTAMP_HEADER))
    try:
        events = json.loads(payload)
        if not isinstance(events, list) or not all(
                isinstance(e, dict) and isinstance(e.get("sg_event_id"), str) and isinstance(e.get("event"), str)
                for e in events):
            raise ValueError
    except ValueError:
        raise HTTPException(400, "expected a JSON list of events with sg_event_id and event") from None
    return JSONResponse(await run_in_threadpool(apply_sendgrid_events, events))


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def apply_sendgrid_events(events: list[dict[str, Any]]) -> dict[str, int]:
    """Store each verified event once (by sg_event_id) and apply it to its message."""
    counts = {"received": len(events), "new": 0, "duplicate": 0, "unmatched": 0}
    for event in events:
        with session_scope() as session:
            if session.exec(select(WebhookEvent.id).where(WebhookEvent.provider == "sendgrid",
                                                          WebhookEvent.event_id == event["sg_event_id"])).first():
                counts["duplicate"] += 1
                continue
            stored = WebhookEvent(provider="sendgrid", event_id=event["sg_event_id"], event_type=event["event"],
                                  payload=event)
            session.add(stored)
            try:
                session.flush()
            except IntegrityError:  # the same event arrived concurrently
                session.rollback()
                counts["duplicate"] += 1
                continue
            counts["new"] += 1
            if not _apply_event(session, event):
                counts["unmatched"] += 1
            stored.processed_at = utcnow()
    return counts


def _find_message(session, event: dict[str, Any]) -> Message | None:
    raw_id = str(event.get("pf_message_id") or "")
    if raw_id.isdigit():
        message = session.get(Message, int(raw_id))
        if message is not None:
            return message
    sg_id = str(event.get("sg_message_id") or "").split(".", 1)[0]
    if sg_id:
        return session.exec(select(Message).where(Message.provider_message_id == sg_id,
                                                  Message.to_email == event.get("email"))).first()
    return None


def _apply_event(session, event: dict[str, Any]) -> bool:
    kind = event["event"]
    message = _find_message(session, event)
    email = event.get("email") or (message.to_email if message else None)
    when = utcnow()
    if kind in ("spamreport", "unsubscribe", "group_unsubscribe") and email:
        reason = StopReason.SPAM_REPORT if kind == "spamreport" else StopReason.UNSUBSCRIBE
        suppress(session, email, reason, source="sendgrid")
    if message is None:
        return False
    table = Message.__table__
    this = update(table).where(table.c.id == message.id)
    confirm = this.where(table.c.status.in_([MessageStatus.SENDING, MessageStatus.PENDING])).values(
        status=MessageStatus.SENT, sent_at=when, provider="sendgrid")
    if kind == "processed":
        session.execute(confirm)  # reconciles a send whose answer we never saw
    elif kind == "delivered":
        session.execute(confirm)
        session.execute(this.values(delivered_at=when))
    elif kind == "open":
        session.execute(this.where(table.c.opened_at.is_(None)).values(opened_at=when))
    elif kind == "click":
        session.execute(this.where(table.c.clicked_at.is_(None)).values(clicked_at=when))
    elif kind == "bounce":
        reason = str(event.get("reason") or event.get("type") or "bounced")[:500]
        if event.get("type") == "blocked":  # a soft bounce: this message failed, the address is fine
            session.execute(this.values(status=MessageStatus.FAILED, error=reason))
        else:
            session.execute(this.values(status=MessageStatus.BOUNCED, error=reason))
            suppress(session, message.to_email, StopReason.BOUNCE, source="sendgrid")
    elif kind == "dropped":
        reason = str(event.get("reason") or "dropped")[:500]
        session.execute(this.values(status=MessageStatus.FAILED, error=reason))
        stop = _dropped_reason(reason.lower())
        if stop is not None:
            suppress(session, message.to_email, stop, source="sendgrid")
    return True


def _dropped_reason(reason: str) -> StopReason | None:
    """What a `dropped` event's reason means for the address (SendGrid drops known-bad ones)."""
    if "bounce" in reason or "invalid" in reason:
        return StopReason.BOUNCE
    if "spam" in reason:
        return StopReason.SPAM_REPORT
    if "unsubscribe" in reason:
        return StopReason.UNSUBSCRIBE
    return None


# --- SendGrid Inbound Parse: replies ---

OUR_MESSAGE_ID = re.compile(r"<outreach\.enrollment\.(\d+)\.step\.\d+@")


@router.post("/webhooks/sendgrid/inbound")
async def sendgrid_inbound(request: Request) -> JSONResponse:
    """A reply stops the sender's enrollments (matched by our Message-ID, else by address).

    Inbound Parse signs nothing, so the URL configured at SendGrid carries our secret token
    (?token=...); without a token configured every post is refused, or anyone could stop enrollments.
    """
    token = _mail_settings().sendgrid_inbound_token
    if not token:
        raise HTTPException(403, "inbound parse is not configured (PARTNERFLOW_SENDGRID_INBOUND_TOKEN)")
    if not _same_secret(request.query_params.get("token", ""), token.get_secret_value()):
        raise HTTPException(403, "inbound token does not match")
    if _media_type(request) not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise HTTPException(415, "expected multipart/form-data from Inbound Parse")
    try:
        form = await request.form()
    except StarletteHTTPException:  # e.g. the body limit's 413: answered as it is
        raise
    except Exception:
        raise HTTPException(400, "expected multipart/form-data from Inbound Parse") from None
    fields = {key: str(form.get(key) or "") for key in ("headers", "from", "text", "subject")}
    return JSONResponse(await run_in_threadpool(_record_reply, fields))


def _same_secret(given: str, expected: str) -> bool:
    """Constant time, on bytes: a non-ASCII token is a mismatch, not a crash."""
    return bool(given and expected) and hmac.compare_digest(given.encode(), expected.encode())


def _record_reply(form: dict[str, str]) -> dict[str, Any]:
    raw_headers = str(form.get("headers") or "")
    sender = parseaddr(str(form.get("from") or ""))[1].lower()
    if not sender and not raw_headers:
        raise HTTPException(400, "inbound mail without a sender")
    headers = HeaderParser().parsestr(raw_headers) if raw_headers else {}
    refs = " ".join(str(headers.get(h, "")) for h in ("In-Reply-To", "References"))
    digest = hashlib.sha256((raw_headers + "\n" + str(form.get("text") or "")).encode()).hexdigest()[:40]
    addresses = {sender} if sender else set()
    with session_scope() as session:
        try:
            with session.begin_nested():
                session.add(WebhookEvent(provider="sendgrid_inbound", event_id=digest, event_type="reply",
                                         payload={"from": sender, "subject": str(form.get("subject") or "")[:300],
                                                  "references": refs[:1000]}))
        except IntegrityError:
            return {"matched": 0, "duplicate": True}
        for enrollment_id in {int(x) for x in OUR_MESSAGE_ID.findall(refs)}:
            row = session.get(Enrollment, enrollment_id)
            if row is not None:
                addresses.add(row.email)
        if not addresses and headers:
            addresses = {a.lower() for _, a in getaddresses([str(headers.get("From", ""))]) if a}
        stopped = sum(stop_enrollments_for(session, a, StopReason.REPLY, actor="inbound-mail") for a in addresses)
    return {"matched": stopped, "duplicate": False}
