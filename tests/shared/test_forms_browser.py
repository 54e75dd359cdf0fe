"""Every approval form answered as a person does: in the Prefect UI, in a real browser.

One real stack (`prefect server start`, the web app, a runner serving every deployment, all on
this test's database) serves all three forms, so they are one test: starting a stack costs more
than answering a form, and pytest-xdist would give separate tests separate stacks. For each form
a run is started the way it is in production and suspends; headless Chromium opens its page,
presses Resume, fills the form and submits; the test then checks the effect in our tables.
"""

from __future__ import annotations

import httpx
import pytest
from browser import open_form, require_chromium, wait_until_finished
from factories import add_conversions, after_lock, application, findings, make_partner
from prefect import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings
from sqlmodel import select
from support import mail_text, mails

from partnerflow.models import (
    AuditLog,
    Partner,
    Payout,
    PayoutBatch,
    SignatureRequest,
    Stage,
    session_scope,
)
from partnerflow.models.approvals import ApprovalRequest
from partnerflow.models.compliance import FindingStatus
from partnerflow.models.contracting import SignatureStatus
from partnerflow.models.payouts import LedgerTransfer, PayoutBatchStatus, PayoutStatus
from partnerflow.settings import get_settings, reset_settings
from partnerflow.stack import free_port, running_stack
from partnerflow.tasks.compliance.findings import Detected, record
from partnerflow.tasks.compliance.policy import load_policy
from partnerflow.tasks.payouts.commissions import compute_commissions
from partnerflow.tasks.shared.approvals import wait_for_waiting_run


@pytest.fixture
def stack(monkeypatch):
    """The stack's processes read their settings (this test's outbox, ...) when they start: set them first."""
    require_chromium()  # before the stack starts, not after
    monkeypatch.setenv("PARTNERFLOW_PAYOUT_APPROVAL_ABOVE_MINOR", "0")  # every batch needs a person
    reset_settings()
    with running_stack(get_settings(), prefect_port=free_port(), web_port=free_port()) as stack, \
            temporary_settings({PREFECT_API_URL: stack.api_url}):  # this process talks to the stack's server
        yield stack


@pytest.mark.slow
@pytest.mark.timeout(480)  # a stack start on a loaded machine can take minutes
def test_every_approval_form_is_answered_in_the_prefect_ui(stack, outbox):
    a_reviewer_approves_an_application_and_the_contract_goes_out(stack, outbox)
    finance_approves_a_payout_batch_holding_one_partner(stack)
    compliance_dismisses_a_finding_with_a_reason(stack)


def state_of(flow_run_id):
    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).state


def start(deployment: str, **parameters):
    """A run of the deployment, as `prefect deployment run` or the UI's Run button creates it."""
    with get_client(sync_client=True) as client:
        deployment_id = client.read_deployment_by_name(deployment).id
        return client.create_flow_run_from_deployment(deployment_id, parameters=parameters)


def a_reviewer_approves_an_application_and_the_contract_goes_out(stack, outbox):
    applicant = application(partner_type="affiliate")  # affiliates are decided by a person
    response = httpx.post(f"{stack.web_url}/api/applications", json=applicant, timeout=30)
    assert response.status_code == 202, response.text
    run = wait_for_waiting_run("contract-application", timeout=120)

    with open_form(stack.prefect_url, run.id) as form:
        assert f": {applicant['legal_name']}" in form.description and "Partner application" in form.description
        form.choose("Decision", "approve")
        assert form.submit() == ["'reviewer' is a required property"]  # no name, no decision
        assert state_of(run.id).name == "Suspended"
        assert form.fill("Reviewer", "Dana Reviewer").submit() == []
    assert wait_until_finished(run.id).is_completed()

    with session_scope() as session:
        [request] = session.exec(select(SignatureRequest)).all()
        [question] = session.exec(select(ApprovalRequest).where(ApprovalRequest.flow_run_id == str(run.id))).all()
    assert request.status == SignatureStatus.SENT and request.signer_email == applicant["email"]
    assert question.answered_by == "Dana Reviewer"
    signing = [m for m in mails(outbox) if "/sign/" in mail_text(m)]
    assert len(signing) == 1 and applicant["email"] in signing[0]["To"]


def finance_approves_a_payout_batch_holding_one_partner(stack):
    held, paid = make_partner(1), make_partner(2)
    add_conversions([{"partner_id": held, "amount_minor": 20000, "external_id": "held-sale"},
                     {"partner_id": paid, "amount_minor": 30000, "external_id": "paid-sale"}])
    compute_commissions(now=after_lock())
    run = start("run-payout-batch/payout-batch", period_end=after_lock().isoformat())
    wait_for_waiting_run(flow_run_id=run.id, timeout=120)

    with open_form(stack.prefect_url, run.id) as form:
        assert "2 payouts, total 50.00 USD" in form.description
        form.choose("Decision", "approve").add_item("Hold Partner Ids", str(held)).fill("Approver", "Pat Finance")
        assert form.submit() == []
    assert wait_until_finished(run.id).is_completed()

    with session_scope() as session:
        [batch] = session.exec(select(PayoutBatch)).all()
        payouts = {p.partner_id: p.status for p in session.exec(select(Payout)).all()}
        transfers = [(t.partner_id, t.amount_minor) for t in session.exec(select(LedgerTransfer)).all()]
        approved = session.exec(select(AuditLog).where(AuditLog.action == "payout_batch.approved")).one()
    assert batch.status == PayoutBatchStatus.PAID
    assert payouts == {held: PayoutStatus.HELD, paid: PayoutStatus.PAID}
    assert transfers == [(paid, 3000)]  # 10 % of 300.00, once; the held partner keeps its balance
    assert approved.actor == "Pat Finance" and approved.details["held_partner_ids"] == [held]


def compliance_dismisses_a_finding_with_a_reason(stack):
    with session_scope() as session:
        partner = Partner(email="ann@blog.example", legal_name="Ann Blogger", country="US", stage=Stage.ACTIVE)
        session.add(partner)
        session.flush()
        partner_id = partner.id
        [finding_id] = record(session, [Detected(partner_id, "disclosure", "disclosure.missing", "high",
                                                 "Tracking link without any disclosure",
                                                 {"reason": "no disclosure phrase anywhere on the page"},
                                                 url="https://blog.example/post")], load_policy()).opened
    run = start("review-compliance-findings/compliance-review", partner_id=partner_id)
    wait_for_waiting_run(flow_run_id=run.id, timeout=120)

    with open_form(stack.prefect_url, run.id) as form:
        assert f"#{finding_id} Tracking link without any disclosure" in form.description
        form.choose("Action", "dismiss").fill("Reason", "The post has a disclosure banner the checker missed.")
        assert form.fill("Approver", "Sam Compliance").submit() == []
    assert wait_until_finished(run.id).is_completed()

    [finding] = findings(id=finding_id)
    assert finding.status == FindingStatus.DISMISSED
    assert finding.decided_by == "Sam Compliance"
