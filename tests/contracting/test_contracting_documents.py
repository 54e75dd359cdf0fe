"""Contract generation: clause library, governing law, the commission clause from CommissionTerms, missing fields."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess

import pytest
from docx import Document
from factories import approved_partner
from sqlmodel import select

from partnerflow.models import AuditLog, Contract, Partner, session_scope
from partnerflow.settings import get_settings
from partnerflow.tasks.contracting.documents import (
    ContractFieldMissing,
    generate_contract,
    render_contract,
    select_clauses,
)
from partnerflow.tasks.shared.terms import CommissionTerms, default_for


def _text(data: bytes) -> str:
    return "\n".join(p.text for p in Document(io.BytesIO(data)).paragraphs)


def test_clauses_follow_partner_type_tier_and_country():
    ids = lambda *a: [c["id"] for c in select_clauses(*a)]  # noqa: E731
    assert ids("influencer", "standard", "US") == ["disclosure", "data_protection"]
    assert ids("reseller", "gold", "DE") == ["resale", "gold_support", "data_protection_eu"]
    assert ids("affiliate", "standard", "FR") == ["disclosure", "brand_bidding", "data_protection_eu"]
    assert ids("referral", "silver", "GB") == ["referral", "data_protection"]


def test_generated_contract_carries_terms_law_clauses_and_hashes():
    partner_id = approved_partner(country="DE", partner_type="reseller")
    terms = CommissionTerms(kind="percentage", rate="0.125", currency="EUR", lock_days=45)
    contract = generate_contract(partner_id, terms=terms, tier="gold")
    data = (get_settings().documents_dir / contract.document_path).read_bytes()
    assert hashlib.sha256(data).hexdigest() == contract.document_sha256
    text = _text(data)
    assert terms.describe() in text  # the signed words are the payout engine's words
    assert "12.5%" in text and "45 days" in text
    assert "laws of the Federal Republic of Germany" in text
    assert "Resale" in text and "Partner support" in text and "General Data Protection Regulation" in text
    assert "Paid search" not in text  # affiliate-only clause
    assert "{{" not in text and "[[CLAUSES]]" not in text
    doc = Document(io.BytesIO(data))
    assert doc.core_properties.version == "1"
    assert contract.template_sha256 in doc.core_properties.keywords
    with session_scope() as session:
        partner = session.get(Partner, partner_id)
        stored = session.get(Contract, contract.id)
        assert stored.commission_terms == partner.commission_terms == terms.model_dump(mode="json")
        assert partner.tier == "gold"
        assert CommissionTerms.parse(partner.commission_terms).describe() == terms.describe()
        assert session.exec(select(AuditLog).where(AuditLog.action == "contract.generated")).one()
    # A second contract for the same partner is version 2.
    again = generate_contract(partner_id, terms=terms, tier="gold")
    assert again.version == 2 and again.document_path != contract.document_path


def test_default_terms_are_used_when_none_are_given():
    partner_id = approved_partner(partner_type="influencer")
    contract = generate_contract(partner_id)
    assert contract.commission_terms == default_for("influencer", "standard").model_dump(mode="json")


def test_missing_field_is_named_and_nothing_is_written():
    partner_id = approved_partner()
    with session_scope() as session:
        partner = session.get(Partner, partner_id)
        partner.contact_name = ""
        session.add(partner)
    before = set(get_settings().documents_dir.rglob("*")) if get_settings().documents_dir.exists() else set()
    with pytest.raises(ContractFieldMissing) as err:
        generate_contract(partner_id)
    assert err.value.field == "contact_name" and "contact_name" in str(err.value)
    after = set(get_settings().documents_dir.rglob("*")) if get_settings().documents_dir.exists() else set()
    assert after == before
    with session_scope() as session:
        assert session.exec(select(Contract)).all() == []


def test_missing_field_inside_a_clause_is_named():
    fields = {"company_name": "Acme", "company_signer": "CEO", "legal_name": "", "contact_name": "Jo",
              "email": "a@b.co",
              "country": "US", "partner_type": "affiliate", "tier": "gold", "commission_terms": "x",
              "governing_law": "Delaware", "date": "1 May 2026", "contract_version": "1"}
    with pytest.raises(ContractFieldMissing, match="legal_name"):
        render_contract(fields, partner_type="affiliate", tier="gold", country="US")


@pytest.mark.skipif(not (shutil.which("soffice") or shutil.which("libreoffice")), reason="LibreOffice not installed")
def test_generated_contract_converts_in_libreoffice(tmp_path):
    partner_id = approved_partner()
    contract = generate_contract(partner_id)
    source = get_settings().documents_dir / contract.document_path
    binary = shutil.which("soffice") or shutil.which("libreoffice")
    result = subprocess.run([binary, "--headless", f"-env:UserInstallation=file://{tmp_path}/lo", "--convert-to", "pdf",
                             "--outdir", str(tmp_path), str(source)], capture_output=True, timeout=180)
    pdf = tmp_path / (source.stem + ".pdf")
    assert result.returncode == 0 and pdf.exists(), result.stderr
    assert pdf.read_bytes().startswith(b"%PDF")
