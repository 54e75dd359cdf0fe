"""Activation monitoring: nudge partners with no click or conversion for `activation_nudge_days`,
mark them dormant after `activation_dormant_days`, return them to active when activity comes
back; and the partner funnel (applied -> approved -> signed -> active)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prefect import task
from sqlalchemy import func, update
from sqlmodel import Session, select

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
from partnerflow.tasks.onboarding.activation import tracking_url
from partnerflow.tasks.shared.mail import deliver


def _last_conversions(session: Session, partner_ids: list[int]) -> dict[int, datetime]:
    """Latest conversion per partner (clicks are kept on Partner.last_activity_at by the tracking link)."""
    if not partner_ids:
        return {}
    rows = session.exec(select(Conversion.partner_id, func.max(Conversion.occurred_at))
                        .where(Conversion.partner_id.in_(partner_ids)).group_by(Conversion.partner_id)).all()
    return {pid: when for pid, when in rows if when is not None}


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _reactivate(pid: int, last: datetime, now: datetime) -> bool:
    with session_scope() as session:
        if not session.execute(update(Partner).where(Partner.id == pid, Partner.stage == Stage.DORMANT)
                               .values(stage=Stage.ACTIVE, updated_at=now)).rowcount:
            return False
        audit(session, actor="system", action="partner.reactivated", subject_type="partner",
              subject_id=pid, details={"last_activity": last.isoformat()})
        return True


def _make_dormant(pid: int, row: Onboarding | None, quiet_since: datetime, now: datetime) -> bool:
    with session_scope() as session:
        if not session.execute(update(Partner).where(Partner.id == pid, Partner.stage == Stage.ACTIVE)
                               .values(stage=Stage.DORMANT, updated_at=now)).rowcount:
            return False
        if row:
            session.execute(update(Onboarding).where(Onboarding.id == row.id).values(dormant_since=now))
        audit(session, actor="system", action="partner.dormant", subject_type="partner", subject_id=pid,
              details={"quiet_since": quiet_since.isoformat()})
        return True


def _nudge(partner: Partner, row: Onboarding | None, quiet_since: datetime, now: datetime) -> None:
    deliver(f"nudge:{partner.id}:{quiet_since:%Y%m%d%H%M%S}", kind="activation_nudge", to_email=partner.email,
            template="onboarding/activation_nudge", partner_id=partner.id,
            context={"contact_name": partner.contact_name or partner.legal_name,
                     "tracking_url": tracking_url(partner.tracking_code) if partner.tracking_code else "",
                     "coupon_code": partner.coupon_code or ""})
    if row:
        with session_scope() as session:
            session.execute(update(Onboarding).where(Onboarding.id == row.id).values(nudged_at=now))


@task(name="check-activation")
def check_activation(now: datetime | None = None) -> dict[str, int]:
    settings = get_settings().onboarding
    now = now or utcnow()
    nudge_after = timedelta(days=settings.activation_nudge_days)
    dormant_after = timedelta(days=settings.activation_dormant_days)
    counts = {"nudged": 0, "dormant": 0, "reactivated": 0}
    with session_scope() as session:
        partners = session.exec(select(Partner).where(Partner.stage.in_((Stage.ACTIVE, Stage.DORMANT)),
                                                      Partner.activated_at.is_not(None))).all()
        conversions = _last_conversions(session, [p.id for p in partners])
        rows = {r.partner_id: r for r in session.exec(select(Onboarding)).all()}
    for partner in partners:
        row = rows.get(partner.id)
        last = max([t for t in (_aware(partner.last_activity_at), _aware(conversions.get(partner.id))) if t],
                   default=None)
        quiet_since = max(partner.activated_at, last) if last else partner.activated_at
        if partner.stage == Stage.DORMANT:
            dormant_since = row.dormant_since if row else None
            if last and (dormant_since is None or last > dormant_since):
                counts["reactivated"] += _reactivate(partner.id, last, now)
        elif now - quiet_since >= dormant_after:
            counts["dormant"] += _make_dormant(partner.id, row, quiet_since, now)
        elif now - quiet_since >= nudge_after and (row is None or row.nudged_at is None or row.nudged_at < quiet_since):
            _nudge(partner, row, quiet_since, now)
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
