"""The whole partner lifecycle end to end on the embedded defaults, then every stage again.

CSV import -> outreach -> application through the web app -> approval answered through
Prefect's API -> contract signed on the built-in signing page -> onboarding -> conversions ->
commissions -> payout batch approved through Prefect's API -> paid on the ledger. Re-running
any stage must not send a second email, signature request or payment.
"""

from __future__ import annotations

from datetime import date

from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlmodel import select
from support import link, run_deployed

from partnerflow.models import (
    Application,
    Contract,
    ContractStatus,
    Message,
    MessageStatus,
    Partner,
    Payout,
    Prospect,
    SignatureRequest,
    Stage,
    session_scope,
)
from partnerflow.models.compliance import PartnerPage
from partnerflow.models.payouts import FxRate, LedgerTransfer
from partnerflow.web.app import create_app

PROSPECTS = """Name,Company,Website,Email,Country,Topics
Priya Raman,Metrics Mondays,https://metricsmondays.example,priya@metricsmondays.example,IN,analytics
Marcus Lee,Growth Loop,https://growthloop.example,marcus@growthloop.example,US,growth; analytics
Broken Row,,,not-an-email,US,
"""

APPLICANT = {
    "legal_name": "Growth Loop Media LLC", "contact_name": "Marcus Lee", "email": "marcus@growthloop.example",
    "country": "US", "website": "https://growthloop.example", "channels": ["podcast"],
    "partner_type": "affiliate", "promotional_methods": ["content"], "tax_status": "company",
    "agreed_to_terms": True,
}


def counts() -> dict[str, int]:
    with session_scope() as session:
        def n(model, *where):
            return session.exec(select(func.count()).select_from(model).where(*where)).one()

        return {
            "messages": n(Message),
            "sent": n(Message, Message.status == MessageStatus.SENT),
            "signature_requests": n(SignatureRequest),
            "payouts": n(Payout),
            "transfers": n(LedgerTransfer),
        }


def test_partner_goes_from_csv_to_paid_payout_exactly_once(tmp_path, outbox):
    from partnerflow.flows.contracting import contract_application
    from partnerflow.flows.discovery import import_prospects
    from partnerflow.flows.onboarding import onboard_partner
    from partnerflow.flows.outreach import (
        enroll_prospects,
        load_sequences,
        send_due_outreach,
    )
    from partnerflow.flows.payouts import run_payout_batch
    from partnerflow.flows.payouts_commissions import (
        compute_commissions,
        import_conversions,
    )

    # 1. discovery: good rows imported, the bad one reported by line
    csv_path = tmp_path / "prospects.csv"
    csv_path.write_text(PROSPECTS)
    report = import_prospects(str(csv_path))
    assert report["imported"] == 2
    assert [e["line"] for e in report["errors"]] == [4]

    # 2. outreach: the first step goes to both prospects
    load_sequences()
    enroll_prospects()
    assert send_due_outreach().get("sent") == 2
    assert len(list(outbox.glob("*.eml"))) == 2

    # 3. application through the web app's JSON API
    web = TestClient(create_app())
    response = web.post("/api/applications", json=APPLICANT)
    assert response.status_code == 202, response.text  # generic: the id is in our table, not in the answer
    with session_scope() as session:
        application_id = session.exec(select(Application.id)).one()

    # 4. contracting: a person approves in the form (answered through Prefect's API)
    run_deployed(contract_application, {"application_id": application_id},
                           [{"decision": "approve", "tier": "standard", "commission_rate": "0.10",
                             "note": "good fit", "reviewer": "Dana"}])
    with session_scope() as session:
        assert session.get(Application, application_id).status == "approved"
        contract = session.exec(select(Contract)).one()
    sign_path = link(outbox, "/sign/")
    assert web.get(sign_path).status_code == 200
    signed = web.post(sign_path, data={"signer_name": "Marcus Lee", "consent": "yes"},
                      headers={"User-Agent": "lifecycle-test"})
    assert signed.status_code == 200, signed.text
    with session_scope() as session:
        contract = session.get(Contract, contract.id)
        assert contract.status == ContractStatus.SIGNED
        request = session.exec(select(SignatureRequest)).one()
        assert request.signed_name == "Marcus Lee" and request.signed_document_sha256 == contract.document_sha256

    # 5. onboarding (the deployment is triggered by contract.signed; here the flow is called directly)
    onboard_partner(contract_id=contract.id)
    with session_scope() as session:
        partner = session.exec(select(Partner).where(Partner.email == APPLICANT["email"])).one()
    assert partner.stage == Stage.ACTIVE and partner.tracking_code and partner.coupon_code
    with session_scope() as session:  # the partner's site is watched by the compliance checks from now on
        pages = session.exec(select(PartnerPage.url).where(PartnerPage.partner_id == partner.id)).all()
    assert pages == ["https://growthloop.example"]
    onboarding = web.post(link(outbox, "/onboarding/"), data={
        "tax_name": APPLICANT["legal_name"], "tax_address": "1 Podcast Way, Austin TX", "tin": "12-3456789",
        "certify": "yes", "payout_method": "paypal", "paypal_email": "payouts@growthloop.example"})
    assert onboarding.status_code == 200, onboarding.text

    # 6. conversions -> commissions -> an approved batch paid on the ledger
    conversions = tmp_path / "conversions.csv"
    conversions.write_text(
        "external_id,kind,amount,currency,occurred_at,tracking_code\n"
        f"ord-1,sale,1000.00,USD,2026-03-01T10:00:00Z,{partner.tracking_code}\n"
        f"ord-2,sale,250.00,USD,2026-03-05T10:00:00Z,{partner.tracking_code}\n"
        "ord-3,sale,99.00,USD,2026-03-06T10:00:00Z,NOBODY\n"
        "ord-4,sale,oops,USD,2026-03-06T10:00:00Z,NOBODY\n")
    with session_scope() as session:
        session.add(FxRate(day=date(2026, 1, 1), base="USD", quote="EUR", rate="0.92"))
    imported = import_conversions(str(conversions), source="shop")
    assert [e["line"] for e in imported["errors"]] == [5]
    compute_commissions()
    paid = run_deployed(run_payout_batch, {},  # the team's default limit: a person approves
                         [{"decision": "approve", "approver": "Pat", "note": "monthly"}])
    assert paid is not None
    with session_scope() as session:
        payout = session.exec(select(Payout)).one()
        transfer = session.exec(select(LedgerTransfer)).one()
    assert payout.status == "paid" and payout.partner_id == partner.id
    assert payout.amount_minor == 12500 and payout.currency == "USD"  # 10 % of 1,250.00, exact
    assert transfer.amount_minor == payout.amount_minor

    # Every stage once more: nothing is mailed, signed or paid a second time.
    before = counts()
    assert before["signature_requests"] == 1 and before["payouts"] == 1 and before["transfers"] == 1
    import_prospects(str(csv_path))
    send_due_outreach()
    assert web.post("/api/applications", json=APPLICANT).status_code == 202  # the same answer as a new one
    contract_application(application_id=application_id)  # decided already: no second form, no second request
    assert web.post(sign_path, data={"signer_name": "Marcus Lee", "consent": "yes"}).status_code in (200, 409, 410)
    onboard_partner(contract_id=contract.id)
    compute_commissions()
    run_payout_batch()  # nothing left to pay: policy closes it without asking
    assert counts() == before
    with session_scope() as session:
        assert session.exec(select(func.count()).select_from(Prospect)).one() == 2
