"""A recruited partner is linked to the prospect outreach contacted with the same email, once."""

from __future__ import annotations

from sqlmodel import select

from partnerflow.models import AuditLog, Message, Partner, Prospect, ProspectStatus, session_scope, utcnow
from partnerflow.tasks.onboarding.prospects import link_prospect


def _partner(email: str) -> int:
    with session_scope() as session:
        partner = Partner(email=email, legal_name="Ann Media LLC", contact_name="Ann", country="US")
        session.add(partner)
        session.flush()
        return partner.id


def _prospect(email: str, status: str = ProspectStatus.NEW, mailed: bool = False) -> int:
    with session_scope() as session:
        prospect = Prospect(email=email, status=status)
        session.add(prospect)
        session.flush()
        if mailed:
            session.add(Message(idempotency_key=f"outreach:test:{prospect.id}", kind="outreach", to_email=email,
                                subject="Hello", prospect_id=prospect.id, sent_at=utcnow(), status="sent"))
        return prospect.id


def test_a_contacted_prospect_with_the_same_email_is_linked_once_and_audited():
    prospect_id = _prospect("Ann@AnnMedia.example", status=ProspectStatus.ENROLLED)
    partner_id = _partner("ann@annmedia.example")
    assert link_prospect(partner_id) == prospect_id
    assert link_prospect(partner_id) == prospect_id  # again: nothing changes
    with session_scope() as session:
        assert session.get(Partner, partner_id).prospect_id == prospect_id
        rows = session.exec(select(AuditLog).where(AuditLog.action == "partner.prospect_linked")).all()
        assert len(rows) == 1 and rows[0].details == {"prospect_id": prospect_id}


def test_a_mailed_prospect_counts_as_contacted():
    prospect_id = _prospect("bo@bo.example", mailed=True)
    assert link_prospect(_partner("bo@bo.example")) == prospect_id


def test_a_prospect_never_contacted_or_another_email_is_not_linked():
    _prospect("cy@cy.example")  # imported, never contacted
    _prospect("dee@dee.example", status=ProspectStatus.REPLIED)
    partner_id = _partner("cy@cy.example")
    assert link_prospect(partner_id) is None
    with session_scope() as session:
        assert session.get(Partner, partner_id).prospect_id is None


def test_activation_links_a_recruited_partner_to_the_prospect_outreach_contacted():
    from partnerflow.tasks.onboarding.activation import activate

    prospect_id = _prospect("eve@eve.example", mailed=True)
    partner_id = _partner("eve@eve.example")
    assert activate(partner_id, contract_id=1)
    with session_scope() as session:
        assert session.get(Partner, partner_id).prospect_id == prospect_id
