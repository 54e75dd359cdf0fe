"""Deciding an application: screening, the policy's verdict or a person's answer, recorded once,
then the contract and its signature request.

A decision is a compare-and-set on the application's status, so a re-run (or a second run)
never decides twice; nobody answering in time never approves (the team is told by mail).
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from sqlalchemy import update

from partnerflow.models import Application, ApplicationStatus, Partner, Stage, audit, session_scope, utcnow
from partnerflow.models.audit import current_flow_run_id
from partnerflow.settings import get_settings
from partnerflow.tasks.contracting.documents import generate_contract
from partnerflow.tasks.contracting.policy import (
    ApprovalDecision,
    default_tier,
    describe_for_reviewer,
    terms_from_answer,
)
from partnerflow.tasks.contracting.screening import screen_application
from partnerflow.tasks.contracting.signing import request_signature
from partnerflow.tasks.shared.approvals import ask_person
from partnerflow.tasks.shared.events import APPLICATION_DECIDED, emit
from partnerflow.tasks.shared.mail import deliver
from partnerflow.tasks.shared.terms import CommissionTerms, default_for

UNDECIDED = (ApplicationStatus.RECEIVED, ApplicationStatus.PENDING_REVIEW, ApplicationStatus.EXPIRED)
ASKS_FOR_VALID_TERMS = 3  # terms the reviewer typed that do not validate are asked for again
PARTNER_STAGE = {ApplicationStatus.APPROVED: Stage.APPROVED, ApplicationStatus.REJECTED: Stage.REJECTED}


def load_application(application_id: int) -> Application:
    with session_scope() as session:
        app = session.get(Application, application_id)
    if app is None:
        raise ValueError(f"application {application_id} does not exist")
    return app


def application_status(application_id: int) -> str:
    with session_scope() as session:
        return session.get(Application, application_id).status


@task(name="screen-application")
def screen(application_id: int) -> list[dict[str, Any]]:
    return screen_application(application_id)


def record_decision(application_id: int, status: ApplicationStatus, *, actor: str, note: str = "",
                    decision: dict[str, Any] | None = None) -> bool:
    """Compare-and-set the application's decision; False if someone else decided first."""
    now = utcnow()
    run_id = current_flow_run_id()
    with session_scope() as session:
        app = session.get(Application, application_id)
        screening = dict(app.screening or {})
        if decision is not None:
            screening["decision"] = decision
        won = session.execute(
            update(Application).where(Application.id == application_id, Application.status.in_(UNDECIDED))
            .values(status=status, decided_by=actor, decision_note=note or None, decided_at=now,
                    flow_run_id=run_id, screening=screening)).rowcount == 1
        if not won:
            return False
        if status in PARTNER_STAGE and app.partner_id:
            session.execute(update(Partner).where(Partner.id == app.partner_id, Partner.stage == Stage.APPLIED)
                            .values(stage=PARTNER_STAGE[status], updated_at=now))
        audit(session, actor=actor, action=f"application.{status}", subject_type="application",
              subject_id=application_id, details={"note": note, **(decision or {})}, flow_run_id=run_id)
    if status != ApplicationStatus.EXPIRED:
        emit(APPLICATION_DECIDED, "application", application_id, {"application_id": application_id, "status": status})
    return True


def approve_by_policy(app: Application, policy: dict[str, Any]) -> None:
    tier = default_tier(policy)
    terms = default_for(app.partner_type, tier).model_dump(mode="json")
    record_decision(app.id, ApplicationStatus.APPROVED, actor="policy", note="auto-approved by policy",
                    decision={"tier": tier, "terms": terms, "by": "policy"})


def reject_by_policy(app: Application, findings: list[dict[str, Any]]) -> None:
    codes = sorted({f["code"] for f in findings if f["severity"] == "block"})
    if record_decision(app.id, ApplicationStatus.REJECTED, actor="policy",
                       note=f"auto-rejected by policy: {', '.join(codes)}"):
        notify_applicant(app, "reject", "")


def mark_pending_review(application_id: int) -> None:
    with session_scope() as session:
        session.execute(update(Application).where(Application.id == application_id, Application.status.in_(UNDECIDED))
                        .values(status=ApplicationStatus.PENDING_REVIEW))


def ask_reviewer(app: Application, findings: list[dict[str, Any]], policy: dict[str, Any]
                 ) -> tuple[ApprovalDecision | None, CommissionTerms | None]:
    """A person's answer through the Prefect form (None: no valid answer) and, for an approval, its terms."""
    timeout = get_settings().contracting.approval_timeout_seconds
    note = ""
    for attempt in range(ASKS_FOR_VALID_TERMS):
        key = f"application-{app.id}-approval" + (f"-terms{attempt}" if attempt else "")
        answer = ask_person(ApprovalDecision, note + describe_for_reviewer(app, findings, policy),
                            timeout_seconds=timeout, key=key, subject=("application", app.id),
                            approver_field="reviewer", tier=default_tier(policy))
        if answer is None or answer.decision != "approve":
            return answer, None
        try:
            return answer, terms_from_answer(answer, app.partner_type)
        except (ValueError, ArithmeticError) as exc:
            note = f"> **The commission terms were not accepted: {exc}**\n\n"
    return None, None


def expire_review(application_id: str, _details: dict[str, Any]) -> None:
    """Nobody answered the approval form in time: the application expires (never approved), the team is told."""
    record_answer(load_application(int(application_id)), None, None)


def record_answer(app: Application, answer: ApprovalDecision | None, terms: CommissionTerms | None) -> None:
    """Record the reviewer's decision (or the timeout's: never an approval) and tell whoever needs to know."""
    if answer is None:
        if record_decision(app.id, ApplicationStatus.EXPIRED, actor="timeout",
                           note="nobody decided in time; not approved"):
            notify_team_timeout(app, get_settings().contracting.approval_timeout_seconds)
        get_run_logger().warning("Application %s: no decision; not approved.", app.id)
        return
    actor = f"reviewer:{answer.reviewer}"
    if answer.decision == "approve":
        record_decision(app.id, ApplicationStatus.APPROVED, actor=actor, note=answer.note,
                        decision={"tier": answer.tier, "terms": terms.model_dump(mode="json"), "by": answer.reviewer})
        return
    rejected = answer.decision == "reject"
    status = ApplicationStatus.REJECTED if rejected else ApplicationStatus.CHANGES_REQUESTED
    if record_decision(app.id, status, actor=actor, note=answer.note, decision={"by": answer.reviewer}):
        notify_applicant(app, "reject" if rejected else "changes", answer.note)


@task(name="generate-and-send-contract")
def contract_and_sign(application_id: int) -> dict[str, Any]:
    with session_scope() as session:
        app = session.get(Application, application_id)
        decision = (app.screening or {}).get("decision") or {}
        partner_id = app.partner_id
    contract = generate_contract(partner_id, application_id=application_id, terms=decision.get("terms"),
                                 tier=decision.get("tier"))
    row = request_signature(contract.id)
    return {"contract_id": contract.id, "signature_request_id": row.id, "signature_status": row.status}


def notify_applicant(app: Application, decision: str, note: str) -> None:
    deliver(f"application-decision:{app.id}:{decision}", kind="application_decision", to_email=app.email,
            template="contracting/application_decision", partner_id=app.partner_id,
            context={"contact_name": app.contact_name or app.legal_name, "legal_name": app.legal_name,
                     "decision": decision, "note": note})


def notify_team_timeout(app: Application, timeout: int) -> None:
    hours = timeout / 3600
    deliver(f"approval-timeout:{app.id}:{current_flow_run_id()}", kind="approval_timeout",
            to_email=get_settings().team_email, template="contracting/approval_timeout",
            context={"application_id": app.id, "legal_name": app.legal_name, "email": app.email,
                     "timeout": f"{hours:g} hours" if hours >= 1 else f"{timeout} seconds"})
