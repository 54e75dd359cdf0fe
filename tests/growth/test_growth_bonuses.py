"""Bonuses: one-off, signing and performance bonuses become commission lines with their reason, go through the
lock period and the payout batch like commissions, and are granted and paid once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from factories import T0, add_conversions, after_lock, make_partner
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from support import mail_text, mails

from partnerflow.flows.payouts import run_payout_batch
from partnerflow.models import AuditLog, Commission, Contract, ContractStatus, session_scope
from partnerflow.models.growth import Bonus
from partnerflow.models.payouts import FxRate, LedgerTransfer
from partnerflow.tasks.growth import bonuses
from partnerflow.tasks.growth.policy import BonusRule, PolicyError, bonus_rules
from partnerflow.tasks.payouts.commissions import compute_commissions

AUTO = 10**12
FEB = datetime(2026, 2, 1, tzinfo=UTC)
RULE = BonusRule(name="volume-2pct", currency="USD", threshold_minor=1000000, rate="0.02")


def _lines(pid: int | None = None) -> list[tuple]:
    with session_scope() as s:
        q = select(Commission.kind, Commission.amount_minor, Commission.status, Commission.reason, Commission.period)
        if pid is not None:
            q = q.where(Commission.partner_id == pid)
        return sorted(s.execute(q.where(Commission.kind == "bonus")).all())


def _ledger() -> dict[int, int]:
    with session_scope() as s:
        return dict(s.execute(select(LedgerTransfer.partner_id, func.sum(LedgerTransfer.amount_minor))
                              .group_by(LedgerTransfer.partner_id)).all())


def test_one_off_bonus_is_locked_paid_once_and_audited(outbox, configure):
    configure(payout_approval_above_minor=AUTO)
    p = make_partner(1, terms={"kind": "percentage", "rate": "0.10", "lock_days": 14})
    first = bonuses.grant_bonus(partner_id=p, amount_minor=2500, currency="usd", reason="Spring contest: 1st prize",
                                granted_by="Dana", key="contest:2026-spring", earned_at=T0)
    again = bonuses.grant_bonus(partner_id=p, amount_minor=9999, currency="USD", reason="double click",
                                granted_by="Dana", key="contest:2026-spring", earned_at=T0)
    assert first[1] is True and again == (first[0], False)
    assert _lines(p) == [("bonus", 2500, "pending", "Spring contest: 1st prize", "2026-01")]

    # Inside the lock period a batch pays nothing; after it the bonus is paid with the commissions, once.
    compute_commissions(now=T0 + timedelta(days=13))
    run_payout_batch(period_end=(T0 + timedelta(days=13)).isoformat(), auto_approve_below_minor=AUTO)
    assert _ledger() == {}
    add_conversions([{"partner_id": p, "amount_minor": 10000, "external_id": "s1"}])
    compute_commissions(now=after_lock(15))
    assert _lines(p)[0][2] == "payable"
    run_payout_batch(period_end=after_lock(15).isoformat(), auto_approve_below_minor=AUTO)
    run_payout_batch(period_end=after_lock(20).isoformat(), auto_approve_below_minor=AUTO)
    assert _ledger() == {p: 3500}
    assert _lines(p)[0][2] == "paid"
    with session_scope() as s:
        audited = s.execute(select(AuditLog.actor, AuditLog.details).where(AuditLog.action == "bonus.granted")).all()
    assert [(actor, d["amount_minor"], d["reason"]) for actor, d in audited] == [
        ("Dana", 2500, "Spring contest: 1st prize")]


@pytest.mark.parametrize("change, message", [
    ({"amount_minor": 0}, "positive whole number"),
    ({"amount_minor": 12.5}, "positive whole number"),
    ({"amount_minor": -100}, "positive whole number"),
    ({"reason": "  "}, "reason"),
    ({"reason": "x" * 301}, "reason"),
    ({"granted_by": ""}, "name of the person"),
    ({"currency": "dollars"}, "ISO 4217"),
    ({"partner_id": 999999}, "no partner with id 999999"),
])
def test_a_bad_bonus_is_refused_with_a_sentence_and_nothing_is_stored(change, message):
    p = make_partner(1)
    grant = {"partner_id": p, "amount_minor": 1000, "currency": "USD", "reason": "prize", "granted_by": "Dana",
             "key": "k", **change}
    with pytest.raises(ValueError, match=message):
        bonuses.grant_bonus(**grant)
    assert _lines() == []


def test_signing_bonus_of_the_signed_contract_is_granted_once_even_after_an_amendment():
    terms = {"kind": "percentage", "rate": "0.10", "lock_days": 30, "signing_bonus_minor": 10000}
    p = make_partner(1, ready=False, terms=terms)
    other = make_partner(2)  # a signed contract without a signing bonus
    with session_scope() as s:
        s.add(Contract(partner_id=p, template_name="t", template_sha256="x", document_path="d", document_sha256="y",
                       status=ContractStatus.SENT, commission_terms=terms))
    assert bonuses.grant_due_bonuses(now=T0) == {"signing": 0, "performance": 0}  # not signed yet
    with session_scope() as s:
        contract = s.execute(select(Contract).where(Contract.partner_id == p)).scalar_one()
        contract.status, contract.signed_at = ContractStatus.SIGNED, T0
        s.add(Contract(partner_id=p, template_name="t", template_sha256="x", document_path="d2",
                       document_sha256="y", status=ContractStatus.SIGNED, signed_at=T0 + timedelta(days=40),
                       commission_terms=terms))
    assert bonuses.grant_due_bonuses(now=T0) == {"signing": 1, "performance": 0}
    assert bonuses.grant_due_bonuses(now=T0) == {"signing": 0, "performance": 0}
    with session_scope() as s:
        line = s.execute(select(Commission).where(Commission.kind == "bonus")).scalar_one()
        assert (line.partner_id, line.amount_minor, line.payable_at) == (p, 10000, T0 + timedelta(days=30))
        assert line.reason.startswith("Signing bonus of contract")
    assert other not in [row[0] for row in _lines()]
    assert "one-time signing bonus of 100.00 USD" in \
        bonuses.CommissionTerms.model_validate(terms).describe()


def _january(pid: int, amounts: list[int], currency: str = "USD", prefix: str = "j") -> list[int]:
    return add_conversions([{"partner_id": pid, "amount_minor": a, "currency": currency,
                             "external_id": f"{prefix}{pid}-{i}", "occurred_at": T0 + timedelta(hours=i)}
                            for i, a in enumerate(amounts)])


def test_performance_bonus_pays_the_rate_on_net_sales_above_the_threshold_once_the_month_is_locked(configure):
    big = make_partner(1, terms={"kind": "percentage", "rate": "0.10", "lock_days": 10})
    small = make_partner(2, terms={"kind": "percentage", "rate": "0.10", "lock_days": 10})
    euro = make_partner(3, terms={"kind": "percentage", "rate": "0.10", "lock_days": 10})
    slow = make_partner(4, terms={"kind": "percentage", "rate": "0.10", "lock_days": 60})
    sales = _january(big, [800000, 700000, 5000])
    _january(small, [999999])
    _january(euro, [600000, 500000], currency="EUR")
    _january(slow, [2000000])
    # a partial refund after the lock: deducted from the commission and from the month's net sales
    add_conversions([{"partner_id": big, "kind": "refund", "reverses_id": sales[1], "amount_minor": 200000,
                      "external_id": "r1", "occurred_at": T0 + timedelta(days=25)}])
    with session_scope() as s:
        s.add(FxRate(day=datetime(2026, 1, 1).date(), base="EUR", quote="USD", rate="1.1"))
        s.add(FxRate(day=datetime(2026, 1, 31).date(), base="EUR", quote="USD", rate="1.2"))
    compute_commissions(now=T0 + timedelta(days=20))
    compute_commissions(now=T0 + timedelta(days=26))
    now = FEB + timedelta(days=1)
    assert bonuses.grant_due_bonuses(now=now) == {"signing": 0, "performance": 2}
    assert bonuses.grant_due_bonuses(now=now) == {"signing": 0, "performance": 0}
    # big: 8000 + 7000 - 2000 + 50 = 13050.00 -> 2% of 3050.00 = 61.00
    # euro: 11000.00 EUR at the rate of Jan 31 (1.2) = 13200.00 USD -> 2% of 3200.00 = 64.00; small is below
    got = {row[1] for row in _lines()}
    assert got == {6100, 6400}
    assert _lines(big)[0][3] == "Performance bonus 2026-01: 2% of sales above 10,000.00 USD"
    # slow's January commissions are still locked: its bonus waits until they are not
    assert _lines(slow) == []
    compute_commissions(now=T0 + timedelta(days=61))
    assert bonuses.grant_due_bonuses(now=T0 + timedelta(days=61)) == {"signing": 0, "performance": 1}
    assert _lines(slow)[0][1:3] == (20000, "pending")
    # the commission engine's refresh of a month never touches its bonus lines
    compute_commissions(now=T0 + timedelta(days=62))
    assert _lines(slow)[0][1:3] == (20000, "payable")
    with session_scope() as s:
        evidence = s.execute(select(Bonus.evidence).where(Bonus.partner_id == euro)).scalar_one()
    assert evidence["sales_minor"] == 1320000 and evidence["sales_minor_by_currency"] == {"EUR": 1100000}
    assert evidence["threshold_minor"] == 1000000


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=0, max_value=10**10),
       st.decimals(min_value=0, max_value=1, places=4, allow_nan=False, allow_infinity=False),
       st.sampled_from(["excess", "whole"]))
def test_bonus_amount_matches_an_independent_calculation(sales, threshold, rate, basis):
    rule = BonusRule(name="r", threshold_minor=threshold, rate=str(rate), basis=basis)
    exact = Fraction(0) if sales < threshold else \
        (sales - threshold if basis == "excess" else sales) * Fraction(str(rate))
    q, r = divmod(exact.numerator, exact.denominator)  # half-to-even, by hand
    expected = q + (1 if 2 * r > exact.denominator or (2 * r == exact.denominator and q % 2) else 0)
    assert bonuses.bonus_amount(rule, sales) == expected


def test_bonus_amount_excess_and_whole_month_rounded_half_even():
    whole = BonusRule(name="whole", threshold_minor=1000, rate="0.025", basis="whole")
    assert bonuses.bonus_amount(RULE, 1000000) == 0
    assert bonuses.bonus_amount(RULE, 1000025) == 0  # 0.5 -> 0 (half-even)
    assert bonuses.bonus_amount(RULE, 1000075) == 2  # 1.5 -> 2
    assert bonuses.bonus_amount(whole, 999) == 0 and bonuses.bonus_amount(whole, 1000) == 25
    assert bonuses.bonus_amount(whole, 1020) == 26  # 25.5 -> 26
    assert RULE.rate == Decimal("0.02")


@pytest.mark.parametrize("rules, message", [
    ([{"name": "Bad Name", "threshold_minor": 1, "rate": "0.1"}], "lowercase"),
    ([{"name": "a", "threshold_minor": 1, "rate": 0.1}], "floats"),
    ([{"name": "a", "threshold_minor": -1, "rate": "0.1"}], "threshold_minor"),
    ([{"name": "a", "threshold_minor": 1, "rate": "0.1"}, {"name": "a", "threshold_minor": 2, "rate": "0.1"}],
     "two rules are named"),
    ({"name": "a"}, "must be a list"),
])
def test_bonus_rules_in_the_policy_are_checked_with_one_sentence(rules, message):
    with pytest.raises(PolicyError, match=message):
        bonus_rules({"bonus_rules": rules})


def test_the_shipped_policy_rules_are_valid():
    assert [r.name for r in bonus_rules()] == ["volume-2pct"]


def test_the_grant_bonus_deployment_grants_once_and_the_daily_one_runs_the_rules():
    from partnerflow.flows.growth import grant_bonus, grant_bonuses

    p = make_partner(1)
    first = grant_bonus(p, 5000, "USD", "Goodwill for the outage", "Dana", "outage-2026-01")
    again = grant_bonus(p, 5000, "USD", "Goodwill for the outage", "Dana", "outage-2026-01")
    assert first["granted"] and not again["granted"] and first["bonus_id"] == again["bonus_id"]
    assert grant_bonuses() == {"signing": 0, "performance": 0}
    assert [row[1] for row in _lines(p)] == [5000]


def test_bonus_lines_are_itemised_with_their_reason_on_the_remittance(outbox, configure):
    configure(payout_approval_above_minor=AUTO)
    p = make_partner(1)
    bonuses.grant_bonus(partner_id=p, amount_minor=2500, currency="USD", reason="Spring contest: 1st prize",
                        granted_by="Dana", key="contest", earned_at=T0)
    compute_commissions(now=after_lock(31))
    run_payout_batch(period_end=after_lock(31).isoformat(), auto_approve_below_minor=AUTO)
    assert _ledger() == {p: 2500}
    (mail,) = mails(outbox)
    assert "Spring contest: 1st prize" in mail_text(mail)


def test_two_workers_granting_the_same_bonus_at_once_grant_it_once():
    import threading

    p = make_partner(1)
    start, results, errors = threading.Barrier(4), [], []

    def grant():
        start.wait()
        try:
            results.append(bonuses.grant_bonus(partner_id=p, amount_minor=1000, currency="USD", reason="prize",
                                               granted_by="Dana", key="race"))
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=grant) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len({bonus_id for bonus_id, _ in results}) == 1 and sum(created for _, created in results) == 1
    assert [row[1] for row in _lines(p)] == [1000]
