"""The partner's links and documents in the portal: tracking link, coupon, deep links with their clicks,
the signed contract and its signature certificate, the tax form's status.

Only rows of the given partner are read; a contract id of another partner is "not found", never a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import case, func, select

from partnerflow.models import Contract, ContractStatus, Partner, SignatureRequest, session_scope
from partnerflow.models.contracting import SignatureStatus
from partnerflow.models.onboarding import Onboarding
from partnerflow.models.tracking import Click
from partnerflow.settings import get_settings
from partnerflow.tasks.contracting.signing import countersign_key
from partnerflow.tasks.onboarding.activation import tracking_url
from partnerflow.tasks.onboarding.clicks import allowed_hosts, safe_target

# The tracking link appends "?ref=<code>&pf_click=<click id>" (or "&ref=...") to the target it leads to
# (tasks/onboarding/clicks.landing_with): the target is the stored URL without that many characters.
_SUFFIX_CHARS = len("?ref=&pf_click=")
LANDING_ROWS = 50
__all__ = ["allowed_hosts", "certificate", "certificate_text", "clicks_by_landing", "deep_link", "documents",
           "signed_contract_file", "tracking_url"]


def deep_link(code: str, url: str) -> str | None:
    """The tracking link leading to `url`, or None when `url` is not on the program's allowed domains."""
    target = safe_target((url or "").strip())
    return f"{tracking_url(code)}?to={quote(target, safe='')}" if target else None


@dataclass(frozen=True)
class LandingClicks:
    target: str
    clicks: int
    bot_clicks: int
    last_click_at: datetime


def clicks_by_landing(partner_id: int, limit: int = LANDING_ROWS) -> list[LandingClicks]:
    """Clicks per page the partner's links led to (people and bots apart), most clicked first."""
    target = func.substr(Click.landing_url, 1, func.length(Click.landing_url) - func.length(Click.tracking_code)
                         - func.length(Click.click_id) - _SUFFIX_CHARS)
    people = func.sum(case((Click.is_bot, 0), else_=1))
    with session_scope() as session:
        rows = session.execute(
            select(target, people, func.count(), func.max(Click.clicked_at))
            .where(Click.partner_id == partner_id).group_by(target)
            .order_by(people.desc(), func.count().desc()).limit(limit)).all()
    return [LandingClicks(t, int(n or 0), int(total) - int(n or 0), last) for t, n, total, last in rows]


@dataclass(frozen=True)
class ContractEntry:
    id: int
    version: int
    status: str
    created_at: datetime
    signed_at: datetime | None
    has_signed_copy: bool


@dataclass(frozen=True)
class Documents:
    contracts: list[ContractEntry]
    tax_form_kind: str | None
    tax_form_status: str
    tax_form_masked: str | None


def documents(partner_id: int) -> Documents:
    with session_scope() as session:
        partner = session.get(Partner, partner_id)
        contracts = session.execute(select(Contract).where(Contract.partner_id == partner_id)
                                    .order_by(Contract.version.desc(), Contract.id.desc())).scalars().all()
        masked = session.execute(select(Onboarding.tax_form_masked)
                                 .where(Onboarding.partner_id == partner_id)).scalar_one_or_none()
        return Documents([ContractEntry(c.id, c.version, c.status, c.created_at, c.signed_at, bool(c.signed_path))
                          for c in contracts], partner.tax_form_kind, partner.tax_form_status, masked)


def _own_contract(session, partner_id: int, contract_id: int) -> Contract | None:
    return session.execute(select(Contract).where(Contract.id == contract_id,
                                                  Contract.partner_id == partner_id)).scalar_one_or_none()


def signed_contract_file(partner_id: int, contract_id: int) -> Path | None:
    """The signed copy of this partner's contract, or None (not theirs, not signed, file missing).

    The path comes from our table, but is still checked to lie inside the documents folder."""
    with session_scope() as session:
        contract = _own_contract(session, partner_id, contract_id)
        relative = contract.signed_path if contract else None
    if not relative:
        return None
    root = get_settings().documents_dir.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


@dataclass(frozen=True)
class Signature:
    role: str  # the partner, or the company's countersignature
    provider: str
    signer_name: str
    signer_email: str
    signed_at: datetime | None
    signed_name: str | None
    signed_ip: str | None
    signed_user_agent: str | None
    document_sha256: str | None


@dataclass(frozen=True)
class Certificate:
    contract_id: int
    status: str
    signed_at: datetime | None
    document_sha256: str
    signed_sha256: str | None
    signatures: list[Signature]


def certificate(partner_id: int, contract_id: int) -> Certificate | None:
    """The signature evidence of this partner's contract (who signed, when, from where, which document)."""
    with session_scope() as session:
        contract = _own_contract(session, partner_id, contract_id)
        if contract is None or contract.status != ContractStatus.SIGNED:
            return None
        requests = session.execute(select(SignatureRequest).where(
            SignatureRequest.contract_id == contract_id, SignatureRequest.status == SignatureStatus.SIGNED)
            .order_by(SignatureRequest.signed_at, SignatureRequest.id)).scalars().all()
        signatures = [Signature("countersignature" if r.idempotency_key == countersign_key(contract_id) else "partner",
                                r.provider, r.signer_name, r.signer_email, r.signed_at, r.signed_name, r.signed_ip,
                                r.signed_user_agent, r.signed_document_sha256) for r in requests]
        return Certificate(contract.id, contract.status, contract.signed_at, contract.document_sha256,
                           contract.signed_sha256, signatures)


def certificate_text(cert: Certificate) -> str:
    """The certificate as a plain-text download."""
    def at(moment: datetime | None) -> str:
        return f"{moment:%Y-%m-%d %H:%M:%S} UTC" if moment else "-"

    lines = [f"Signature certificate: contract {cert.contract_id}", "",
             f"Status: {cert.status}", f"Signed at: {at(cert.signed_at)}",
             f"Document sent for signature (SHA-256): {cert.document_sha256}",
             f"Signed copy (SHA-256): {cert.signed_sha256 or '-'}"]
    for s in cert.signatures:
        lines += ["", f"Signature ({s.role}), through {s.provider}",
                  f"  Signer: {s.signer_name} <{s.signer_email}>", f"  Name typed: {s.signed_name or '-'}",
                  f"  Signed at: {at(s.signed_at)}", f"  IP address: {s.signed_ip or '-'}",
                  f"  User agent: {s.signed_user_agent or '-'}",
                  f"  Document signed (SHA-256): {s.document_sha256 or '-'}"]
    return "\n".join(lines) + "\n"
