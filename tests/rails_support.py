"""Rows the payout-rail tests need: a partner with payout details, an approved batch, a payout with commissions."""

from __future__ import annotations

import json

from partnerflow.models import (
    Commission,
    Conversion,
    Partner,
    Payout,
    PayoutBatch,
    session_scope,
    utcnow,
)
from partnerflow.secrets import encrypt


def make_partner(n: int = 1, *, method: str = "stripe", details: dict | None = None, currency: str = "EUR") -> int:
    with session_scope() as session:
        partner = Partner(email=f"partner{n}@example.com", legal_name=f"Partner {n} GmbH", payout_method=method,
                          payout_currency=currency, payout_threshold_minor=100,
                          payout_details_encrypted=encrypt(json.dumps(details)) if details else None)
        session.add(partner)
        session.flush()
        return partner.id


def make_payout(partner_id: int, *, rail: str, amount_minor: int = 5000, currency: str = "EUR",
                status: str = "sending", batch_id: int | None = None, provider_ref: str | None = None) -> int:
    """A payout with one commission attached (as the batch builder leaves it)."""
    with session_scope() as session:
        if batch_id is None:
            batch = PayoutBatch(status="approved", period_end=utcnow())
            session.add(batch)
            session.flush()
            batch_id = batch.id
        conversion = Conversion(source="test", external_id=f"c-{partner_id}-{amount_minor}-{utcnow().timestamp()}",
                                partner_id=partner_id, amount_minor=amount_minor * 10, currency=currency,
                                occurred_at=utcnow())
        session.add(conversion)
        session.flush()
        payout = Payout(batch_id=batch_id, partner_id=partner_id, amount_minor=amount_minor, currency=currency,
                        rail=rail, idempotency_key=f"payout:{batch_id}:{partner_id}", status=status,
                        provider_ref=provider_ref)
        session.add(payout)
        session.flush()
        session.add(Commission(conversion_id=conversion.id, partner_id=partner_id, amount_minor=amount_minor,
                               currency=currency, status="payable", payout_id=payout.id))
        return payout.id


def payout_row(payout_id: int) -> Payout:
    with session_scope() as session:
        payout = session.get(Payout, payout_id)
        session.expunge(payout)
        return payout


def commissions_of(payout_id: int | None, partner_id: int) -> list[Commission]:
    from sqlmodel import select

    with session_scope() as session:
        rows = session.exec(select(Commission).where(Commission.partner_id == partner_id)).all()
        for row in rows:
            session.expunge(row)
        return rows
