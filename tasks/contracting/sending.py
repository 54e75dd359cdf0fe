"""Sending one signature request through its vendor exactly once, and mailing our own signing link.

The SignatureRequest row (with its idempotency key) exists before any call. A vendor accepts no
idempotency key on create, so a SignatureSendAttempt row is claimed (insert, or compare-and-set
on its time) before the call. If a call ends without a clear answer (timeout, 500/502/504) the
attempt stays, and the next try first searches the vendor for our reference. Found: adopt that
id. Not found: the vendor's search can lag behind a create, so we refuse to resend
(AmbiguousError) until `esign_reconcile_after_seconds` have passed since the attempt; only then
is "not found" trusted and the request sent again. A clear failure (connect error, 429, 503,
4xx) removes the attempt, since nothing was created.

Our reference is fixed on the row when the row is made, never derived from the secret key, so a key
rotation between an unclear send and its follow-up cannot make the follow-up search under a new
reference and send again. Rows made before that have no stored reference: theirs was a keyed hash
under the key newest at the time, so the follow-up searches under every listed key (the edge: once
that key is retired, such a row's unclear send can no longer be found, and is sent again after the
reconcile wait) and the reference is stored on the row from then on.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from partnerflow.models import Contract, Partner, SignatureRequest, audit, session_scope, utcnow
from partnerflow.models.contracting import SignatureSendAttempt, SignatureStatus, new_signature_reference
from partnerflow.providers.errors import AmbiguousError, PermanentError, RetryableError
from partnerflow.providers.esign import SignatureProvider, get_esign_provider
from partnerflow.providers.esign.base import Envelope
from partnerflow.providers.esign.builtin import request_id as builtin_request_id
from partnerflow.secrets import keys, token_hash, token_hashes
from partnerflow.settings import get_settings
from partnerflow.tasks.shared import limits
from partnerflow.tasks.shared.mail import deliver


def esign_provider(name: str | None = None) -> SignatureProvider:
    """The configured vendor (or `name`), given what the built-in page takes from the installation."""
    settings = get_settings()
    return get_esign_provider(settings.esign.for_installation(link_key=signing_link_keys()[0],
                                                              public_base_url=settings.public_base_url), name)


def signing_link_keys() -> list[str]:
    """The built-in page's link key under each listed secret key, newest first (new links use the first)."""
    return [hmac.new(key.secret, b"builtin-signing-link", hashlib.sha256).hexdigest() for key in keys()]


def reference_for(signature_request: SignatureRequest) -> str:
    """Our id at the vendor: the one stored on the row (see the module docstring for older rows)."""
    if signature_request.reference:
        return signature_request.reference
    sent_id = signature_request.provider_request_id or ""
    if sent_id.startswith(builtin_request_id("")):  # the built-in id is made of the reference
        return sent_id.removeprefix(builtin_request_id(""))
    return legacy_references(signature_request)[0]


def legacy_references(signature_request: SignatureRequest) -> list[str]:
    """What a row made before references were stored was sent under: a keyed hash of its idempotency key
    under the key newest then, i.e. one of these while that key is listed (newest key first)."""
    return ["pf" + digest[:24] for digest in token_hashes(f"esign:{signature_request.idempotency_key}")]


def fix_reference(signature_request_id: int) -> str:
    """The row's reference, stored now if it had none (an older row about to be sent for the first time
    or again): whoever stores first wins, every caller gets the stored one."""
    with session_scope() as session:
        session.execute(update(SignatureRequest).where(SignatureRequest.id == signature_request_id,
                                                       SignatureRequest.reference.is_(None))
                        .values(reference=new_signature_reference()))
    with session_scope() as session:
        return session.get(SignatureRequest, signature_request_id).reference


def send_request(provider: SignatureProvider, signature_request_id: int, *, document: bytes, filename: str,
                 title: str, message: str = "") -> str:
    """Send this row once; return the vendor's request id. Our own signing link is mailed once (`sign:{id}`)."""
    provider_request_id = send_once(provider, signature_request_id, document=document, filename=filename,
                                    title=title, message=message)
    with session_scope() as session:
        row = session.get(SignatureRequest, signature_request_id)
        link = provider.signing_link(reference_for(row))
        if link is None:
            return provider_request_id
        partner = session.get(Partner, session.get(Contract, row.contract_id).partner_id)
        context = {"signer_name": row.signer_name, "legal_name": partner.legal_name, "title": title,
                   "message": message, "signing_url": link.url,
                   "expires_on": row.expires_at.strftime("%d %B %Y") if row.expires_at else ""}
        to_email, partner_id = row.signer_email, partner.id
    deliver(f"sign:{signature_request_id}", kind="signing_request", to_email=to_email,
            template="contracting/signing_request", context=context, partner_id=partner_id)
    return provider_request_id


def send_once(provider: SignatureProvider, signature_request_id: int, *, document: bytes, filename: str,
              title: str, message: str = "") -> str:
    """Create the vendor's request for this row at most once; return its id (see the module docstring)."""
    settings = get_settings()
    with session_scope() as session:
        row = session.get(SignatureRequest, signature_request_id)
        if row is None:
            raise PermanentError(f"signature request {signature_request_id} does not exist")
        if row.provider_request_id:
            return row.provider_request_id
        searched = [row.reference] if row.reference else legacy_references(row)
        attempt = session.get(SignatureSendAttempt, signature_request_id)
        previous_attempt = attempt.attempted_at if attempt else None
        signer_name, signer_email = row.signer_name, row.signer_email

    if previous_attempt is not None:
        for reference in searched:
            limits.take(limits.ESIGN, provider.name)
            found = provider.find(reference)
            if found:
                record_sent(provider, signature_request_id, found, adopted=True, reference=reference)
                return found
        waited = (utcnow() - previous_attempt).total_seconds()
        wait = settings.esign.esign_reconcile_after_seconds
        if waited < wait:
            raise AmbiguousError(
                f"{provider.name}: an earlier send of signature request {signature_request_id} has an unknown "
                f"outcome and is not found yet; not resending before {wait}s", retry_after=wait - waited)

    envelope = Envelope(reference=fix_reference(signature_request_id), title=title, message=message,
                        document=document, filename=filename, signer_name=signer_name, signer_email=signer_email)
    limits.take(limits.ESIGN, provider.name)  # before the attempt is claimed: waiting holds nothing
    attempt_at = utcnow()
    if not _claim_attempt(signature_request_id, previous_attempt, attempt_at):
        raise RetryableError(f"{provider.name}: signature request {signature_request_id} is being sent by another "
                             "worker", retry_after=5)
    try:
        provider_request_id = provider.send(envelope)
    except AmbiguousError:
        raise
    except Exception:
        with session_scope() as session:
            session.execute(delete(SignatureSendAttempt).where(
                SignatureSendAttempt.signature_request_id == signature_request_id,
                SignatureSendAttempt.attempted_at == attempt_at))
        raise
    record_sent(provider, signature_request_id, provider_request_id, adopted=False)
    return provider_request_id


def _claim_attempt(signature_request_id: int, previous: datetime | None, attempt_at: datetime) -> bool:
    """True for the one caller that may talk to the vendor now (insert, or CAS on the previous time)."""
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


def record_sent(provider: SignatureProvider, signature_request_id: int, provider_request_id: str, *,
                adopted: bool, reference: str | None = None) -> None:
    """The row is at the vendor now (with the hash of our signing link's token, if we mail one);
    `reference`: the one an older row was found under, kept on the row from now on."""
    with session_scope() as session:
        row = session.get(SignatureRequest, signature_request_id)
        if row.reference is None and reference:
            row.reference = reference
        link = provider.signing_link(reference_for(row))
        row.provider = provider.name
        row.provider_request_id = provider_request_id
        if link is not None:
            row.token_hash = token_hash(link.token)
        if row.status == SignatureStatus.PENDING:
            row.status = SignatureStatus.SENT
        session.add(row)
        session.execute(delete(SignatureSendAttempt).where(
            SignatureSendAttempt.signature_request_id == signature_request_id))
        audit(session, actor=provider.name, action="signature.sent", subject_type="signature_request",
              subject_id=signature_request_id,
              details={"provider_request_id": provider_request_id, "found_after_unknown_outcome": adopted})
