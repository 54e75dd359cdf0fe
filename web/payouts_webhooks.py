"""Stripe webhooks for payouts: verified, stored once by event id, then acted on.

- Unsigned, forged, malformed or outside the 5-minute signature window (a replay) -> 400, nothing stored.
- A delivery of an event already acted on -> 200 "duplicate" (Stripe retries until it gets a 2xx),
  nothing done twice. An event stored but not yet acted on (we crashed in between) is acted on then.
- `transfer.created` confirms a payout (e.g. one a crash left unrecorded); `transfer.reversed`
  fails it, which gives its commissions back to the partner's balance and tells the team.
  `payout.paid` / `payout.failed` are the connected account's own bank payouts: recorded and audited.

PayPal has no route here: its webhooks are verified by calling PayPal's verify-webhook-signature
API, so the PayPal rail confirms payouts by status polling instead (tasks/payouts/reconcile.py).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from starlette.concurrency import run_in_threadpool

from partnerflow.models import Payout, WebhookEvent, audit, session_scope, utcnow
from partnerflow.models.payouts import PayoutStatus
from partnerflow.providers.payout.stripe import SignatureError, verify_webhook
from partnerflow.settings import ConfigError, get_settings
from partnerflow.tasks.payouts.outcomes import mark_payout_failed, mark_payout_paid

log = logging.getLogger(__name__)
router = APIRouter()

TRANSFER_EVENTS = ("transfer.created", "transfer.reversed", "transfer.updated")


def _store(event: dict) -> tuple[int, bool]:
    """(webhook_event id, already processed?) — the event is stored once by its Stripe id."""
    try:
        with session_scope() as session:
            row = WebhookEvent(provider="stripe", event_id=event["id"], event_type=event["type"], payload=event)
            session.add(row)
            session.flush()
            return row.id, False
    except IntegrityError:
        with session_scope() as session:
            row = session.exec(select(WebhookEvent).where(WebhookEvent.provider == "stripe",
                                                          WebhookEvent.event_id == event["id"])).one()
            return row.id, row.processed_at is not None


def _processed(webhook_id: int) -> None:
    with session_scope() as session:
        session.execute(update(WebhookEvent).where(WebhookEvent.id == webhook_id).values(processed_at=utcnow()))


def _our_payout(transfer: dict) -> Payout | None:
    """The payout this transfer was made for: by its transfer_group (our key), checked against the amount.

    Only by our key: another installation sharing the Stripe account has payouts with the same ids,
    so a transfer's metadata.payout_id alone could name one of ours.
    """
    key = transfer.get("transfer_group") or ""
    with session_scope() as session:
        payout = session.exec(select(Payout).where(Payout.idempotency_key == key)).first() if key else None
        if payout is None or payout.rail != "stripe":
            return None
        if payout.amount_minor != transfer.get("amount") or payout.currency.lower() != transfer.get("currency"):
            log.warning("stripe transfer %s does not match payout %s; ignored", transfer.get("id"), payout.id)
            return None
        if payout.provider_ref and payout.provider_ref != transfer.get("id"):
            log.warning("stripe transfer %s is not payout %s's transfer; ignored", transfer.get("id"), payout.id)
            return None
        session.expunge(payout)
        return payout


def handle_stripe_event(event: dict) -> str:
    """Act on one verified event; returns what happened."""
    webhook_id, done = _store(event)
    if done:
        return "duplicate"
    obj = event["data"]["object"]
    outcome = "ignored"
    if event["type"] in TRANSFER_EVENTS and obj.get("object") == "transfer":
        payout = _our_payout(obj)
        if payout is not None:
            fully_reversed = bool(obj.get("reversed")) or (obj.get("amount_reversed") or 0) >= obj.get("amount", 0) > 0
            if event["type"] == "transfer.reversed" or (event["type"] == "transfer.updated" and fully_reversed):
                if fully_reversed:
                    mark_payout_failed(payout.id, f"Stripe transfer {obj['id']} was reversed", actor="stripe")
                    outcome = "failed"
                else:
                    with session_scope() as session:
                        audit(session, actor="stripe", action="payout.partially_reversed", subject_type="payout",
                              subject_id=payout.id, details={"transfer": obj["id"],
                                                             "amount_reversed": obj.get("amount_reversed")})
                    outcome = "partially reversed"
            elif event["type"] == "transfer.created":
                if payout.status == PayoutStatus.FAILED:
                    # Money moved for a payout we gave up on (its commissions went back to the balance):
                    # never settle that silently; a person reconciles it.
                    with session_scope() as session:
                        audit(session, actor="stripe", action="payout.transfer_after_failure", subject_type="payout",
                              subject_id=payout.id, details={"transfer": obj["id"], "amount": obj.get("amount")})
                    log.error("stripe transfer %s exists for failed payout %s", obj["id"], payout.id)
                    outcome = "needs review"
                else:
                    mark_payout_paid(payout.id, obj["id"], actor="stripe")
                    outcome = "paid"
    elif event["type"] in ("payout.paid", "payout.failed"):
        # The partner's own Stripe balance reaching (or failing to reach) their bank: our transfer stands.
        with session_scope() as session:
            audit(session, actor="stripe", action=f"stripe.{event['type']}", subject_type="stripe_account",
                  subject_id=event.get("account") or "platform",
                  details={"payout": obj.get("id"), "amount": obj.get("amount"), "currency": obj.get("currency"),
                           "failure_code": obj.get("failure_code")})
        outcome = "recorded"
    _processed(webhook_id)
    return outcome


@router.post("/webhooks/stripe")
async def stripe_webhook(request: Request):
    try:
        payouts = get_settings().payouts
    except ConfigError as exc:  # e.g. an empty secret: refused until the settings are fixed, never a 500
        log.error("stripe webhook refused until the payout settings are fixed: %s", exc)
        payouts = None
    if payouts is None or not payouts.stripe_webhook_secret:  # an empty key would verify anyone's HMAC
        return JSONResponse({"error": "Stripe webhooks are not configured"}, status_code=404)
    signature = request.headers.get("stripe-signature")
    if signature is not None and not signature.isascii():  # compare_digest on non-ASCII text raises
        return JSONResponse({"error": "malformed Stripe-Signature header"}, status_code=400)
    body = await request.body()
    try:
        event = verify_webhook(body, signature,
                               payouts.stripe_webhook_secret.get_secret_value(),
                               tolerance_seconds=payouts.stripe_webhook_tolerance_seconds)
    except SignatureError as exc:
        log.warning("stripe webhook rejected: %s", exc)
        return JSONResponse({"error": str(exc)}, status_code=400)
    if request.headers.get("content-type", "").split(";", 1)[0].strip().lower() != "application/json":
        return JSONResponse({"error": "Stripe events are expected as application/json"}, status_code=415)
    try:
        outcome = await run_in_threadpool(handle_stripe_event, event)
    except Exception:  # stored but not acted on: Stripe's retry acts on it
        log.exception("stripe event %s could not be acted on yet", event["id"])
        return JSONResponse({"error": "try again later"}, status_code=503)
    return {"status": outcome}
