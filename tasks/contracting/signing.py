"""Signature requests: create the row (idempotency key first), send through the vendor, complete once.

`request_signature` is safe to re-run: the row `contract:{id}:sign` is inserted before any
vendor call, and a row is sent at most once (tasks/contracting/sending.py). `complete_signature`
is the one way a contract becomes signed, used by the built-in signing page, the vendors'
callbacks and the sweeps' polling.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from partnerflow.models import (
    Contract,
    ContractStatus,
    Partner,
    SignatureRequest,
    Stage,
    audit,
    session_scope,
    utcnow,
)
from partnerflow.models.contracting import OPEN_SIGNATURE_STATUSES, SignatureStatus
from partnerflow.settings import get_settings
from partnerflow.tasks.contracting.policy import load_policy
from partnerflow.tasks.contracting.sending import esign_provider, send_request
from partnerflow.tasks.shared.events import CONTRACT_SIGNED, outbox_key, record, relay_after_commit

BUILTIN = "builtin"  # countersignatures are collected on our own signing page


class SigningError(Exception):
    """A contract cannot be sent for signature (unknown, already closed, document missing)."""


def signature_key(contract_id: int) -> str:
    return f"contract:{contract_id}:sign"


def countersign_key(contract_id: int) -> str:
    return f"contract:{contract_id}:countersign"


def needs_countersign(partner: Partner, provider: str) -> bool:
    """The approval policy's `countersign` rule, for builtin signing with a company signer configured."""
    settings = get_settings()
    if provider != BUILTIN or not settings.contracting.company_signer_email:
        return False
    rule = load_policy().get("countersign") or {}
    return partner.partner_type in (rule.get("partner_types") or []) or partner.tier in (rule.get("tiers") or [])


def signing_base(contract: Contract, row: SignatureRequest) -> bytes:
    """The document a signer signs: the contract, or for the countersignature the partner-signed copy."""
    if row.idempotency_key == countersign_key(contract.id) and contract.signed_path:
        return (get_settings().documents_dir / contract.signed_path).read_bytes()
    return contract_document(contract)


def contract_document(contract: Contract) -> bytes:
    path = get_settings().documents_dir / contract.document_path
    if not path.exists():
        raise SigningError(f"contract {contract.id}: document {contract.document_path} is missing")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != contract.document_sha256:
        raise SigningError(f"contract {contract.id}: document {contract.document_path} does not match its SHA-256")
    return data


def _ensure_row(contract_id: int, provider_name: str, *, countersign: bool = False) -> int:
    settings = get_settings()
    key = countersign_key(contract_id) if countersign else signature_key(contract_id)
    with session_scope() as session:
        existing = session.exec(select(SignatureRequest).where(SignatureRequest.idempotency_key == key)).first()
        if existing:
            return existing.id
        contract = session.get(Contract, contract_id)
        if contract is None:
            raise SigningError(f"contract {contract_id} does not exist")
        partner = session.get(Partner, contract.partner_id)
        if countersign:
            signer_name = settings.contracting.company_signer_name or settings.company_name
            signer_email = settings.contracting.company_signer_email
        else:
            signer_name, signer_email = partner.contact_name or partner.legal_name, partner.email
        row = SignatureRequest(
            contract_id=contract_id, idempotency_key=key, provider=provider_name,
            signer_name=signer_name, signer_email=signer_email,
            expires_at=utcnow() + timedelta(days=settings.contracting.signing_expiry_days))
        session.add(row)
        try:
            session.flush()
        except IntegrityError:
            session.rollback()
            return session.exec(select(SignatureRequest).where(SignatureRequest.idempotency_key == key)).one().id
        audit(session, actor="system", action="signature.requested", subject_type="contract", subject_id=contract_id,
              details={"signature_request_id": row.id, "provider": provider_name, "countersign": countersign})
        return row.id


def request_signature(contract_id: int) -> SignatureRequest:
    """Record the request, then send it through the configured provider (never twice)."""
    settings = get_settings()
    row_id = _ensure_row(contract_id, settings.esign.esign_provider)
    with session_scope() as session:
        row = session.get(SignatureRequest, row_id)
        contract = session.get(Contract, contract_id)
        if row.status not in OPEN_SIGNATURE_STATUSES:
            # Partner signed but the countersignature request was never sent (crash in between): send it now.
            pending_countersign = (row.status == SignatureStatus.SIGNED and contract.status != ContractStatus.SIGNED
                                   and needs_countersign(session.get(Partner, contract.partner_id), row.provider))
            if not pending_countersign:
                return row
        else:
            pending_countersign = False
        document = contract_document(contract)
        filename = Path(contract.document_path).name
        provider_name = row.provider
    if pending_countersign:
        request_countersignature(contract_id)
        with session_scope() as session:
            return session.get(SignatureRequest, row_id)
    send_request(esign_provider(provider_name), row_id, document=document, filename=filename,  # the row's vendor
                 title=f"{settings.company_name} partner agreement",
                 message="Please review and sign your partner agreement.")
    with session_scope() as session:
        session.execute(update(Contract).where(Contract.id == contract_id,
                                               Contract.status == ContractStatus.GENERATED)
                        .values(status=ContractStatus.SENT))
        partner_id = session.get(Contract, contract_id).partner_id
        session.execute(update(Partner).where(Partner.id == partner_id,
                                              Partner.stage.in_((Stage.APPLIED, Stage.APPROVED)))
                        .values(stage=Stage.CONTRACTING, updated_at=utcnow()))
        return session.get(SignatureRequest, row_id)


def request_countersignature(contract_id: int) -> SignatureRequest:
    """The company signer's request (builtin), sent once after the partner signed."""
    settings = get_settings()
    row_id = _ensure_row(contract_id, BUILTIN, countersign=True)
    with session_scope() as session:
        row = session.get(SignatureRequest, row_id)
        if row.status not in OPEN_SIGNATURE_STATUSES:
            return row
        partner = session.get(Partner, session.get(Contract, contract_id).partner_id)
        legal_name = partner.legal_name
    send_request(esign_provider(BUILTIN), row_id, document=b"", filename="",
                 title=f"Countersign: {legal_name} partner agreement",
                 message=f"{legal_name} has signed; please countersign for {settings.company_name}.")
    with session_scope() as session:
        return session.get(SignatureRequest, row_id)


def _store_signed(contract_id: int, signed_document: bytes, filename: str) -> tuple[str, str]:
    digest = hashlib.sha256(signed_document).hexdigest()
    safe = Path(filename).name or "signed"
    relative = f"signed/contract-{contract_id}-{digest[:12]}-{safe}"
    path = get_settings().documents_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(signed_document)
    tmp.replace(path)
    return relative, digest


def complete_signature(signature_request_id: int, *, signed_document: bytes, filename: str,
                       evidence: dict[str, Any], actor: str) -> bool:
    """Mark the request and its contract signed and emit contract.signed; False if already done (or closed)."""
    with session_scope() as session:
        row = session.get(SignatureRequest, signature_request_id)
        if row is None:
            raise SigningError(f"signature request {signature_request_id} does not exist")
        if row.status not in OPEN_SIGNATURE_STATUSES:
            return False
        contract_id = row.contract_id
        is_partner = row.idempotency_key == signature_key(contract_id)
        contract = session.get(Contract, contract_id)
        countersign_next = is_partner and needs_countersign(session.get(Partner, contract.partner_id), row.provider)
    relative, digest = _store_signed(contract_id, signed_document, filename)
    now = utcnow()
    with session_scope() as session:
        won = session.execute(
            update(SignatureRequest)
            .where(SignatureRequest.id == signature_request_id, SignatureRequest.status.in_(OPEN_SIGNATURE_STATUSES))
            .values(status=SignatureStatus.SIGNED, signed_at=now,
                    signed_name=evidence.get("signer_name"), signed_ip=evidence.get("ip"),
                    signed_user_agent=evidence.get("user_agent"),
                    signed_document_sha256=evidence.get("document_sha256"))).rowcount == 1
        if not won:
            session.rollback()
        else:
            # Awaiting the countersignature the contract stays "sent"; signed_path holds the partner-signed copy.
            values = {"signed_path": relative, "signed_sha256": digest}
            if not countersign_next:
                values.update(status=ContractStatus.SIGNED, signed_at=now)
            session.execute(update(Contract).where(Contract.id == contract_id).values(**values))
            contract = session.get(Contract, contract_id)
            partner_id = contract.partner_id
            action = "contract.partner_signed" if countersign_next else "contract.signed"
            audit(session, actor=actor, action=action, subject_type="contract", subject_id=contract_id,
                  details={"signature_request_id": signature_request_id, "signed_sha256": digest,
                           **{k: v for k, v in evidence.items() if isinstance(v, (str, int, float, bool, type(None)))}})
            if not countersign_next:  # the hand-off to onboarding commits with the signature
                record(session, CONTRACT_SIGNED, "contract", contract_id,
                       {"contract_id": contract_id, "partner_id": partner_id})
    if not won:  # another caller completed it first; its file (same name if same bytes) stays
        return False
    if countersign_next:
        request_countersignature(contract_id)
        return True
    relay_after_commit(outbox_key(CONTRACT_SIGNED, "contract", contract_id))
    return True
