"""Tier rules: evaluated from SQL aggregates for the last complete month, proposed in an approval form with
their evidence, approved (all, all but some, or none), sent as an amendment for signature; a promotion applies
from the signature, a demotion at the end of the notice period; commissions switch terms only from then."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from docx import Document
from factories import add_conversions, make_partner
from fastapi.testclient import TestClient
from sqlalchemy import select
from support import mail_text, mails, run_deployed

from partnerflow.flows.growth import apply_tier_changes, review_tiers
from partnerflow.models import AuditLog, Commission, Contract, ContractStatus, Partner, session_scope
from partnerflow.models.growth import TierChange
from partnerflow.settings import get_settings
from partnerflow.tasks.growth import tiers
from partnerflow.tasks.growth.policy import PolicyError, tier_rules
from partnerflow.tasks.payouts.commissions import compute_commissions
from partnerflow.tasks.shared.terms import CommissionTerms
from partnerflow.web.app import create_app

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
JAN, FEB = datetime(2026, 1, 15, tzinfo=UTC), datetime(2026, 2, 10, tzinfo=UTC)


def _sales(pid: int, *rows: tuple[datetime, int]) -> None:
    add_conversions([{"partner_id": pid, "amount_minor": amount, "occurred_at": at,
                      "external_id": f"{pid}-{at:%m%d}-{i}"} for i, (at, amount) in enumerate(rows)])


@pytest.fixture
def program():
    """A: 10,000 in Jan and Feb -> gold; B: only Feb; C: gold, 2 conversions in 90 days -> standard;
    D: gold with 3; E: gold with none -> standard."""
    ids = {name: make_partner(n, **({"tier": "gold"} if name in "CDE" else {}))
           for n, name in enumerate("ABCDE", start=1)}
    _sales(ids["A"], (JAN, 1000000), (FEB, 1200000))
    _sales(ids["B"], (JAN, 500000), (FEB, 2000000))
    _sales(ids["C"], (FEB, 1000), (FEB, 2000))
    _sales(ids["D"], (JAN, 1000), (FEB, 1000), (FEB, 3000))
    compute_commissions(now=NOW)
    return ids


def _changes() -> dict[int, tuple[str, str, str]]:
    with session_scope() as s:
        return {c.partner_id: (c.to_tier, c.direction, c.status) for c in s.execute(select(TierChange)).scalars()}


def test_rules_propose_promotions_and_demotions_with_their_evidence(program):
    proposals = {p["partner_id"]: p for p in tiers.evaluate(NOW)}
    a, c, e = program["A"], program["C"], program["E"]
    assert set(proposals) == {a, c, e}
    assert (proposals[a]["to_tier"], proposals[a]["direction"], proposals[a]["rule"]) == \
        ("gold", "promotion", "gold-on-volume")
    assert proposals[a]["evidence"]["sales_minor_by_month"] == {"2026-01": 1000000, "2026-02": 1200000}
    assert proposals[a]["evidence"]["rate_before"] == "0.10" and proposals[a]["evidence"]["rate_after"] == "0.15"
    assert proposals[c]["evidence"]["conversions"] == 2 and proposals[e]["evidence"]["conversions"] == 0
    assert proposals[c]["direction"] == "demotion" and proposals[a]["period"] == "2026-02"
    # stored once: storing again adds nothing, and partners with an open change are not evaluated again
    waiting = tiers.propose(list(proposals.values()))
    assert tiers.propose(list(proposals.values())) == waiting and len(_changes()) == 3
    assert tiers.evaluate(NOW) == []
    text = tiers.describe(waiting)
    assert "2026-01: 10,000.00 USD; 2026-02: 12,000.00 USD" in text and "2 conversions in 90 days" in text


def test_policy_applies_small_rate_changes_without_asking(program, configure):
    configure(growth_tier_auto_apply_below="0.06")
    waiting = tiers.propose(tiers.evaluate(NOW))
    # every change moves the headline rate by at most 0.05 (0.10 -> 0.15, 0.10 -> 0.10)
    assert waiting == [] and {v[2] for v in _changes().values()} == {"approved"}
    configure(growth_tier_auto_apply_below="0.01")
    with session_scope() as s:
        for row in s.execute(select(TierChange)).scalars():
            s.delete(row)
    waiting = tiers.propose(tiers.evaluate(NOW))
    assert _changes()[program["A"]][2] == "proposed" and _changes()[program["C"]][2] == "approved"
    assert len(waiting) == 1


def test_approved_changes_become_amendments_promotion_from_signature_demotion_after_notice(program, outbox):
    a, c, e = program["A"], program["C"], program["E"]
    result = run_deployed(review_tiers, {"now": NOW.isoformat()},
                          [{"decision": "approve", "exclude_partner_ids": [e], "note": "E is on holiday",
                            "approver": "Dana"}])
    with session_scope() as s:
        change_of = {row.partner_id: row.id for row in s.execute(select(TierChange)).scalars()}
    assert result["decided"] == {"approved": [change_of[a], change_of[c]], "excluded": [change_of[e]]}
    assert _changes() == {a: ("gold", "promotion", "sent"), c: ("standard", "demotion", "sent"),
                          e: ("standard", "demotion", "excluded")}
    with session_scope() as s:
        promo = s.execute(select(TierChange).where(TierChange.partner_id == a)).scalar_one()
        amendment = s.get(Contract, promo.contract_id)
        demo = s.execute(select(TierChange).where(TierChange.partner_id == c)).scalar_one()
        assert amendment.status == ContractStatus.SENT and amendment.version == 2
        assert demo.effective_at == NOW + timedelta(days=30)
        assert s.get(Partner, a).tier == "standard"  # nothing applies before the signature
        path = get_settings().documents_dir / amendment.document_path
    words = "\n".join(p.text for p in Document(str(path)).paragraphs)
    assert "from the standard tier to the gold tier" in words and "from the Partner's signature" in words
    subjects = sorted(m["subject"] for m in mails(outbox))
    assert "You have been promoted to the gold tier" in subjects
    assert "Your tier changes to standard on 2026-04-01" in subjects

    # The partner signs the amendment on the built-in signing page; sales before the signature keep the old
    # terms, later ones earn the gold terms.
    (to_a,) = [m for m in mails(outbox) if m["To"] == "p1@example.com" and "/sign/" in mail_text(m)]
    sign_path = re.search(r"https?://[^/\s]+(/sign/[A-Za-z0-9_\-]+)", mail_text(to_a)).group(1)
    page = TestClient(create_app()).post(sign_path, data={"signer_name": "Pat 1", "consent": "yes"})
    assert page.status_code == 200
    with session_scope() as s:
        signed_at = s.get(Contract, promo.contract_id).signed_at
    assert signed_at is not None
    _sales(a, (signed_at - timedelta(minutes=1), 2000000), (signed_at + timedelta(minutes=1), 2000000))
    applied = apply_tier_changes(now=(NOW + timedelta(days=10)).isoformat())["applied"]
    assert applied == [promo.id]
    assert apply_tier_changes(now=(NOW + timedelta(days=10)).isoformat())["applied"] == []
    compute_commissions(now=signed_at + timedelta(minutes=2))
    with session_scope() as s:
        partner = s.get(Partner, a)
        latest = sorted(s.execute(select(Commission.amount_minor).where(
            Commission.partner_id == a, Commission.period == f"{signed_at:%Y-%m}")).scalars())
    assert partner.tier == "gold" and CommissionTerms.parse(partner.commission_terms).effective_from == signed_at
    # before: 10% of 20,000.00; after: gold marginal tiers, 10% of the first 10,000.00 and 15% of the next
    assert latest == [200000, 250000]

    # The demotion applies at the end of the notice period, unsigned.
    assert apply_tier_changes(now=(NOW + timedelta(days=29)).isoformat())["applied"] == []
    assert apply_tier_changes(now=(NOW + timedelta(days=31)).isoformat())["applied"] == [demo.id]
    with session_scope() as s:
        assert s.get(Partner, c).tier == "standard"
        actions = list(s.execute(select(AuditLog.action).where(AuditLog.action.like("tier_change.%")))
                   .scalars())
    assert actions.count("tier_change.applied") == 2 and "tier_change.excluded" in actions
    assert sum(1 for m in mails(outbox) if m["subject"].startswith("Your ")) == 3  # notice + two "applies now"


def test_a_rejected_or_unanswered_proposal_changes_nobody(program):
    run_deployed(review_tiers, {"now": NOW.isoformat()}, [{"decision": "reject", "note": "not now",
                                                           "approver": "Dana"}])
    assert {v[2] for v in _changes().values()} == {"rejected"}
    with session_scope() as s:
        for row in s.execute(select(TierChange)).scalars():
            s.delete(row)
    ids = tiers.propose(tiers.evaluate(NOW))
    tiers.expire(",".join(map(str, ids)), {})
    assert {v[2] for v in _changes().values()} == {"expired"}
    with session_scope() as s:
        assert {p.tier for p in s.execute(select(Partner)).scalars()} == {"standard", "gold"}
        assert s.get(Partner, program["A"]).tier == "standard"


@pytest.mark.parametrize("rules, message", [
    ([{"name": "x", "to_tier": "platinum", "conversions_below": 1}], "unknown tier 'platinum'"),
    ([{"name": "x", "to_tier": "gold"}], "needs revenue_at_least_minor or conversions_below"),
    ([{"name": "x", "to_tier": "gold", "revenue_at_least_minor": 1, "months": 0}], "months"),
])
def test_tier_rules_in_the_policy_are_checked_with_one_sentence(rules, message):
    with pytest.raises(PolicyError, match=message):
        tier_rules({"tier_rules": rules})


def test_terms_switch_inside_a_month_from_the_change():
    from partnerflow.tasks.payouts.commission_rules import Row, compute_period

    at = datetime(2026, 3, 5, tzinfo=UTC)
    terms = CommissionTerms.model_validate({"kind": "percentage", "rate": "0.2", "effective_from": at.isoformat(),
                                            "previous": {"kind": "flat", "flat_minor": 100}})
    rows = [Row(id=i, partner_id=1, kind="sale", amount_minor=1000, currency="USD", occurred_at=when)
            for i, when in enumerate([at - timedelta(seconds=1), at, at + timedelta(days=1)])]
    assert [r.amount_minor for r in compute_period(terms, rows, first_purchase={})] == [100, 200, 200]
    with pytest.raises(ValueError, match="go together"):
        CommissionTerms.model_validate({"kind": "percentage", "rate": "0.2", "effective_from": at.isoformat()})


def test_a_promotion_whose_amendment_lapses_unsigned_never_applies_and_can_be_proposed_again(program, configure):
    configure(growth_tier_auto_apply_below="0.06")  # approved by policy: no form
    run_deployed(review_tiers, {"now": NOW.isoformat()})
    a = program["A"]
    with session_scope() as s:
        promo = s.execute(select(TierChange).where(TierChange.partner_id == a)).scalar_one()
        s.get(Contract, promo.contract_id).status = ContractStatus.EXPIRED
    apply_tier_changes(now=(NOW + timedelta(days=40)).isoformat())
    assert _changes()[a] == ("gold", "promotion", "expired")
    with session_scope() as s:
        assert s.get(Partner, a).tier == "standard"
    assert a not in [p["partner_id"] for p in tiers.evaluate(NOW + timedelta(days=31))]  # no sales in March
    assert a in [p["partner_id"] for p in tiers.evaluate(NOW)]  # open again for February's evidence
