"""Money that moved, but not as we asked, is never recorded as failed: the payout waits for a person
with its commissions attached (so no later batch pays them again), the team is mailed, and a person
resolves it from the command line."""

from __future__ import annotations

import json

import pytest
from factories import add_conversions, after_lock, make_partner, make_payout
from sqlalchemy import update
from sqlmodel import select
from typer.testing import CliRunner

from partnerflow.cli import _register, app
from partnerflow.models import AuditLog, Commission, Payout, PayoutBatch, session_scope
from partnerflow.models.payouts import LedgerTransfer
from partnerflow.secrets import encrypt
from partnerflow.status import collect_status
from partnerflow.tasks.payouts import batches as engine
from partnerflow.tasks.payouts.batches import batch_with_payouts
from partnerflow.tasks.payouts.commissions import compute_commissions
from partnerflow.tasks.payouts.execution import execute_batch
from partnerflow.tasks.payouts.reports import batch_summary
from partnerflow.testing.stripe import API_KEY, FakeStripe

_register()


@pytest.fixture
def stripe(configure):
    with FakeStripe(accounts=("acct_p1", "acct_p2", "acct_other")) as fake:
        configure(payout_rail="stripe", stripe_api_key=API_KEY, stripe_api_host=fake.url,
                  payout_http_timeout_seconds=10)
        yield fake


def _approved_stripe_batch() -> int:
    partners = [make_partner(i, payout_method="stripe",
                             payout_details_encrypted=encrypt(json.dumps({"stripe_account_id": f"acct_p{i}"})))
                for i in (1, 2)]
    add_conversions([{"partner_id": p, "amount_minor": 20000 + p, "external_id": f"s{p}"} for p in partners])
    compute_commissions(now=after_lock())
    batch_id = engine.build_batch(after_lock())
    engine.decide_batch(batch_id, approve=True, actor="test")
    return batch_id


def _payout(batch_id: int, partner_id: int) -> Payout:
    with session_scope() as s:
        row = s.exec(select(Payout).where(Payout.batch_id == batch_id, Payout.partner_id == partner_id)).one()
        s.expunge(row)
        return row


def _commissions(partner_id: int) -> list[Commission]:
    with session_scope() as s:
        rows = s.exec(select(Commission).where(Commission.partner_id == partner_id)).all()
        for r in rows:
            s.expunge(r)
        return rows


def _plant_transfer(stripe: FakeStripe, key: str, *, amount: int, destination: str) -> None:
    """Stripe already holds a transfer under our payout's key, not as we would ask (another amount or account)."""
    stripe.transfers["tr_planted"] = {"id": "tr_planted", "object": "transfer", "amount": amount, "currency": "usd",
                                      "destination": destination, "transfer_group": key, "reversed": False,
                                      "amount_reversed": 0, "metadata": {}, "created": 0, "livemode": False}


@pytest.mark.parametrize("planted", [{"amount": 1}, {"destination": "acct_other"}])
def test_a_transfer_that_differs_from_ours_needs_review_and_keeps_its_commissions(stripe, outbox, planted):
    batch_id = _approved_stripe_batch()
    odd = _payout(batch_id, 1)
    _plant_transfer(stripe, odd.idempotency_key, **{"amount": odd.amount_minor, "destination": "acct_p1", **planted})

    execute_batch(batch_id)

    odd = _payout(batch_id, 1)
    assert odd.status == "needs_review" and "not paying again" in odd.error
    assert [t["id"] for t in stripe.transfers_for_group(odd.idempotency_key)] == ["tr_planted"]  # nothing re-sent
    assert all(c.payout_id == odd.id and c.status == "payable" for c in _commissions(1))  # still attached
    assert _payout(batch_id, 2).status == "paid"
    with session_scope() as s:
        assert s.get(PayoutBatch, batch_id).status == "approved"  # open until a person decides
        [entry] = s.exec(select(AuditLog).where(AuditLog.action == "payout.needs_review")).all()
        assert entry.subject_id == str(odd.id) and "evidence" in entry.details
        assert "acct_" not in json.dumps(entry.details)  # payout details are shown masked, never in clear
    mails = [p.read_text() for p in outbox.glob("*.eml")]
    assert any(f"Payout {odd.id} to" in m and "needs a person" in m for m in mails)
    assert collect_status()["payouts_needing_review"] == 1
    batch, payouts = batch_with_payouts(batch_id)
    assert "1 payouts need review" in batch_summary(batch, payouts)

    # The next batch does not pay the same commissions again.
    later = engine.build_batch(after_lock(40))
    assert all(p.partner_id != 1 for p in batch_with_payouts(later)[1])


def test_a_person_resolves_a_payout_that_needs_review(stripe):
    batch_id = _approved_stripe_batch()
    odd = _payout(batch_id, 1)
    _plant_transfer(stripe, odd.idempotency_key, amount=1, destination="acct_p1")
    execute_batch(batch_id)

    runner = CliRunner()
    refused = runner.invoke(app, ["payouts", "resolve", str(_payout(batch_id, 2).id), "--paid", "--by", "ana"])
    assert refused.exit_code == 1 and "not waiting for review" in refused.output
    assert runner.invoke(app, ["payouts", "resolve", str(odd.id), "--by", "ana"]).exit_code == 2  # which way?

    done = runner.invoke(app, ["payouts", "resolve", str(odd.id), "--failed", "--by", "ana", "--note", "bank says no"])
    assert done.exit_code == 0, done.output
    assert _payout(batch_id, 1).status == "failed"
    assert all(c.payout_id is None and c.status == "payable" for c in _commissions(1))  # back to the balance
    with session_scope() as s:
        assert s.get(PayoutBatch, batch_id).status == "partially_paid"
        [entry] = s.exec(select(AuditLog).where(AuditLog.action == "payout.resolved")).all()
        assert entry.actor == "ana" and entry.details["as"] == "failed"
    assert runner.invoke(app, ["payouts", "resolve", str(odd.id), "--paid", "--by", "ana"]).exit_code == 1


def test_resolved_as_paid_pays_its_commissions(stripe):
    batch_id = _approved_stripe_batch()
    odd = _payout(batch_id, 1)
    _plant_transfer(stripe, odd.idempotency_key, amount=1, destination="acct_p1")
    execute_batch(batch_id)
    assert CliRunner().invoke(app, ["payouts", "resolve", str(odd.id), "--paid", "--by", "ana"]).exit_code == 0
    assert _payout(batch_id, 1).status == "paid"
    assert all(c.status == "paid" for c in _commissions(1))
    with session_scope() as s:
        assert s.get(PayoutBatch, batch_id).status == "paid"


def test_a_recovered_payout_whose_ledger_record_differs_needs_review():
    partner = make_partner(1)
    payout_id = make_payout(partner, rail="ledger", amount_minor=5000, currency="USD")
    with session_scope() as s:
        payout = s.get(Payout, payout_id)
        s.execute(update(Payout).where(Payout.id == payout_id).values(attempts=1, claimed_at=None))
        s.add(LedgerTransfer(idempotency_key=payout.idempotency_key, payout_id=payout_id, partner_id=partner,
                             amount_minor=4000, currency="USD"))
        batch_id = payout.batch_id
    execute_batch(batch_id, lease_seconds=0)
    with session_scope() as s:
        payout = s.get(Payout, payout_id)
        assert payout.status == "needs_review" and "amount_minor" in payout.error
        assert s.exec(select(Commission.payout_id).where(Commission.partner_id == partner)).all() == [payout_id]
