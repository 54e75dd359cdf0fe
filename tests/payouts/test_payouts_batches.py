"""Payout batches end to end: thresholds, blockers, approval, reversals, FX, failure, concurrency."""

from __future__ import annotations

import threading
import time
from datetime import date

import pytest
from factories import T0, add_conversions, after_lock, make_partner
from sqlalchemy import func, select
from support import WaitingForPerson, run_deployed

from partnerflow.flows.approvals import expire_unanswered_approvals
from partnerflow.flows.payouts import run_payout_batch
from partnerflow.models import (
    AuditLog,
    Commission,
    Message,
    Partner,
    Payout,
    PayoutBatch,
    session_scope,
    utcnow,
)
from partnerflow.models.payouts import FxRate, LedgerTransfer
from partnerflow.settings import get_settings
from partnerflow.tasks.payouts import batches as engine
from partnerflow.tasks.payouts import execution, outcomes
from partnerflow.tasks.payouts.commissions import compute_commissions

AUTO = 10**12  # auto-approve everything below this


@pytest.fixture(autouse=True)
def _team_lets_policy_approve(configure):
    """A run's auto_approve_below_minor only lowers the team's limit: most tests here raise the limit itself."""
    configure(payout_approval_above_minor=AUTO)


def _ledger() -> dict[int, list[int]]:
    with session_scope() as s:
        out: dict[int, list[int]] = {}
        for pid, amount in s.execute(select(LedgerTransfer.partner_id, LedgerTransfer.amount_minor)):
            out.setdefault(pid, []).append(amount)
        return out


def _balance(pid: int) -> int:
    with session_scope() as s:
        return int(s.execute(select(func.coalesce(func.sum(Commission.amount_minor), 0)).where(
            Commission.partner_id == pid, Commission.status == "payable", Commission.payout_id.is_(None))).scalar())


def test_batch_pays_ready_partners_once_holds_blocked_ones_and_sends_remittance(outbox):
    ready = make_partner(1)
    blocked = make_partner(2, ready=False)
    small = make_partner(3, threshold=5000)
    add_conversions([{"partner_id": ready, "amount_minor": 12345, "external_id": "s1", "product": "Pro plan"},
                     {"partner_id": ready, "amount_minor": 7655, "external_id": "s2"},
                     {"partner_id": blocked, "amount_minor": 50000, "external_id": "s3"},
                     {"partner_id": small, "amount_minor": 1000, "external_id": "s4"}])
    compute_commissions(now=after_lock())
    result = run_payout_batch(period_end=after_lock().isoformat(), auto_approve_below_minor=AUTO)

    assert result["status"] == "paid" and result["paid"] == 1
    # 123.45 * 10% = 12.345 -> 12.34 (half-even) ; 76.55 * 10% = 7.655 -> 7.66 (half-even): 20.00
    assert _ledger() == {ready: [2000]}
    with session_scope() as s:
        batch = s.get(PayoutBatch, result["batch_id"])
        held = {h["partner_id"]: h["held"] for h in batch.summary["held"]}
        assert held == {blocked: ["unsigned contract", "missing tax form"]}
        assert batch.summary["below_threshold"] == 1
        assert s.execute(select(func.count()).select_from(AuditLog).where(
            AuditLog.action == "payout_batch.approved", AuditLog.actor == "policy")).scalar() == 1
    # blocked and small partners keep their balances for a later batch
    assert _balance(blocked) == 5000 and _balance(small) == 100

    mails = list(outbox.glob("*.eml"))
    assert len(mails) == 1
    text = mails[0].read_text()
    assert "20.00 USD" in text and "s1" in text and "12.34 USD" in text and "7.66 USD" in text

    # Re-running the same batch pays nobody again and mails nobody again.
    again = run_payout_batch(period_end=after_lock().isoformat(), auto_approve_below_minor=AUTO)
    assert again["batch_id"] == result["batch_id"]
    assert _ledger() == {ready: [2000]}
    assert len(list(outbox.glob("*.eml"))) == 1


def test_person_approves_with_a_hold_and_the_decision_is_audited(configure):
    configure(payout_approval_above_minor=0)
    a, b = make_partner(1), make_partner(2)
    add_conversions([{"partner_id": a, "amount_minor": 20000, "external_id": "a"},
                     {"partner_id": b, "amount_minor": 30000, "external_id": "b"}])
    compute_commissions(now=after_lock())
    result = run_deployed(run_payout_batch, {"period_end": after_lock().isoformat()},
                           [{"decision": "approve", "hold_partner_ids": [a], "note": "check a",
                                     "approver": "Dana"}])
    assert result["status"] == "paid"
    assert _ledger() == {b: [3000]}
    assert _balance(a) == 2000  # held: back in the balance
    with session_scope() as s:
        row = s.execute(select(AuditLog).where(AuditLog.action == "payout_batch.approved")).scalar_one()
        assert row.actor == "Dana" and row.details["held_partner_ids"] == [a]


def test_rejected_batch_pays_nothing_and_keeps_balances(configure):
    configure(payout_approval_above_minor=0)
    a = make_partner(1)
    add_conversions([{"partner_id": a, "amount_minor": 20000, "external_id": "a"}])
    compute_commissions(now=after_lock())
    result = run_deployed(run_payout_batch, {"period_end": after_lock().isoformat()},
                           [{"decision": "reject", "note": "wrong month", "approver": "Dana"}])
    assert result["status"] == "rejected"
    assert _ledger() == {}
    assert _balance(a) == 2000


def test_refund_inside_lock_cancels_and_after_payout_is_deducted_next_batch():
    a = make_partner(1)
    sale, early = add_conversions([{"partner_id": a, "amount_minor": 50000, "external_id": "sale"},
                                   {"partner_id": a, "amount_minor": 10000, "external_id": "early"}])
    add_conversions([{"partner_id": a, "kind": "refund", "reverses_id": early, "amount_minor": 10000,
                      "external_id": "r-early", "occurred_at": T0}])
    compute_commissions(now=after_lock())
    first = run_payout_batch(period_end=after_lock().isoformat(), auto_approve_below_minor=AUTO)
    assert _ledger() == {a: [5000]}  # the refunded sale earned nothing

    # The big sale is refunded after it was paid: the next batch starts 50.00 below zero.
    add_conversions([{"partner_id": a, "kind": "refund", "reverses_id": sale, "amount_minor": 50000,
                      "external_id": "r-sale", "occurred_at": after_lock(32)},
                     {"partner_id": a, "amount_minor": 20000, "external_id": "later", "occurred_at": after_lock(32)}])
    compute_commissions(now=after_lock(70))
    second = run_payout_batch(period_end=after_lock(70).isoformat(), auto_approve_below_minor=AUTO)
    assert second["batch_id"] != first["batch_id"]
    with session_scope() as s:
        held = s.get(PayoutBatch, second["batch_id"]).summary["held"]
    assert [(h["partner_id"], h["amount_minor"], h["held"]) for h in held] == [(a, -3000, ["negative balance"])]
    assert _ledger() == {a: [5000]}

    add_conversions([{"partner_id": a, "amount_minor": 80000, "external_id": "more", "occurred_at": after_lock(40)}])
    compute_commissions(now=after_lock(80))
    run_payout_batch(period_end=after_lock(80).isoformat(), auto_approve_below_minor=AUTO)
    assert _ledger() == {a: [5000, 5000]}  # -50 + 20 + 80 = 50.00
    assert _balance(a) == 0


def test_payout_in_partner_currency_uses_the_fx_table_and_stores_the_rate():
    a = make_partner(1, currency="EUR")
    b = make_partner(2, currency="JPY")
    add_conversions([{"partner_id": a, "amount_minor": 33333, "currency": "USD", "external_id": "u"},
                     {"partner_id": a, "amount_minor": 10000, "currency": "EUR", "external_id": "e"},
                     {"partner_id": b, "amount_minor": 100000, "currency": "USD", "external_id": "j"}])
    with session_scope() as s:
        s.add(FxRate(day=date(2026, 1, 1), base="USD", quote="EUR", rate="0.5"))
        s.add(FxRate(day=date(2026, 2, 1), base="USD", quote="EUR", rate="0.9215"))
        s.add(FxRate(day=date(2099, 1, 1), base="USD", quote="EUR", rate="9"))  # future: not used
    compute_commissions(now=after_lock())
    result = run_payout_batch(period_end=after_lock().isoformat(), auto_approve_below_minor=AUTO)
    # USD 33.33 (3333) * 0.9215 = 3071.36 -> 3071 EUR cents, plus EUR 10.00 commission 1000
    assert _ledger() == {a: [4071]}
    with session_scope() as s:
        payout = s.execute(select(Payout).where(Payout.partner_id == a)).scalar_one()
        assert payout.currency == "EUR" and payout.fx_rates == {"USD/EUR": "0.9215"}
        held = s.get(PayoutBatch, result["batch_id"]).summary["held"]
    assert held[0]["partner_id"] == b and "no exchange rate USD/JPY" in held[0]["held"][0]


def test_failed_payout_returns_to_balance_and_tells_the_team_once(outbox):
    a = make_partner(1)
    add_conversions([{"partner_id": a, "amount_minor": 20000, "external_id": "a"}])
    compute_commissions(now=after_lock())
    run_payout_batch(period_end=after_lock().isoformat(), auto_approve_below_minor=AUTO)
    with session_scope() as s:
        payout_id = s.execute(select(Payout.id)).scalar_one()
    assert _balance(a) == 0
    assert outcomes.mark_payout_failed(payout_id, "account closed", actor="stripe") is True
    assert outcomes.mark_payout_failed(payout_id, "account closed", actor="stripe") is False
    assert outcomes.mark_payout_paid(payout_id, "x", actor="stripe") is False
    assert _balance(a) == 2000
    with session_scope() as s:
        team = s.execute(select(Message).where(Message.kind == "payout_failed")).scalars().all()
        assert len(team) == 1 and team[0].to_email == "partners-team@acme.example"
    assert "account closed" in next(p for p in outbox.glob("*.eml") if "failed" in p.read_text()).read_text()


def test_two_workers_executing_the_same_batch_never_pay_twice():
    partners = [make_partner(i) for i in range(1, 41)]
    add_conversions([{"partner_id": p, "amount_minor": 10000 + p, "external_id": f"s{p}"} for p in partners])
    compute_commissions(now=after_lock())
    batch_id = engine.build_batch(after_lock())
    engine.decide_batch(batch_id, approve=True, actor="test")

    calls: list[str] = []
    from partnerflow.providers.payout.ledger import LedgerRail

    class Counting(LedgerRail):
        def pay(self, instruction):
            calls.append(instruction.idempotency_key)
            return super().pay(instruction)

    execution.CLAIM_CHUNK, old = 3, execution.CLAIM_CHUNK
    try:
        threads = [threading.Thread(target=execution.execute_batch, args=(batch_id,),
                                    kwargs={"rail": Counting(get_settings().payouts)}) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        execution.CLAIM_CHUNK = old
    assert sorted(calls) == sorted(set(calls)) and len(calls) == 40  # no payout called twice
    assert _ledger() == {p: [_commission(p)] for p in partners}
    with session_scope() as s:
        assert s.get(PayoutBatch, batch_id).status == "paid"


def _commission(pid: int) -> int:
    with session_scope() as s:
        return int(s.execute(select(func.sum(Commission.amount_minor)).where(Commission.partner_id == pid)).scalar())


def test_partner_rows_untouched_by_batch():
    # Building a batch never edits partners (their terms and thresholds are inputs only).
    a = make_partner(1)
    with session_scope() as s:
        before = s.get(Partner, a).model_dump()
    engine.build_batch(after_lock())
    with session_scope() as s:
        assert s.get(Partner, a).model_dump() == before


def test_open_compliance_finding_and_missing_payout_details_hold_the_payout(configure):
    from partnerflow.models.compliance import Finding

    a, b = make_partner(1), make_partner(2)
    add_conversions([{"partner_id": a, "amount_minor": 20000, "external_id": "a"},
                     {"partner_id": b, "amount_minor": 20000, "external_id": "b"}])
    with session_scope() as s:
        s.add(Finding(partner_id=a, kind="sanctions", rule="sanctions.match", severity="critical",
                      title="possible SDN match", blocking=True, fingerprint="f1", active_fingerprint="f1"))
    compute_commissions(now=after_lock())
    batch_id = engine.build_batch(after_lock(), rail_name="stripe")  # a rail that needs payout details
    with session_scope() as s:
        held = {h["partner_id"]: h["held"] for h in s.get(PayoutBatch, batch_id).summary["held"]}
        assert s.execute(select(func.count()).select_from(Payout)).scalar() == 0
    assert "missing payout details" in held[a] and any("possible SDN match" in r for r in held[a])
    assert held[b] == ["missing payout details"]


def _approved(n: int = 3) -> tuple[int, list[int]]:
    ps = [make_partner(i) for i in range(1, n + 1)]
    add_conversions([{"partner_id": p, "amount_minor": 20000, "external_id": f"s{p}"} for p in ps])
    compute_commissions(now=after_lock())
    batch_id = engine.build_batch(after_lock())
    engine.decide_batch(batch_id, approve=True, actor="test")
    return batch_id, ps


def test_rail_errors_timeout_after_accept_retry_later_and_permanent_failure(outbox):
    from partnerflow.providers.errors import (
        AmbiguousError,
        PermanentError,
        RetryableError,
    )
    from partnerflow.providers.payout.ledger import LedgerRail

    batch_id, (a, b, c) = _approved()

    class Flaky(LedgerRail):
        def pay(self, instruction):
            if instruction.partner_id == a:  # the provider books it, then the answer times out
                super().pay(instruction)
                raise AmbiguousError("read timeout")
            if instruction.partner_id == b:
                raise RetryableError("429 Too Many Requests", retry_after=1)
            raise PermanentError("account closed")

    outcome = execution.execute_batch(batch_id, rail=Flaky(get_settings().payouts))
    assert outcome == {"ambiguous": 1, "retry": 1, "failed": 1}
    assert _ledger() == {a: [2000]}
    assert _balance(c) == 2000  # the failed payout's commissions are back in the balance
    # The next run asks the provider about a (found: recorded, not paid again) and pays b.
    assert execution.execute_batch(batch_id, rail=LedgerRail(get_settings().payouts)) == {"paid": 2}
    assert _ledger() == {a: [2000], b: [2000]}
    with session_scope() as s:
        assert s.get(PayoutBatch, batch_id).status == "partially_paid"
        assert s.execute(select(func.count()).select_from(Message).where(Message.kind == "payout_failed")).scalar() == 1


def test_nobody_answering_the_approval_expires_the_batch_and_pays_nothing(configure):
    configure(payout_approval_above_minor=0, payout_approval_timeout_seconds=1)
    a = make_partner(1)
    add_conversions([{"partner_id": a, "amount_minor": 20000, "external_id": "a"}])
    compute_commissions(now=after_lock())
    assert isinstance(run_deployed(run_payout_batch, {"period_end": after_lock().isoformat()}), WaitingForPerson)
    time.sleep(1.2)
    assert len(expire_unanswered_approvals()["expired"]) == 1
    with session_scope() as s:
        assert s.exec(select(PayoutBatch)).one()[0].status == "expired"
    assert _ledger() == {} and _balance(a) == 2000


def test_details_changed_after_approval_are_not_paid_until_their_hold_ends():
    from partnerflow.models.onboarding import Onboarding

    batch_id, (a, b, c) = _approved()
    with session_scope() as s:  # a's payout details changed on the onboarding form after the approval
        s.add(Onboarding(partner_id=a, token_hash="changed-after-approval", tax_form_kind="W-9",
                         expires_at=utcnow(), payout_hold_since=utcnow()))
    counts = execution.execute_batch(batch_id)
    assert _ledger() == {b: [2000], c: [2000]} and counts["paid"] == 2
    assert _balance(a) == 2000  # back in the balance for a later batch
    with session_scope() as s:
        payout = s.execute(select(Payout).where(Payout.partner_id == a)).scalar_one()
        assert payout.status == "held" and "held until a person confirms" in payout.error
        assert s.execute(select(AuditLog).where(AuditLog.action == "payout.held_before_paying")).scalar_one()
    execution.execute_batch(batch_id)  # a re-run pays nobody twice and does not hold anyone again
    assert _ledger() == {b: [2000], c: [2000]}
