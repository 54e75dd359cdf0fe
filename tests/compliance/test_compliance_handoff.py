"""Serious findings reach a person's review even when the run that recorded them died before
handing them off, and never twice for the same findings."""

from __future__ import annotations

from sqlmodel import select

from partnerflow.models import Partner, Stage, session_scope
from partnerflow.models.compliance import FindingKind
from partnerflow.models.events import OutboxEvent
from partnerflow.tasks.compliance.actions import request_reviews
from partnerflow.tasks.compliance.findings import Detected, record
from partnerflow.tasks.compliance.policy import load_policy


def _partner(email: str) -> int:
    with session_scope() as session:
        partner = Partner(email=email, legal_name=email, country="US", stage=Stage.ACTIVE)
        session.add(partner)
        session.flush()
        return partner.id


def _find(partner_id: int, rule: str, severity: str) -> None:
    with session_scope() as session:
        record(session, [Detected(partner_id, FindingKind.DISCLOSURE, rule, severity, "t", url=f"https://x/{rule}")],
               load_policy())


def _handoffs() -> list[str]:
    with session_scope() as session:
        return list(session.exec(select(OutboxEvent.key).order_by(OutboxEvent.id)).all())


def test_findings_recorded_by_a_run_that_died_are_handed_to_review_once_per_set():
    policy = load_policy()
    serious, minor = _partner("a@x.example"), _partner("b@x.example")
    _find(serious, "disclosure.missing", "high")  # the run died here, before any hand-off
    _find(minor, "disclosure.weak", "low")

    assert request_reviews(policy) == [serious]  # the re-run asks although nothing is new
    assert request_reviews(policy) == []  # a second run asks nothing twice
    _find(serious, "claims.income", "critical")
    assert request_reviews(policy, serious) == [serious]  # a new serious finding asks again
    assert [k.rsplit(":", 1)[0] for k in _handoffs()] == [f"compliance.finding:partner:{serious}"] * 2
