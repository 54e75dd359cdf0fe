"""Callbacks from the e-signature vendors: verified, timestamp-checked, confirmed, stored once, then acted on.

Anything forged, unsigned, malformed or too old is refused (WebhookRejected) and stores nothing.
A callback already acted on is answered as delivered ("duplicate"), so the vendor stops retrying.
A callback saying "signed" is believed only once the vendor's API says so too: Dropbox Sign's hash
covers only the event's time and type, and Documenso sends a static secret, so a signed-looking
callback proves little. A failure while acting (e.g. the signed PDF cannot be downloaded yet)
propagates, so the vendor retries; the stored, unprocessed event is then picked up again
(or by the signature sweep).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from partnerflow.models import (
    Contract,
    ContractStatus,
    SignatureRequest,
    WebhookEvent,
    audit,
    session_scope,
    utcnow,
)
from partnerflow.models.contracting import OPEN_SIGNATURE_STATUSES, SignatureStatus
from partnerflow.providers.errors import ProviderError
from partnerflow.providers.esign import SignatureProvider, registry
from partnerflow.providers.esign.base import Inbound, NotConfirmed, NotReady, Target, WebhookRejected
from partnerflow.settings import ConfigError, get_settings
from partnerflow.tasks.contracting.sending import esign_provider, legacy_references, record_sent
from partnerflow.tasks.contracting.signing import complete_signature


def callback_provider(slug: str) -> SignatureProvider:
    """The vendor a callback URL (/webhooks/{slug}) belongs to; 404 when unknown or not configured."""
    name = registry.by_slug(slug)
    if name is None:
        raise WebhookRejected(404, f"no e-signature vendor calls back at {slug!r}")
    try:
        return esign_provider(name)
    except (ConfigError, ProviderError):
        raise WebhookRejected(404, f"{registry.title(name)} is not configured") from None


def handle_callback(provider: SignatureProvider, inbound: Inbound) -> str:
    """Verify, store once and act on one callback; returns what happened. Raises WebhookRejected."""
    check_media_type(provider, inbound)
    callback = provider.parse_callback(inbound)
    check_timestamp(callback.occurred_at)
    if callback.test:
        return "test"
    if already_processed(provider.name, callback.event_id):
        return "duplicate"
    target = provider.completion(callback.payload)
    if target is not None:
        confirm_signed(provider, target)
    declined = provider.declined(callback.payload)
    if declined is not None and not provider.is_declined(declined.provider_request_id):
        raise NotConfirmed(f"{provider.name} does not report request {declined.provider_request_id} as declined")
    webhook_id = store_event(provider.name, callback.event_id, callback.event_type, callback.payload)
    if webhook_id is None:  # a concurrent delivery of the same event finished first
        return "duplicate"
    try:
        return act(provider, webhook_id, callback.payload)
    except NotReady:
        if target is not None and not target.final:
            return "waiting for a later event"  # the vendor sends another once the document is ready
        raise


def act(provider: SignatureProvider, webhook_id: int, payload: dict) -> str:
    """Complete (or close, when declined) the request a stored event is about; other events are only kept."""
    completion = provider.completion(payload)
    if completion is not None:
        return complete_from_provider(provider, webhook_id, completion)
    declined = provider.declined(payload)
    if declined is not None:
        return decline_from_provider(provider.name, webhook_id, declined)
    mark_processed(webhook_id)
    return "stored"


def check_media_type(provider: SignatureProvider, inbound: Inbound) -> None:
    header = next((v for k, v in inbound.headers.items() if k.lower() == "content-type"), "")
    media_type = header.split(";", 1)[0].strip().lower()
    if media_type not in provider.callback_media_types:
        raise WebhookRejected(415, f"callbacks are expected as {' or '.join(provider.callback_media_types)}")


def check_timestamp(when: datetime) -> None:
    """Reject callbacks older than the window (vendors retry with the original time) or from the future."""
    age = (utcnow() - when).total_seconds()
    if age > get_settings().esign.esign_webhook_max_age_seconds:
        raise WebhookRejected(400, f"event is too old ({int(age)}s)")
    if age < -300:
        raise WebhookRejected(400, "event timestamp is in the future")


def already_processed(provider: str, event_id: str) -> bool:
    with session_scope() as session:
        row = session.exec(select(WebhookEvent).where(WebhookEvent.provider == provider,
                                                      WebhookEvent.event_id == event_id)).first()
        return row is not None and row.processed_at is not None


def confirm_signed(provider: SignatureProvider, target: Target) -> None:
    """Ask the vendor whether the request really is signed; NotConfirmed (answer 503, store nothing) if not.

    A vendor that is merely slow to show the signature retries the callback; a forged one gets nowhere.
    """
    if not provider.is_signed(target.provider_request_id):
        raise NotConfirmed(f"{provider.name} does not report request {target.provider_request_id} as signed")


def store_event(provider: str, event_id: str, event_type: str, payload: dict) -> int | None:
    """Store a verified callback once; return its row id, or None when it was already acted on.

    A stored callback that was not yet acted on (the earlier delivery failed half-way) is
    returned again, so the vendor's retry finishes the work.
    """
    with session_scope() as session:
        session.add(WebhookEvent(provider=provider, event_id=event_id, event_type=event_type, payload=payload))
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
    with session_scope() as session:
        row = session.exec(select(WebhookEvent).where(WebhookEvent.provider == provider,
                                                      WebhookEvent.event_id == event_id)).one()
        return None if row.processed_at is not None else row.id


def mark_processed(webhook_event_id: int | None) -> None:
    if webhook_event_id is None:  # completion found by polling, not by a callback
        return
    with session_scope() as session:
        row = session.get(WebhookEvent, webhook_event_id)
        row.processed_at = utcnow()
        session.add(row)


def find_signature_request(provider: str, provider_request_id: str, reference: str | None) -> SignatureRequest | None:
    """Our row for a vendor request; by our reference when the send's answer was lost (id not recorded)."""
    with session_scope() as session:
        row = session.exec(select(SignatureRequest).where(SignatureRequest.provider == provider,
                                                          SignatureRequest.provider_request_id == provider_request_id)
                           ).first()
        if row or not reference:
            return row
        row = session.exec(select(SignatureRequest).where(SignatureRequest.provider == provider,
                                                          SignatureRequest.reference == reference)).first()
        if row:
            return row
        for candidate in session.exec(select(SignatureRequest).where(  # rows from before stored references
                SignatureRequest.provider == provider, SignatureRequest.provider_request_id.is_(None),
                SignatureRequest.reference.is_(None))):
            if reference in legacy_references(candidate):
                return candidate
    return None


def complete_from_provider(provider: SignatureProvider, webhook_event_id: int | None, target: Target) -> str:
    """Download the signed PDF and complete our signature request; returns what happened (for logs/tests)."""
    provider_request_id = target.provider_request_id
    row = find_signature_request(provider.name, provider_request_id, target.reference)
    if row is None:
        mark_processed(webhook_event_id)
        return "unknown request"
    if row.provider_request_id is None:
        record_sent(provider, row.id, provider_request_id, adopted=True)
    if row.status == SignatureStatus.SIGNED:
        mark_processed(webhook_event_id)
        return "already signed"
    if row.status not in OPEN_SIGNATURE_STATUSES:
        # Signed at the vendor after we expired or voided it here: a person has to decide.
        with session_scope() as session:
            audit(session, actor=provider.name, action="signature.signed_after_close", subject_type="signature_request",
                  subject_id=row.id, details={"status": row.status, "provider_request_id": provider_request_id})
        mark_processed(webhook_event_id)
        return f"request is {row.status}"
    pdf = provider.download(provider_request_id)
    with session_scope() as session:
        contract = session.get(Contract, row.contract_id)
    # The signer saw the document we sent; the vendor's audit trail is part of its PDF.
    evidence = {"provider": provider.name, "provider_request_id": provider_request_id,
                "signer_name": row.signer_name, "document_sha256": contract.document_sha256, **target.details}
    won = complete_signature(row.id, signed_document=pdf, filename=f"contract-{row.contract_id}-signed.pdf",
                             evidence=evidence, actor=provider.name)
    mark_processed(webhook_event_id)
    return "completed" if won else "already signed"


def decline_from_provider(provider_name: str, webhook_event_id: int | None, target: Target) -> str:
    """The signer declined at the vendor: close our request (no reminders to someone who said no)."""
    row = find_signature_request(provider_name, target.provider_request_id, target.reference)
    if row is None:
        mark_processed(webhook_event_id)
        return "unknown request"
    with session_scope() as session:
        closed = session.execute(update(SignatureRequest)
                                 .where(SignatureRequest.id == row.id,
                                        SignatureRequest.status.in_(OPEN_SIGNATURE_STATUSES))
                                 .values(status=SignatureStatus.VOIDED)).rowcount == 1
        if closed:
            session.execute(update(Contract).where(Contract.id == row.contract_id,
                                                   Contract.status.in_((ContractStatus.GENERATED, ContractStatus.SENT)))
                            .values(status=ContractStatus.VOIDED))
            audit(session, actor=provider_name, action="signature.declined", subject_type="signature_request",
                  subject_id=row.id, details={"contract_id": row.contract_id,
                                              "provider_request_id": target.provider_request_id, **target.details})
    mark_processed(webhook_event_id)
    return "declined" if closed else f"request is {row.status}"


def receive_callback(slug: str, inbound: Inbound) -> tuple[str, str | None]:
    """Act on a callback to /webhooks/{slug}: (what happened, the exact reply body the vendor wants, if any)."""
    provider = callback_provider(slug)
    return handle_callback(provider, inbound), provider.callback_reply
