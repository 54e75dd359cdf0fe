"""What holds a partner's payout: open findings of blocking kinds (sanctions hits, withheld findings),
a suspended partner, and payout details changed but not yet confirmed by a person (or, for a change the
partner confirmed in the portal, still in its cooling-off period).

The payout batch calls `payout_blockers(session, partner_ids)` and skips (holds) every partner
with a non-empty list. A finding stops blocking once it is resolved or dismissed (with a reason),
which releases the hold on the next batch.
"""

from __future__ import annotations

from sqlmodel import Session, select

from partnerflow.models.compliance import ACTIVE_STATUSES, Finding
from partnerflow.models.partners import Partner, Stage
from partnerflow.tasks.onboarding.details import payout_details_holds


def payout_blockers(session: Session, partner_ids: list[int]) -> dict[int, list[str]]:
    """{partner_id: [reason, ...]} for every partner in `partner_ids` whose payout must be held."""
    ids = sorted({int(p) for p in partner_ids})
    blockers: dict[int, list[str]] = {}
    if not ids:
        return blockers
    for start in range(0, len(ids), 500):  # keep IN lists small on every backend
        chunk = ids[start:start + 500]
        rows = session.exec(
            select(Finding)
            .where(Finding.partner_id.in_(chunk), Finding.blocking == True,  # noqa: E712
                   Finding.status.in_(ACTIVE_STATUSES))
            .order_by(Finding.partner_id, Finding.id)
        ).all()
        for f in rows:
            blockers.setdefault(f.partner_id, []).append(
                f"compliance finding #{f.id} ({f.kind}/{f.rule}, {f.severity}, {f.status}): {f.title}")
        suspended = session.exec(
            select(Partner.id).where(Partner.id.in_(chunk), Partner.stage == Stage.SUSPENDED)).all()
        for pid in suspended:
            blockers.setdefault(pid, []).append("partner is suspended")
        for pid, reasons in payout_details_holds(session, chunk).items():
            blockers.setdefault(pid, []).extend(reasons)
    return blockers
