"""What the SaaS e-signature providers (Dropbox Sign, DocuSign) share.

- HTTP error classification: 429 / 5xx / timeouts -> RetryableError (with Retry-After),
  other 4xx -> PermanentError naming the provider's reason. A create call that may have
  reached the provider (read timeout, 500/502/504) -> AmbiguousError.
- `send_once`: at most one provider-side request per SignatureRequest row, see its docstring.
- Callback handling: timestamp window, store once by provider event id, then act.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import httpx
from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from partnerflow.models import (
    Contract,
    SignatureRequest,
    WebhookEvent,
    audit,
    session_scope,
    utcnow,
)
from partnerflow.models.contracting import SignatureSendAttempt
from partnerflow.providers.errors import AmbiguousError, PermanentError, RetryableError
from partnerflow.secrets import token_hash
from partnerflow.settings import get_settings

# Status codes after which a create may or may not have happened at the provider.
_AMBIGUOUS_STATUSES = {500, 502, 504}


@dataclass
class Envelope:
    """What we ask a provider to send for signature."""

    reference: str  # our opaque id, stored at the provider (metadata / custom field)
    title: str
    message: str
    document: bytes
    filename: str
    signer_name: str
    signer_email: str


class SaasProvider(Protocol):
    name: str

    def create(self, envelope: Envelope) -> str: ...
    def find(self, reference: str) -> str | None: ...
    def void(self, provider_request_id: str, reason: str) -> None: ...
    def download(self, provider_request_id: str) -> bytes: ...
    def is_signed(self, provider_request_id: str) -> bool: ...


# --- HTTP ------------------------------------------------------------------------------------

def retry_after(response: httpx.Response) -> float | None:
    """Seconds from Retry-After (seconds or HTTP date), or from a rate-limit reset epoch header."""
    value = response.headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
                return max(0.0, (when - datetime.now(UTC)).total_seconds())
            except (TypeError, ValueError):
                return None
    reset = response.headers.get("x-ratelimit-reset")
    if reset and reset.isdigit():
        return max(0.0, int(reset) - time.time())
    return None


def call(client: httpx.Client, method: str, url: str, *, provider: str, reason_of: Callable[[httpx.Response], str],
         creating: bool = False, **kwargs) -> httpx.Response:
    """One HTTP call, with every failure turned into a RetryableError / AmbiguousError / PermanentError."""
    what = f"{provider} {method} {httpx.URL(url).path}"  # no query string: presigned URLs carry secrets there
    try:
        response = client.request(method, url, **kwargs)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise RetryableError(f"{what}: cannot connect ({type(exc).__name__})") from None
    except httpx.TransportError as exc:  # read/write timeout, connection dropped mid-way
        cls = AmbiguousError if creating else RetryableError
        raise cls(f"{what}: no answer ({type(exc).__name__})") from None
    if response.status_code < 400:
        return response
    reason = f"{what}: HTTP {response.status_code} {reason_of(response)}".strip()
    if response.status_code == 429:
        raise RetryableError(reason, retry_after=retry_after(response))
    if response.status_code >= 500:
        cls = AmbiguousError if creating and response.status_code in _AMBIGUOUS_STATUSES else RetryableError
        raise cls(reason, retry_after=retry_after(response))
    raise PermanentError(reason)


# --- sending exactly once --------------------------------------------------------------------

def reference_for(signature_request: SignatureRequest) -> str:
    """Our id at the provider: keyed by the install's secret, so two installs sharing an account never collide."""
    # Letters and digits only: it is matched by the providers' search syntax (a "-" can mean NOT).
    return "pf" + token_hash(f"esign:{signature_request.idempotency_key}")[:24]


def send_once(provider: SaasProvider, signature_request_id: int, *, document: bytes, filename: str,
              title: str, message: str = "") -> str:
    """Create the provider request for this row at most once; return the provider's request id.

    Neither Dropbox Sign nor DocuSign accepts an idempotency key on create, so a
    SignatureSendAttempt row is claimed (insert, or compare-and-set on its time) before the call.
    If a call ends without a clear answer (timeout, 500/502/504) the attempt stays, and the next
    try first searches the provider for our reference (Dropbox Sign metadata, DocuSign custom
    field). Found: adopt that id. Not found: the provider's search can lag behind a create, so
    we refuse to resend (AmbiguousError) until `esign_reconcile_after_seconds` have passed since
    the attempt; only then is "not found" trusted and the request sent again. A clear failure
    (connect error, 429, 503, 4xx) removes the attempt, since nothing was created.
    """
    settings = get_settings()
    with session_scope() as session:
        row = session.get(SignatureRequest, signature_request_id)
        if row is None:
            raise PermanentError(f"signature request {signature_request_id} does not exist")
        if row.provider_request_id:
            return row.provider_request_id
        reference = reference_for(row)
        attempt = session.get(SignatureSendAttempt, signature_request_id)
        previous_attempt = attempt.attempted_at if attempt else None
        envelope = Envelope(reference=reference, title=title, message=message, document=document,
                            filename=filename, signer_name=row.signer_name, signer_email=row.signer_email)

    if previous_attempt is not None:
        found = provider.find(reference)
        if found:
            _record_sent(signature_request_id, provider.name, found, adopted=True)
            return found
        waited = (utcnow() - previous_attempt).total_seconds()
        if waited < settings.esign.esign_reconcile_after_seconds:
            raise AmbiguousError(
                f"{provider.name}: an earlier send of signature request {signature_request_id} has an unknown "
                f"outcome and is not found yet; not resending before {settings.esign.esign_reconcile_after_seconds}s",
                retry_after=settings.esign.esign_reconcile_after_seconds - waited)

    attempt_at = utcnow()
    if not _claim_attempt(signature_request_id, previous_attempt, attempt_at):
        raise RetryableError(f"{provider.name}: signature request {signature_request_id} is being sent by another "
                             "worker", retry_after=5)
    try:
        provider_request_id = provider.create(envelope)
    except AmbiguousError:
        raise
    except Exception:
        with session_scope() as session:
            session.execute(delete(SignatureSendAttempt).where(
                SignatureSendAttempt.signature_request_id == signature_request_id,
                SignatureSendAttempt.attempted_at == attempt_at))
        raise
    _record_sent(signature_request_id, provider.name, provider_request_id, adopted=False)
    return provider_request_id


def _claim_attempt(signature_request_id: int, previous: datetime | None, attempt_at: datetime) -> bool:
    """True for the one caller that may talk to the provider now (insert, or CAS on the previous time)."""
    with session_scope() as session:
        if previous is None:
            session.add(SignatureSendAttempt(signature_request_id=signature_request_id, attempted_at=attempt_at))
            try:
                session.commit()
                return True
            except IntegrityError:
                session.rollback()
                return False
        return session.execute(update(SignatureSendAttempt)
                               .where(SignatureSendAttempt.signature_request_id == signature_request_id,
                                      SignatureSendAttempt.attempted_at == previous)
                               .values(attempted_at=attempt_at)).rowcount == 1


def _record_sent(signature_request_id: int, provider: str, provider_request_id: str, *, adopted: bool) -> None:
    with session_scope() as session:
        row = session.get(SignatureRequest, signature_request_id)
        row.provider = provider
        row.provider_request_id = provider_request_id
        if row.status == "pending":
            row.status = "sent"
        session.add(row)
        session.execute(delete(SignatureSendAttempt).where(
            SignatureSendAttempt.signature_request_id == signature_request_id))
        audit(session, actor=provider, action="signature.sent", subject_type="signature_request",
              subject_id=signature_request_id,
              details={"provider_request_id": provider_request_id, "found_after_unknown_outcome": adopted})


# --- callbacks -------------------------------------------------------------------------------

class WebhookRejected(Exception):
    """A callback we refuse; `status` is the HTTP status to answer, `reason` is safe to show."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def check_timestamp(when: datetime) -> None:
    """Reject callbacks older than the window (providers retry with the original time) or from the future."""
    settings = get_settings()
    age = (utcnow() - when).total_seconds()
    if age > settings.esign.esign_webhook_max_age_seconds:
        raise WebhookRejected(400, f"event is too old ({int(age)}s)")
    if age < -300:
        raise WebhookRejected(400, "event timestamp is in the future")


def store_event(provider: str, event_id: str, event_type: str, payload: dict) -> int:
    """Store a verified callback once; return its row id. A callback already acted on is a replay (409).

    A stored callback that was not yet acted on (the earlier delivery failed half-way) is
    returned again, so the provider's retry finishes the work.
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
        if row.processed_at is not None:
            raise WebhookRejected(409, "event already received")
        return row.id


def mark_processed(webhook_event_id: int | None) -> None:
    if webhook_event_id is None:  # completion found by polling, not by a callback
        return
    with session_scope() as session:
        row = session.get(WebhookEvent, webhook_event_id)
        row.processed_at = utcnow()
        session.add(row)


def find_signature_request(provider: str, provider_request_id: str, reference: str | None) -> SignatureRequest | None:
    """Our row for a provider request; by our reference when the send's answer was lost (id not recorded)."""
    with session_scope() as session:
        row = session.exec(select(SignatureRequest).where(SignatureRequest.provider == provider,
                                                          SignatureRequest.provider_request_id == provider_request_id)
                           ).first()
        if row or not reference:
            return row
        for candidate in session.exec(select(SignatureRequest).where(
                SignatureRequest.provider == provider, SignatureRequest.provider_request_id.is_(None))):
            if reference_for(candidate) == reference:
                return candidate
    return None


def complete_from_provider(provider: SaasProvider, webhook_event_id: int | None, provider_request_id: str,
                           reference: str | None, evidence: dict) -> str:
    """Download the signed PDF and complete our signature request; returns what happened (for logs/tests)."""
    from partnerflow.tasks.contracting.signing import complete_signature

    row = find_signature_request(provider.name, provider_request_id, reference)
    if row is None:
        mark_processed(webhook_event_id)
        return "unknown request"
    if row.provider_request_id is None:
        _record_sent(row.id, provider.name, provider_request_id, adopted=True)
    if row.status == "signed":
        mark_processed(webhook_event_id)
        return "already signed"
    if row.status not in ("pending", "sent"):
        # Signed at the provider after we expired or voided it here: a person has to decide.
        with session_scope() as session:
            audit(session, actor=provider.name, action="signature.signed_after_close", subject_type="signature_request",
                  subject_id=row.id, details={"status": row.status, "provider_request_id": provider_request_id})
        mark_processed(webhook_event_id)
        return f"request is {row.status}"
    pdf = provider.download(provider_request_id)
    with session_scope() as session:
        contract = session.get(Contract, row.contract_id)
    # The signer saw the document we sent; the provider's audit trail is part of its PDF.
    evidence = {"provider": provider.name, "provider_request_id": provider_request_id,
                "signer_name": row.signer_name, "document_sha256": contract.document_sha256, **evidence}
    won = complete_signature(row.id, signed_document=pdf, filename=f"contract-{row.contract_id}-signed.pdf",
                             evidence=evidence, actor=provider.name)
    mark_processed(webhook_event_id)
    return "completed" if won else "already signed"


def decline_from_provider(provider_name: str, webhook_event_id: int | None, provider_request_id: str,
                          reference: str | None, details: dict) -> str:
    """The signer declined at the provider: close our request (no reminders to someone who said no)."""
    row = find_signature_request(provider_name, provider_request_id, reference)
    if row is None:
        mark_processed(webhook_event_id)
        return "unknown request"
    with session_scope() as session:
        closed = session.execute(update(SignatureRequest)
                                 .where(SignatureRequest.id == row.id, SignatureRequest.status.in_(("pending", "sent")))
                                 .values(status="voided")).rowcount == 1
        if closed:
            session.execute(update(Contract).where(Contract.id == row.contract_id,
                                                   Contract.status.in_(("generated", "sent")))
                            .values(status="voided"))
            audit(session, actor=provider_name, action="signature.declined", subject_type="signature_request",
                  subject_id=row.id, details={"contract_id": row.contract_id,
                                              "provider_request_id": provider_request_id, **details})
    mark_processed(webhook_event_id)
    return "declined" if closed else f"request is {row.status}"


def http_client(settings_timeout: float) -> httpx.Client:
    return httpx.Client(timeout=httpx.Timeout(settings_timeout, connect=min(5.0, settings_timeout)))
