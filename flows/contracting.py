"""Flow `contract_application`: screening -> approval policy -> (a person) -> contract -> signature request.

Started by `partner.applied`. Safe to re-run: a decided application is not asked about
again, the contract is generated once per application, and the signature request is sent
once (its row and idempotency key come first). A person decides through a typed form in
the Prefect UI; nobody answering in time never approves (the team is told by mail).
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any, Literal

import yaml
from prefect import flow, get_run_logger, task
from prefect.input import RunInput
from sqlalchemy import update

from partnerflow.models import (
    Application,
    ApplicationStatus,
    Partner,
    Stage,
    audit,
    session_scope,
    utcnow,
)
from partnerflow.models.audit import current_flow_run_id
from partnerflow.settings import get_settings
from partnerflow.tasks.contracting.screening import SEVERITY_ORDER, screen_application
from partnerflow.tasks.shared.events import APPLICATION_DECIDED, emit
from partnerflow.tasks.shared.terms import CommissionTerms, default_for

UNDECIDED = (ApplicationStatus.RECEIVED, ApplicationStatus.PENDING_REVIEW, ApplicationStatus.EXPIRED)


class ApprovalDecision(RunInput):
    """The reviewer's answer. Leave the commission fields empty to use the tier's default terms."""

    decision: Literal["approve", "reject", "request_changes"] | None = None
    tier: str = "standard"
    commission_rate: str | None = None  # e.g. "0.12" = 12 % of the net sale (percentage terms)
    commission_flat_minor: int | None = None  # e.g. 2500 = 25.00 per sale (flat terms)
    note: str = ""
    reviewer: str = ""


# --- policy ---------------------------------------------------------------------------------------

def load_policy() -> dict[str, Any]:
    path = get_settings().contracting.approval_policy_path
    if path is not None:
        return yaml.safe_load(path.read_text()) or {}
    return _embedded_policy()


@functools.lru_cache(maxsize=1)
def _embedded_policy() -> dict[str, Any]:
    return yaml.safe_load(resources.files("partnerflow.templates").joinpath("contracting/approval_policy.yaml").read_text())


def decide_by_policy(policy: dict[str, Any], partner_type: str, findings: list[dict[str, Any]]) -> str:
    """approve | reject | ask: the first rule whose conditions all hold."""
    codes = {f["code"] for f in findings}
    worst = max((SEVERITY_ORDER[f["severity"]] for f in findings), default=-1)
    for rule in policy.get("rules") or []:
        if "partner_types" in rule and partner_type not in rule["partner_types"]:
            continue
        if "finding_codes" in rule and not codes & set(rule["finding_codes"]):
            continue
        if "max_severity" in rule:
            limit = -1 if rule["max_severity"] == "none" else SEVERITY_ORDER[rule["max_severity"]]
            if worst > limit:
                continue
        return rule["decision"]
    return "ask"


def terms_from_answer(answer: ApprovalDecision, partner_type: str) -> CommissionTerms:
    """The tier's default terms with the reviewer's rate or flat amount, validated by CommissionTerms."""
    data = default_for(partner_type, answer.tier).model_dump(mode="json")
    if answer.commission_flat_minor is not None:
        data.update(kind="flat", flat_minor=answer.commission_flat_minor, rate=None, tiers=[])
    elif answer.commission_rate:
        data.update(kind="percentage", rate=answer.commission_rate.strip(), tiers=[])
    return CommissionTerms.model_validate(data)


def describe_for_reviewer(app: Application, findings: list[dict[str, Any]], policy: dict[str, Any]) -> str:
    default = default_for(app.partner_type, policy.get("default_tier", "standard"))
    lines = [f"## Partner application {app.id}: {app.legal_name}", "",
             "| | |", "|---|---|",
             f"| Contact | {app.contact_name} <{app.email}> |", f"| Country | {app.country} |",
             f"| Website | {app.website or '—'} |", f"| Type | {app.partner_type} |",
             f"| Channels | {', '.join(app.channels) or '—'} |",
             f"| Promotional methods | {', '.join(app.promotional_methods) or '—'} |",
             f"| Tax status | {app.tax_status} |", "", "### Screening findings", ""]
    lines += [f"- **{f['severity']}** `{f['code']}`: {f['detail']}" for f in findings] or ["- none"]
    lines += ["", "### Default terms", "", default.describe(), "",
              f"Tiers: {', '.join(policy.get('tiers') or ['standard'])}. Leave the commission fields empty to keep "
              "the tier's default; set `commission_rate` (e.g. 0.12) or `commission_flat_minor` to override.",
              "Fill in `reviewer` with your name; `decision` is approve, reject or request_changes."]
    return "\n".join(lines)


# --- steps ----------------------------------------------------------------------------------------

@task(name="screen-application")
def screen(application_id: int) -> list[dict[str, Any]]:
    return screen_application(application_id)


def record_decision(application_id: int, status: str, *, actor: str, note: str = "",
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
        partner_stage = {ApplicationStatus.APPROVED: Stage.APPROVED, ApplicationStatus.REJECTED: Stage.REJECTED}
        if status in partner_stage and app.partner_id:
            session.execute(update(Partner).where(Partner.id == app.partner_id, Partner.stage == Stage.APPLIED)
                            .values(stage=partner_stage[status], updated_at=now))
        audit(session, actor=actor, action=f"application.{status}", subject_type="application",
              subject_id=application_id, details={"note": note, **(decision or {})}, flow_run_id=run_id)
    if status != ApplicationStatus.EXPIRED:
        emit(APPLICATION_DECIDED, "application", application_id, {"application_id": application_id, "status": status})
    return True


@task(name="generate-and-send-contract")
def contract_and_sign(application_id: int) -> dict[str, Any]:
    from partnerflow.tasks.contracting.documents import generate_contract
    from partnerflow.tasks.contracting.signing import request_signature

    with session_scope() as session:
        app = session.get(Application, application_id)
        decision = (app.screening or {}).get("decision") or {}
        partner_id = app.partner_id
    contract = generate_contract(partner_id, application_id=application_id, terms=decision.get("terms"),
                                 tier=decision.get("tier"))
    row = request_signature(contract.id)
    return {"contract_id": contract.id, "signature_request_id": row.id, "signature_status": row.status}


def _notify_applicant(app: Application, decision: str, note: str) -> None:
    from partnerflow.tasks.shared.mail import deliver

    deliver(f"application-decision:{app.id}:{decision}", kind="application_decision", to_email=app.email,
            template="contracting/application_decision", partner_id=app.partner_id,
            context={"contact_name": app.contact_name or app.legal_name, "legal_name": app.legal_name,
                     "decision": decision, "note": note})


@flow(name="contract-application")
def contract_application(application_id: int) -> dict[str, Any]:
    logger = get_run_logger()
    settings = get_settings()
    with session_scope() as session:
        app = session.get(Application, application_id)
        if app is None:
            raise ValueError(f"application {application_id} does not exist")
    if app.status in UNDECIDED:
        findings = screen(application_id)
        policy = load_policy()
        verdict = decide_by_policy(policy, app.partner_type, findings)
        tier = policy.get("default_tier", "standard")
        if verdict == "approve":
            terms = default_for(app.partner_type, tier).model_dump(mode="json")
            record_decision(application_id, ApplicationStatus.APPROVED, actor="policy",
                            note="auto-approved by policy", decision={"tier": tier, "terms": terms, "by": "policy"})
        elif verdict == "reject":
            codes = sorted({f["code"] for f in findings if f["severity"] == "block"})
            if record_decision(application_id, ApplicationStatus.REJECTED, actor="policy",
                               note=f"auto-rejected by policy: {', '.join(codes)}"):
                _notify_applicant(app, "reject", "")
        else:
            with session_scope() as session:
                session.execute(update(Application).where(Application.id == application_id,
                                                          Application.status.in_(UNDECIDED))
                                .values(status=ApplicationStatus.PENDING_REVIEW))
            answer, terms, note = None, None, ""
            for attempt in range(3):  # terms the reviewer typed that do not validate are asked for again
                answer = _ask(app, findings, policy, settings.contracting.approval_timeout_seconds, note, attempt)
                if answer is None or answer.decision != "approve":
                    break
                try:
                    terms = terms_from_answer(answer, app.partner_type)
                    break
                except (ValueError, ArithmeticError) as exc:
                    note = f"> **The commission terms were not accepted: {exc}**\n\n"
                    answer = None
            if answer is None or answer.decision is None:
                if record_decision(application_id, ApplicationStatus.EXPIRED, actor="timeout",
                                   note="nobody decided in time; not approved"):
                    _notify_team_timeout(app, settings.contracting.approval_timeout_seconds)
                logger.warning("Application %s: no decision; not approved.", application_id)
            elif answer.decision == "approve":
                record_decision(application_id, ApplicationStatus.APPROVED, actor=f"reviewer:{answer.reviewer}",
                                note=answer.note, decision={"tier": answer.tier, "terms": terms.model_dump(mode="json"),
                                                            "by": answer.reviewer})
            else:
                status = (ApplicationStatus.REJECTED if answer.decision == "reject"
                          else ApplicationStatus.CHANGES_REQUESTED)
                if record_decision(application_id, status, actor=f"reviewer:{answer.reviewer}", note=answer.note,
                                   decision={"by": answer.reviewer}):
                    _notify_applicant(app, "reject" if answer.decision == "reject" else "changes", answer.note)
    with session_scope() as session:
        status = session.get(Application, application_id).status
    result: dict[str, Any] = {"application_id": application_id, "status": status}
    if status == ApplicationStatus.APPROVED:
        result.update(contract_and_sign(application_id))
    logger.info("Application %s: %s", application_id, result)
    return result


def _ask(app: Application, findings: list[dict[str, Any]], policy: dict[str, Any], timeout: int, note: str = "",
         attempt: int = 0):
    from partnerflow.tasks.shared.approvals import ask_person

    key = f"application-{app.id}-approval" + (f"-terms{attempt}" if attempt else "")
    return ask_person(ApprovalDecision, note + describe_for_reviewer(app, findings, policy), timeout_seconds=timeout,
                      key=key, approver_field="reviewer",
                      tier=policy.get("default_tier", "standard"))


def _notify_team_timeout(app: Application, timeout: int) -> None:
    from partnerflow.tasks.shared.mail import deliver

    hours = timeout / 3600
    deliver(f"approval-timeout:{app.id}:{current_flow_run_id()}", kind="approval_timeout",
            to_email=get_settings().team_email, template="contracting/approval_timeout",
            context={"application_id": app.id, "legal_name": app.legal_name, "email": app.email,
                     "timeout": f"{hours:g} hours" if hours >= 1 else f"{timeout} seconds"})
