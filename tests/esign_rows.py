"""Rows the e-sign tests start from: a partner, an application, a contract out for signature."""

from __future__ import annotations

import hashlib
from datetime import datetime

from partnerflow.models import (
    Application,
    ApplicationStatus,
    Contract,
    ContractStatus,
    Partner,
    SignatureRequest,
    Stage,
    session_scope,
    utcnow,
)
from partnerflow.models.contracting import SignatureStatus
from partnerflow.settings import get_settings

DOCX = b"PK\x03\x04 fake docx body for tests"


def contract_out_for_signature(provider: str, *, email: str = "ana@example.com", created_at: datetime | None = None,
                               provider_request_id: str | None = None, status: str = SignatureStatus.PENDING,
                               with_request: bool = True) -> SignatureRequest | Contract:
    """A contract with its signature request row (or only the generated contract when with_request=False)."""
    documents = get_settings().documents_dir
    documents.mkdir(parents=True, exist_ok=True)
    with session_scope() as session:
        partner = Partner(email=email, legal_name=f"{email.split('@')[0].title()} Media LLC",
                          contact_name="Ana Lopez", country="US", stage=Stage.CONTRACTING)
        session.add(partner)
        session.flush()
        application = Application(partner_id=partner.id, email=email, legal_name=partner.legal_name,
                                  status=ApplicationStatus.APPROVED)
        session.add(application)
        session.flush()
        path = f"contract-{partner.id}.docx"
        (documents / path).write_bytes(DOCX)
        contract = Contract(partner_id=partner.id, application_id=application.id, template_name="standard.docx",
                            template_sha256="0" * 64, document_path=path,
                            document_sha256=hashlib.sha256(DOCX).hexdigest(),
                            status=ContractStatus.SENT if with_request else ContractStatus.GENERATED)
        session.add(contract)
        session.flush()
        if not with_request:
            return contract
        row = SignatureRequest(contract_id=contract.id, idempotency_key=f"contract:{contract.id}:sign",
                               provider=provider, provider_request_id=provider_request_id, signer_name="Ana Lopez",
                               signer_email=email, status=status, created_at=created_at or utcnow())
        session.add(row)
    return row
