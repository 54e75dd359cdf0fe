"""Builtin e-signature: emailed link, signing page, evidence, certificate page, idempotency, refused links."""

from __future__ import annotations

import io
from datetime import timedelta

import time_machine
from docx import Document
from factories import approved_partner
from fastapi.testclient import TestClient
from sqlmodel import select
from support import link, mails

from partnerflow.models import (
    AuditLog,
    Contract,
    Message,
    Partner,
    SignatureRequest,
    Stage,
    session_scope,
    utcnow,
)
from partnerflow.settings import get_settings
from partnerflow.tasks.contracting.documents import generate_contract
from partnerflow.tasks.contracting.signing import complete_signature, request_signature
from partnerflow.web.app import create_app


def _sent_contract(outbox):
    partner_id = approved_partner()
    contract = generate_contract(partner_id)
    row = request_signature(contract.id)
    return partner_id, contract, row, link(outbox, "/sign/")


def test_happy_path_records_evidence_and_appends_certificate(outbox):
    partner_id, contract, row, path = _sent_contract(outbox)
    assert row.status == "sent" and row.provider == "builtin"
    with session_scope() as session:
        stored = session.get(SignatureRequest, row.id)
        token = path.rsplit("/", 1)[1]
        assert stored.token_hash and token not in stored.token_hash  # only a keyed hash is stored
        assert session.get(Contract, contract.id).status == "sent"
        assert session.get(Partner, partner_id).stage == Stage.CONTRACTING
    client = TestClient(create_app())
    page = client.get(path)
    assert page.status_code == 200
    assert "Partner Program Agreement" in page.text and contract.document_sha256 in page.text

    refused = client.post(path, data={"signer_name": "Nora Wind"})  # no consent ticked
    assert refused.status_code == 422 and "consent" in refused.text.lower()

    signed = client.post(path, data={"signer_name": "Nora Wind", "consent": "yes"},
                         headers={"user-agent": "TestBrowser/1.0"})
    assert signed.status_code == 200 and "signed" in signed.text
    with session_scope() as session:
        stored = session.get(SignatureRequest, row.id)
        assert (stored.status, stored.signed_name, stored.signed_user_agent) == (
            "signed", "Nora Wind", "TestBrowser/1.0")
        assert stored.signed_ip and stored.signed_document_sha256 == contract.document_sha256
        done = session.get(Contract, contract.id)
        assert done.status == "signed" and done.signed_sha256
        assert session.exec(select(AuditLog).where(AuditLog.action == "contract.signed")).one()
    signed_doc = Document(io.BytesIO((get_settings().documents_dir / done.signed_path).read_bytes()))
    text = "\n".join(p.text for p in signed_doc.paragraphs)
    cells = [c.text for t in signed_doc.tables for r in t.rows for c in r.cells]
    assert "Signature certificate" in text and "Nora Wind" in cells and contract.document_sha256 in cells
    assert "TestBrowser/1.0" in cells

    # Signing again changes nothing.
    again = client.post(path, data={"signer_name": "Someone Else", "consent": "yes"})
    assert again.status_code == 200 and "already signed" in again.text.lower()
    assert complete_signature(row.id, signed_document=b"x", filename="x.pdf", evidence={}, actor="test") is False
    with session_scope() as session:
        assert session.get(SignatureRequest, row.id).signed_name == "Nora Wind"
        assert len(session.exec(select(AuditLog).where(AuditLog.action == "contract.signed")).all()) == 1


def test_request_signature_never_sends_twice(outbox):
    partner_id = approved_partner()
    contract = generate_contract(partner_id)
    first = request_signature(contract.id)
    second = request_signature(contract.id)
    assert first.id == second.id
    assert len(mails(outbox)) == 1
    with session_scope() as session:
        assert len(session.exec(select(SignatureRequest)).all()) == 1
        assert session.exec(select(Message).where(Message.idempotency_key == f"sign:{first.id}")).one().status == "sent"


def test_forged_token_is_refused(outbox):
    _sent_contract(outbox)
    client = TestClient(create_app())
    assert client.get("/sign/not-a-real-token").status_code == 404
    response = client.post("/sign/" + "A" * 43, data={"signer_name": "X Y", "consent": "yes"})
    assert response.status_code == 404
    with session_scope() as session:
        assert session.exec(select(SignatureRequest)).one().status == "sent"


def test_expired_link_is_refused(outbox):
    _, _, row, path = _sent_contract(outbox)
    client = TestClient(create_app())
    with time_machine.travel(utcnow() + timedelta(days=get_settings().contracting.signing_expiry_days, hours=1)):
        assert client.get(path).status_code == 410
        assert client.post(path, data={"signer_name": "Nora Wind", "consent": "yes"}).status_code == 410
    with session_scope() as session:
        assert session.get(SignatureRequest, row.id).status == "sent"


def test_voided_request_is_refused(outbox):
    _, _, row, path = _sent_contract(outbox)
    with session_scope() as session:
        stored = session.get(SignatureRequest, row.id)
        stored.status = "voided"
        session.add(stored)
    assert TestClient(create_app()).post(path, data={"signer_name": "Nora Wind", "consent": "yes"}).status_code == 410


def test_company_countersigns_after_the_partner_when_policy_requires(configure, outbox):
    configure(company_signer_name="Casey Counter", company_signer_email="casey@acme.example")
    partner_id = approved_partner(partner_type="reseller")  # the default policy countersigns resellers
    contract = generate_contract(partner_id)
    request_signature(contract.id)
    client = TestClient(create_app())
    partner_link = link(outbox, "/sign/")
    assert client.post(partner_link, data={"signer_name": "Nora Wind", "consent": "yes"}).status_code == 200
    with session_scope() as session:
        assert session.get(Contract, contract.id).status == "sent"  # not signed until countersigned
        rows = session.exec(select(SignatureRequest).order_by(SignatureRequest.id)).all()
        assert [(r.signer_email, r.status) for r in rows] == [("nora@northwind.example", "signed"),
                                                              ("casey@acme.example", "sent")]
        assert not session.exec(select(AuditLog).where(AuditLog.action == "contract.signed")).all()
    to_company = [m for m in mails(outbox) if m["To"] == "casey@acme.example"]
    assert len(to_company) == 1
    import re

    company_mail = to_company[0].get_body(("plain",)).get_content()
    company_link = re.search(r"https?://[^/\s]+(/sign/[A-Za-z0-9_\-]+)", company_mail).group(1)
    assert company_link != partner_link
    assert client.post(company_link, data={"signer_name": "Casey Counter", "consent": "yes"}).status_code == 200
    with session_scope() as session:
        done = session.get(Contract, contract.id)
        assert done.status == "signed"
        assert len(session.exec(select(AuditLog).where(AuditLog.action == "contract.signed")).all()) == 1
    signed_doc = Document(io.BytesIO((get_settings().documents_dir / done.signed_path).read_bytes()))
    cells = [c.text for t in signed_doc.tables for r in t.rows for c in r.cells]
    assert "Nora Wind" in cells and "Casey Counter" in cells  # both certificates


def test_a_lost_countersignature_request_is_sent_when_signing_is_requested_again(configure, outbox, monkeypatch):
    import pytest

    from partnerflow.tasks.contracting import signing

    configure(company_signer_email="casey@acme.example")
    partner_id = approved_partner(partner_type="reseller")
    contract = generate_contract(partner_id)
    row = request_signature(contract.id)

    real, crashed = signing.request_countersignature, []

    def crash_once(contract_id):
        if not crashed:
            crashed.append(contract_id)
            raise RuntimeError("worker died")
        return real(contract_id)

    monkeypatch.setattr(signing, "request_countersignature", crash_once)
    with pytest.raises(RuntimeError):
        complete_signature(row.id, signed_document=b"partner-signed", filename="p.docx",
                           evidence={"signer_name": "Nora Wind"}, actor="test")
    assert not [m for m in mails(outbox) if m["To"] == "casey@acme.example"]
    request_signature(contract.id)  # e.g. the contracting flow re-run
    request_signature(contract.id)
    assert len([m for m in mails(outbox) if m["To"] == "casey@acme.example"]) == 1
    with session_scope() as session:
        assert session.get(Contract, contract.id).status == "sent"
