"""Builders for the rows tests start from: partners, applications, contracts, conversions, payouts.

One module for every stage's tests, so a test reads as "given a partner with a signed contract..."
and a change to a table is made in one place.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert
from sqlmodel import select

from partnerflow.models import (
    Application,
    ApplicationStatus,
    Commission,
    Contract,
    ContractStatus,
    Conversion,
    Partner,
    Payout,
    PayoutBatch,
    SignatureRequest,
    Stage,
    session_scope,
    utcnow,
)
from partnerflow.models.compliance import Finding
from partnerflow.models.contracting import SignatureStatus
from partnerflow.models.onboarding import TaxFormStatus
from partnerflow.models.payouts import CommissionStatus, PayoutBatchStatus, PayoutStatus
from partnerflow.secrets import encrypt
from partnerflow.settings import get_settings

T0 = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
DOCX = b"PK\x03\x04 fake docx body for tests"

# --- contracting -----------------------------------------------------------------------------

GOOD = {
    "legal_name": "Northwind Media LLC", "contact_name": "Nora Wind", "email": "nora@northwind.example",
    "country": "US", "website": "https://www.northwind.example/blog", "channels": ["blog", "newsletter"],
    "partner_type": "affiliate", "promotional_methods": ["content", "email"], "tax_status": "company",
    "agreed_to_terms": True,
}


def application(**overrides) -> dict:
    """An application form as the web form sends it; valid unless overridden."""
    return {**GOOD, **overrides}


def approved_partner(**overrides) -> int:
    """A partner that applied (no flow run): returns the partner id."""
    from partnerflow.tasks.contracting.applications import submit_application  # pulls in the contracting tasks

    app, created = submit_application(application(**overrides))
    assert created
    return app.partner_id


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
        applied = Application(partner_id=partner.id, email=email, legal_name=partner.legal_name,
                              status=ApplicationStatus.APPROVED)
        session.add(applied)
        session.flush()
        path = f"contract-{partner.id}.docx"
        (documents / path).write_bytes(DOCX)
        contract = Contract(partner_id=partner.id, application_id=applied.id, template_name="standard.docx",
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


# --- payouts ---------------------------------------------------------------------------------

def make_partner(n: int, *, terms: dict | None = None, ready: bool = True, currency: str = "USD",
                 threshold: int = 1000, **kw) -> int:
    """An active partner with tracking code P{n}; `ready` = signed contract and tax form received."""
    with session_scope() as session:
        p = Partner(email=f"p{n}@example.com", legal_name=f"Partner {n}", contact_name=f"Pat {n}",
                    tracking_code=f"P{n}", coupon_code=f"C{n}", payout_currency=currency,
                    payout_threshold_minor=threshold,
                    commission_terms=terms if terms is not None else {"kind": "percentage", "rate": "0.10",
                                                                       "lock_days": 30},
                    tax_form_status=TaxFormStatus.RECEIVED if ready else TaxFormStatus.MISSING,
                    stage=Stage.ACTIVE, **kw)
        session.add(p)
        session.flush()
        if ready:
            session.add(Contract(partner_id=p.id, template_name="t", template_sha256="x", document_path="d",
                                 document_sha256="y", status=ContractStatus.SIGNED, signed_at=T0))
        return p.id


def add_conversions(rows: list[dict]) -> list[int]:
    """Insert conversions directly (the intake is tested on its own)."""
    ids = []
    with session_scope() as session:
        for i, r in enumerate(rows):
            values = {"source": "test", "external_id": r.get("external_id", f"x{i}-{r.get('partner_id')}-{id(r)}"),
                      "kind": "sale", "currency": "USD", "occurred_at": T0, **r}
            ids.append(session.execute(insert(Conversion).values(**values).returning(Conversion.id)).scalar_one())
    return ids


def after_lock(days: int = 31) -> datetime:
    return T0 + timedelta(days=days)


def partner_with_payout_details(n: int = 1, *, method: str = "stripe", details: dict | None = None,
                                currency: str = "EUR") -> int:
    """A partner whose payout method and (encrypted) details are on file, as the onboarding form leaves them."""
    with session_scope() as session:
        partner = Partner(email=f"partner{n}@example.com", legal_name=f"Partner {n} GmbH", payout_method=method,
                          payout_currency=currency, payout_threshold_minor=100,
                          payout_details_encrypted=encrypt(json.dumps(details)) if details else None)
        session.add(partner)
        session.flush()
        return partner.id


def make_payout(partner_id: int, *, rail: str, amount_minor: int = 5000, currency: str = "EUR",
                status: str = PayoutStatus.SENDING, batch_id: int | None = None,
                provider_ref: str | None = None) -> int:
    """A payout with one commission attached (as the batch builder leaves it)."""
    with session_scope() as session:
        if batch_id is None:
            batch = PayoutBatch(status=PayoutBatchStatus.APPROVED, period_end=utcnow())
            session.add(batch)
            session.flush()
            batch_id = batch.id
        conversion = Conversion(source="test", external_id=f"c-{partner_id}-{amount_minor}-{utcnow().timestamp()}",
                                partner_id=partner_id, amount_minor=amount_minor * 10, currency=currency,
                                occurred_at=utcnow())
        session.add(conversion)
        session.flush()
        payout = Payout(batch_id=batch_id, partner_id=partner_id, amount_minor=amount_minor, currency=currency,
                        rail=rail, idempotency_key=f"payout:{batch_id}:{partner_id}", status=status,
                        provider_ref=provider_ref)
        session.add(payout)
        session.flush()
        session.add(Commission(conversion_id=conversion.id, partner_id=partner_id, amount_minor=amount_minor,
                               currency=currency, status=CommissionStatus.PAYABLE, payout_id=payout.id))
        return payout.id


def payout_row(payout_id: int) -> Payout:
    with session_scope() as session:
        payout = session.get(Payout, payout_id)
        session.expunge(payout)
        return payout


def commissions_of(payout_id: int | None, partner_id: int) -> list[Commission]:
    with session_scope() as session:
        rows = session.exec(select(Commission).where(Commission.partner_id == partner_id)).all()
        for row in rows:
            session.expunge(row)
        return rows


# --- compliance ------------------------------------------------------------------------------

def findings(**where) -> list[Finding]:
    """Findings whose columns equal these values, oldest first."""
    with session_scope() as session:
        query = select(Finding).order_by(Finding.id)
        for column, value in where.items():
            query = query.where(getattr(Finding, column) == value)
        return list(session.exec(query).all())
