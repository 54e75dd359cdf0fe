"""Helpers shared by the compliance tests."""

from __future__ import annotations

from sqlmodel import select

from partnerflow.models import session_scope
from partnerflow.models.compliance import Finding


def findings(**where) -> list[Finding]:
    """Findings whose columns equal these values, oldest first."""
    with session_scope() as session:
        query = select(Finding).order_by(Finding.id)
        for column, value in where.items():
            query = query.where(getattr(Finding, column) == value)
        return list(session.exec(query).all())
