"""Flow `contract_application`: screening -> approval policy -> (a person) -> contract -> signature request.

Started by `partner.applied`. Safe to re-run: a decided application is not asked about
again, the contract is generated once per application, and the signature request is sent
once (its row and idempotency key come first). A person decides through a typed form in
the Prefect UI; nobody answering in time never approves (the team is told by mail).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from partnerflow.models import ApplicationStatus
from partnerflow.tasks.contracting.decision import (
    UNDECIDED,
    application_status,
    approve_by_policy,
    ask_reviewer,
    contract_and_sign,
    load_application,
    mark_pending_review,
    record_answer,
    reject_by_policy,
    screen,
)
from partnerflow.tasks.contracting.policy import Verdict, decide_by_policy, load_policy


@flow(name="contract-application", persist_result=True)
def contract_application(application_id: int) -> dict[str, Any]:
    app = load_application(application_id)
    if app.status in UNDECIDED:
        findings = screen(application_id)
        policy = load_policy()
        verdict = decide_by_policy(policy, app.partner_type, findings)
        if verdict == Verdict.APPROVE:
            approve_by_policy(app, policy)
        elif verdict == Verdict.REJECT:
            reject_by_policy(app, findings)
        else:
            mark_pending_review(application_id)
            answer, terms = ask_reviewer(app, findings, policy)
            record_answer(app, answer, terms)

    status = application_status(application_id)
    result: dict[str, Any] = {"application_id": application_id, "status": status}
    if status == ApplicationStatus.APPROVED:
        result |= contract_and_sign(application_id)
    get_run_logger().info("Application %s: %s", application_id, result)
    return result
