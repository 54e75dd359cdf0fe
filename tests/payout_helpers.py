"""Builders shared by the commission and payout tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from partnerflow.models import (
    Contract,
    ContractStatus,
    Conversion,
    Partner,
    session_scope,
)

T0 = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


def make_partner(n: int, *, terms: dict | None = None, ready: bool = True, currency: str = "USD",
                 threshold: int = 1000, **kw) -> int:
    """A partner with tracking code P{n}; `ready` = signed contract and tax form received."""
    with session_scope() as session:
        p = Partner(email=f"p{n}@example.com", legal_name=f"Partner {n}", contact_name=f"Pat {n}",
                    tracking_code=f"P{n}", coupon_code=f"C{n}", payout_currency=currency,
                    payout_threshold_minor=threshold,
                    commission_terms=terms if terms is not None else {"kind": "percentage", "rate": "0.10",
                                                                       "lock_days": 30},
                    tax_form_status="received" if ready else "missing", stage="active", **kw)
        session.add(p)
        session.flush()
        if ready:
            session.add(Contract(partner_id=p.id, template_name="t", template_sha256="x", document_path="d",
                                 document_sha256="y", status=ContractStatus.SIGNED, signed_at=T0))
        return p.id


def add_conversions(rows: list[dict]) -> list[int]:
    """Insert conversions directly (the intake is tested on its own)."""
    ids = []
    with session_scope() as session:
        for i, r in enumerate(rows):
            values = {"source": "test", "external_id": r.get("external_id", f"x{i}-{r.get('partner_id')}-{id(r)}"),
                      "kind": "sale", "currency": "USD", "occurred_at": T0, **r}
            ids.append(session.execute(insert(Conversion).values(**values).returning(Conversion.id)).scalar_one())
    return ids


def after_lock(days: int = 31) -> datetime:
    return T0 + timedelta(days=days)
