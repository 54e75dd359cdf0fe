"""Which prospect a recruited partner came from: the prospect with the partner's email that outreach
actually contacted (a mail went out to it, or it is past `new`). Links the two once, so outreach can
be judged by the partners (and sales) it brought."""

from __future__ import annotations

from sqlalchemy import func, update
from sqlmodel import select

from partnerflow.models import Message, Partner, Prospect, ProspectStatus, audit, session_scope


def link_prospect(partner_id: int, actor: str = "system") -> int | None:
    """Set Partner.prospect_id when a contacted prospect has the partner's email; returns the prospect id.
    Never overwrites an existing link; a prospect never contacted (only imported) is not a recruit."""
    with session_scope() as session:
        partner = session.get(Partner, partner_id)
        if partner is None or partner.prospect_id is not None or not partner.email:
            return partner.prospect_id if partner else None
        email = partner.email.strip().lower()
        mailed = select(Message.id).where(Message.prospect_id == Prospect.id, Message.sent_at.is_not(None)).exists()
        prospect_id = session.exec(select(Prospect.id).where(
            func.lower(Prospect.email) == email,
            (Prospect.status != ProspectStatus.NEW) | mailed)).first()
        if prospect_id is None:
            return None
        linked = session.execute(update(Partner).where(Partner.id == partner_id, Partner.prospect_id.is_(None))
                                 .values(prospect_id=prospect_id)).rowcount
        if linked:
            audit(session, actor=actor, action="partner.prospect_linked", subject_type="partner",
                  subject_id=partner_id, details={"prospect_id": prospect_id})
        return prospect_id
