"""Remittance: one mail per paid payout with its line items, exactly once per payout."""

from __future__ import annotations

from sqlmodel import Session, select

from partnerflow.models import Commission, Conversion, Partner, Payout, session_scope, utcnow
from partnerflow.models.payouts import PayoutStatus
from partnerflow.tasks.shared.mail import deliver
from partnerflow.tasks.shared.money import format_money


def remittance_lines(session: Session, payout_id: int) -> list[dict[str, str]]:
    """The payout's lines: each conversion's commission, then bonuses (no conversion) with their reason."""
    rows = session.execute(
        select(Conversion.occurred_at, Conversion.kind, Conversion.external_id, Conversion.product,
               Commission.amount_minor, Commission.currency, Commission.rule,
               Commission.created_at, Commission.kind, Commission.reason)
        .outerjoin(Conversion, Conversion.id == Commission.conversion_id)
        .where(Commission.payout_id == payout_id)
        .order_by(Conversion.occurred_at.is_(None), Conversion.occurred_at, Conversion.id, Commission.id))
    return [{"date": (at or created).date().isoformat(), "kind": kind or line_kind,
             "reference": ext or reason or "", "product": product or "",
             "commission": format_money(amount, cur), "rule": rule}
            for at, kind, ext, product, amount, cur, rule, created, line_kind, reason in rows]


def send_remittances(batch_id: int) -> int:
    """One remittance mail per paid payout (key remittance:{payout id}); returns how many payouts."""
    with session_scope() as session:
        payouts = session.exec(select(Payout).where(Payout.batch_id == batch_id,
                                                    Payout.status == PayoutStatus.PAID)).all()
        work = [(payout, session.get(Partner, payout.partner_id), remittance_lines(session, payout.id))
                for payout in payouts]
    for payout, partner, lines in work:
        deliver(f"remittance:{payout.id}", kind="remittance", to_email=partner.email, template="payouts/remittance",
                partner_id=partner.id, context={
                    "name": partner.contact_name or partner.legal_name, "payout_id": payout.id,
                    "amount": format_money(payout.amount_minor, payout.currency), "lines": lines,
                    "fx_rates": payout.fx_rates, "provider_ref": payout.provider_ref or "",
                    "paid_on": (payout.paid_at or utcnow()).date().isoformat(),
                })
    return len(work)
