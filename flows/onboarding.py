"""Flows `onboard_partner` (on contract.signed) and `monitor_activation` (daily).

onboard_partner: partner active, tracking code + coupon, tax form / payout details requested
through the onboarding form link, welcome mail (once: key welcome:{partner_id}), checklist artifact.
monitor_activation: nudge partners with no click/conversion for `activation_nudge_days`, mark them
dormant after `activation_dormant_days`, return them to active when activity comes back; funnel artifact.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from sqlalchemy import func, update
from sqlmodel import select

from partnerflow.models import (
    Application,
    ApplicationStatus,
    Contract,
    ContractStatus,
    Conversion,
    Partner,
    Stage,
    audit,
    session_scope,
    utcnow,
)
from partnerflow.models.onboarding import Onboarding
from partnerflow.settings import get_settings
from partnerflow.tasks.onboarding import activation as ob
from partnerflow.tasks.shared.events import PARTNER_ACTIVATED, emit


def _register_website(partner_id: int) -> None:
    """The partner's own site is the first page the compliance checks watch (more via the CLI)."""
    from partnerflow.tasks.compliance.pages import register_pages

    with session_scope() as session:
        website = (session.get(Partner, partner_id).website or "").strip()
    if website:
        url = website if website.startswith(("http://", "https://")) else f"https://{website}"
        try:
            register_pages(partner_id, [url])
        except ValueError:
            get_run_logger().warning("partner %s: website %r is not a page we can check", partner_id, website)


@task(name="provision-partner")
def provision(contract_id: int) -> dict[str, Any]:
    from partnerflow.tasks.shared.mail import deliver

    with session_scope() as session:
        contract = session.get(Contract, contract_id)
        if contract is None or contract.status != ContractStatus.SIGNED:
            return {"contract_id": contract_id, "skipped": "contract is not signed"}
        partner_id = contract.partner_id
    activated = ob.activate(partner_id, contract_id)
    tracking, coupon = ob.provision_codes(partner_id)
    _register_website(partner_id)
    row = ob.ensure_onboarding(partner_id)
    with session_scope() as session:
        partner = session.get(Partner, partner_id)
        context = {"contact_name": partner.contact_name or partner.legal_name, "legal_name": partner.legal_name,
                   "tracking_url": ob.tracking_url(tracking), "coupon_code": coupon,
                   "tax_form_kind": row.tax_form_kind, "onboarding_url": ob.onboarding_url(partner_id)}
        to_email = partner.email
    deliver(f"welcome:{partner_id}", kind="welcome", to_email=to_email, template="onboarding/welcome", context=context,
            partner_id=partner_id)
    if activated:
        emit(PARTNER_ACTIVATED, "partner", partner_id, {"partner_id": partner_id, "contract_id": contract_id})
    return {"contract_id": contract_id, "partner_id": partner_id, "activated": activated,
            "tracking_code": tracking, "coupon_code": coupon}


@flow(name="onboard-partner")
def onboard_partner(contract_id: int) -> dict[str, Any]:
    result = provision(contract_id)
    if "partner_id" in result:
        create_markdown_artifact(ob.checklist_markdown(result["partner_id"]),
                                 key=f"onboarding-partner-{result['partner_id']}",
                                 description="Onboarding checklist")
    get_run_logger().info("Onboarding for contract %s: %s", contract_id, result)
    return result


# --- activation monitoring --------------------------------------------------------------------------

def _last_activity(session, partner_ids: list[int]) -> dict[int, datetime]:
    """Latest click (Partner.last_activity_at, kept by click intake) or conversion per partner."""
    latest: dict[int, datetime] = {}
    if not partner_ids:
        return latest
    rows = session.exec(select(Conversion.partner_id, func.max(Conversion.occurred_at))
                        .where(Conversion.partner_id.in_(partner_ids)).group_by(Conversion.partner_id)).all()
    for pid, when in rows:
        if when is not None:
            latest[pid] = when
    return latest


def _aware(value: datetime | None) -> datetime | None:

    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


@task(name="check-activation")
def check_activation(now: datetime | None = None) -> dict[str, int]:
    from partnerflow.tasks.shared.mail import deliver

    settings = get_settings()
    now = now or utcnow()
    nudge_after = timedelta(days=settings.onboarding.activation_nudge_days)
    dormant_after = timedelta(days=settings.onboarding.activation_dormant_days)
    counts = {"nudged": 0, "dormant": 0, "reactivated": 0}
    with session_scope() as session:
        partners = session.exec(select(Partner).where(Partner.stage.in_((Stage.ACTIVE, Stage.DORMANT)),
                                                      Partner.activated_at.is_not(None))).all()
        conversions = _last_activity(session, [p.id for p in partners])
        rows = {r.partner_id: r for r in session.exec(select(Onboarding)).all()}
        work = []
        for p in partners:
            last = max([t for t in (_aware(p.last_activity_at), _aware(conversions.get(p.id))) if t], default=None)
            work.append((p.id, p.stage, p.activated_at, last, rows.get(p.id), p.email, p.contact_name or p.legal_name,
                         p.tracking_code, p.coupon_code))
    for pid, stage, activated_at, last, row, email, name, tracking, coupon in work:
        quiet_since = max(activated_at, last) if last else activated_at
        if stage == Stage.DORMANT:
            dormant_since = row.dormant_since if row and row.dormant_since else None
            if last and (dormant_since is None or last > dormant_since):
                with session_scope() as session:
                    if session.execute(update(Partner).where(Partner.id == pid, Partner.stage == Stage.DORMANT)
                                       .values(stage=Stage.ACTIVE, updated_at=now)).rowcount:
                        audit(session, actor="system", action="partner.reactivated", subject_type="partner",
                              subject_id=pid, details={"last_activity": last.isoformat()})
                        counts["reactivated"] += 1
            continue
        if now - quiet_since >= dormant_after:
            with session_scope() as session:
                if session.execute(update(Partner).where(Partner.id == pid, Partner.stage == Stage.ACTIVE)
                                   .values(stage=Stage.DORMANT, updated_at=now)).rowcount:
                    if row:
                        session.execute(update(Onboarding).where(Onboarding.id == row.id).values(dormant_since=now))
                    audit(session, actor="system", action="partner.dormant", subject_type="partner", subject_id=pid,
                          details={"quiet_since": quiet_since.isoformat()})
                    counts["dormant"] += 1
        elif now - quiet_since >= nudge_after and (row is None or row.nudged_at is None or row.nudged_at < quiet_since):
            deliver(f"nudge:{pid}:{quiet_since:%Y%m%d%H%M%S}", kind="activation_nudge", to_email=email,
                    template="onboarding/activation_nudge", partner_id=pid,
                    context={"contact_name": name, "tracking_url": ob.tracking_url(tracking) if tracking else "",
                             "coupon_code": coupon or ""})
            if row:
                with session_scope() as session:
                    session.execute(update(Onboarding).where(Onboarding.id == row.id).values(nudged_at=now))
            counts["nudged"] += 1
    return counts


def funnel() -> dict[str, int]:
    with session_scope() as session:
        applied = session.exec(select(func.count()).select_from(Application)).one()
        approved = session.exec(select(func.count()).select_from(Application)
                                .where(Application.status == ApplicationStatus.APPROVED)).one()
        signed = session.exec(select(func.count(func.distinct(Contract.partner_id)))
                              .where(Contract.status == ContractStatus.SIGNED)).one()
        active = session.exec(select(func.count()).select_from(Partner).where(Partner.stage == Stage.ACTIVE)).one()
    return {"applied": applied, "approved": approved, "signed": signed, "active": active}


def funnel_markdown(counts: dict[str, int]) -> str:
    base = counts["applied"] or 1
    rows = "\n".join(f"| {stage} | {n} | {100 * n / base:.1f}% |" for stage, n in counts.items())
    return "# Partner funnel\n\n| Stage | Partners | Of applied |\n|---|---|---|\n" + rows + "\n"


@flow(name="monitor-activation")
def monitor_activation(now: datetime | None = None) -> dict[str, Any]:
    counts = check_activation(now)
    stages = funnel()
    create_markdown_artifact(funnel_markdown(stages), key="partner-funnel", description="applied → approved → signed → active")
    get_run_logger().info("Activation: %s; funnel: %s", counts, stages)
    return {**counts, "funnel": stages}
