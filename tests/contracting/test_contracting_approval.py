"""contract_application: each approval path (policy approve/reject, a person via Prefect's API, timeout) and re-runs."""

from __future__ import annotations

import time
from pathlib import Path

from factories import application
from sqlmodel import select
from support import WaitingForPerson, mail_text, mails, run_deployed

from partnerflow.flows.approvals import expire_unanswered_approvals
from partnerflow.flows.contracting import contract_application
from partnerflow.models import (
    Application,
    AuditLog,
    Contract,
    Message,
    Partner,
    SignatureRequest,
    Stage,
    session_scope,
)
from partnerflow.tasks.contracting.applications import submit_application
from partnerflow.tasks.shared.terms import default_for

SDN = Path(__file__).parents[1] / "data" / "sdn_sample.csv"


def _apply(**overrides) -> int:
    app, created = submit_application(application(**overrides))
    assert created
    return app.id


def _state(app_id: int):
    with session_scope() as session:
        app = session.get(Application, app_id)
        partner = session.get(Partner, app.partner_id)
        contracts = session.exec(select(Contract).where(Contract.partner_id == partner.id)).all()
        requests = session.exec(select(SignatureRequest)).all()
        audits = session.exec(select(AuditLog).where(AuditLog.subject_type == "application",
                                                     AuditLog.subject_id == str(app_id))).all()
        return app, partner, contracts, requests, audits


def test_referral_without_findings_is_auto_approved_and_sent_for_signature(outbox):
    app_id = _apply(partner_type="referral")
    result = contract_application(app_id)
    app, partner, contracts, requests, audits = _state(app_id)
    assert result["status"] == app.status == "approved" and app.decided_by == "policy"
    assert partner.stage == Stage.CONTRACTING
    assert len(contracts) == 1 and contracts[0].commission_terms == default_for("referral").model_dump(mode="json")
    assert len(requests) == 1 and requests[0].status == "sent"
    assert [m["Subject"] for m in mails(outbox)] == ["Please sign: Acme Analytics Ltd partner agreement"]
    decision = [a for a in audits if a.action == "application.approved"]
    assert len(decision) == 1 and decision[0].flow_run_id

    # A re-run decides nothing again and sends nothing again.
    contract_application(app_id)
    _, _, contracts, requests, audits = _state(app_id)
    assert len(contracts) == 1 and len(requests) == 1 and len(mails(outbox)) == 1
    assert len([a for a in audits if a.action == "application.approved"]) == 1


def test_sanctions_match_is_auto_rejected(configure, outbox):
    configure(sanctions_list=str(SDN))
    app_id = _apply(legal_name="Vladimir Vladimirovich Putin", contact_name="Vladimir Putin", country="RU",
                    partner_type="referral", email="vvp@kremlin.example", website="")
    contract_application(app_id)
    app, partner, contracts, requests, _ = _state(app_id)
    assert app.status == "rejected" and partner.stage == Stage.REJECTED
    codes = {f["code"] for f in app.screening["findings"]}
    assert "sanctions_match" in codes
    assert contracts == [] and requests == []
    assert "unable to accept" in mail_text(mails(outbox)[0])


def test_disposable_email_is_auto_rejected():
    app_id = _apply(email="someone@mailinator.com", website="", partner_type="referral")
    contract_application(app_id)
    assert _state(app_id)[0].status == "rejected"


def test_a_person_approves_with_custom_terms_through_prefects_api(outbox):
    app_id = _apply(partner_type="affiliate")  # affiliates are asked about
    result = run_deployed(contract_application, {"application_id": app_id}, [
        {"decision": "approve", "tier": "gold", "commission_rate": "0.12", "note": "great blog", "reviewer": "Dana"},
    ])
    app, partner, contracts, requests, audits = _state(app_id)
    assert result["status"] == "approved" and app.decided_by == "reviewer:Dana" and app.decision_note == "great blog"
    assert partner.tier == "gold" and partner.commission_terms["rate"] == "0.12"
    assert contracts[0].commission_terms == partner.commission_terms
    assert len(requests) == 1
    approved = [a for a in audits if a.action == "application.approved"]
    assert len(approved) == 1 and approved[0].flow_run_id and approved[0].actor == "reviewer:Dana"
    # Decided: a re-run does not pause again (it would hang without an answer).
    assert contract_application(app_id)["status"] == "approved"
    assert len(_state(app_id)[3]) == 1


def test_a_person_rejects_or_requests_changes(outbox):
    rejected = _apply()
    run_deployed(contract_application, {"application_id": rejected},
                  [{"decision": "reject", "reviewer": "Dana", "note": "not a fit"}])
    changes = _apply(email="b@bravo.example", website="bravo.example", legal_name="Bravo Ltd")
    run_deployed(contract_application, {"application_id": changes},
                  [{"decision": "request_changes", "reviewer": "Dana", "note": "Please add your website traffic."}])
    assert _state(rejected)[0].status == "rejected" and _state(rejected)[1].stage == Stage.REJECTED
    assert _state(changes)[0].status == "changes_requested" and _state(changes)[1].stage == Stage.APPLIED
    texts = [mail_text(m) for m in mails(outbox)]
    assert any("Please add your website traffic." in t for t in texts)
    with session_scope() as session:
        assert session.exec(select(Contract)).all() == []


def test_nobody_answering_is_not_an_approval_and_the_team_is_told(configure, outbox):
    configure(approval_timeout_seconds=1)
    app_id = _apply()
    assert isinstance(run_deployed(contract_application, {"application_id": app_id}), WaitingForPerson)
    assert _state(app_id)[0].status == "pending_review"
    time.sleep(1.2)
    assert expire_unanswered_approvals()["expired"] == [f"application-{app_id}-approval"]
    assert expire_unanswered_approvals()["expired"] == []
    app, partner, contracts, requests, audits = _state(app_id)
    assert app.status == "expired" and partner.stage == Stage.APPLIED
    assert contracts == [] and requests == []
    assert any(a.action == "application.expired" and a.flow_run_id for a in audits)
    with session_scope() as session:
        team = session.exec(select(Message).where(Message.kind == "approval_timeout")).one()
        assert team.to_email == "partners-team@acme.example" and team.status == "sent"


def test_invalid_terms_from_the_reviewer_are_asked_for_again(outbox):
    app_id = _apply()
    run_deployed(contract_application, {"application_id": app_id}, [
        {"decision": "approve", "commission_rate": "lots", "reviewer": "Dana"},
        {"decision": "approve", "commission_flat_minor": 2500, "reviewer": "Dana"},
    ])
    app, partner, contracts, _, _ = _state(app_id)
    assert app.status == "approved"
    assert partner.commission_terms["kind"] == "flat" and partner.commission_terms["flat_minor"] == 2500
    assert contracts[0].commission_terms == partner.commission_terms
