"""The recovery sweep resumes every open batch by its id; PayPal payouts are never re-sent past its dedup window."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from factories import add_conversions, after_lock, make_partner, make_payout
from sqlalchemy import update
from sqlmodel import select

from partnerflow.flows.payouts_recovery import recover_payout_batches
from partnerflow.models import AuditLog, Payout, PayoutBatch, session_scope, utcnow
from partnerflow.models.payouts import LedgerTransfer
from partnerflow.secrets import encrypt
from partnerflow.tasks.payouts import batches as engine
from partnerflow.tasks.payouts import recovery
from partnerflow.tasks.payouts.commissions import compute_commissions
from partnerflow.tasks.payouts.execution import execute_batch
from partnerflow.testing.paypal import CLIENT_ID, CLIENT_SECRET, FakePayPal


def _set(payout_id: int, **values) -> None:
    with session_scope() as s:
        s.execute(update(Payout).where(Payout.id == payout_id).values(**values))


def _status(payout_id: int) -> str:
    with session_scope() as s:
        return s.get(Payout, payout_id).status


def _batch(payout_id: int) -> PayoutBatch:
    with session_scope() as s:
        batch = s.get(PayoutBatch, s.get(Payout, payout_id).batch_id)
        s.expunge(batch)
        return batch


def test_the_sweep_pays_what_an_earlier_run_left_to_retry_or_ambiguous_and_remits_it(outbox):
    partners = [make_partner(i) for i in (1, 2)]
    add_conversions([{"partner_id": p, "amount_minor": 30000 + p, "external_id": f"s{p}"} for p in partners])
    compute_commissions(now=after_lock())
    batch_id = engine.build_batch(after_lock())  # a period end nobody has to remember
    engine.decide_batch(batch_id, approve=True, actor="test")
    with session_scope() as s:
        retry, ambiguous = s.exec(select(Payout.id).where(Payout.batch_id == batch_id).order_by(Payout.id)).all()
    # What the last pass of the batch run left: one told to retry, one sent with no answer (claim released).
    _set(retry, status="pending", attempts=1, error="PayPal: HTTP 503", first_sent_at=utcnow())
    _set(ambiguous, status="sending", attempts=1, claimed_at=None, error="no answer", first_sent_at=utcnow())

    result = recover_payout_batches()

    assert [r["batch_id"] for r in result["resumed"]] == [batch_id]
    assert _status(retry) == _status(ambiguous) == "paid"
    assert _batch(retry).status == "paid"
    with session_scope() as s:
        assert len(s.exec(select(LedgerTransfer)).all()) == 2  # the rail's record: each paid once
        assert s.exec(select(AuditLog).where(AuditLog.action == "payout_batch.resumed")).first() is not None
    assert len([p for p in outbox.glob("*.eml") if "payout" in p.read_text().lower()]) >= 2  # remittances
    assert recovery.open_batches() == []
    assert recover_payout_batches()["resumed"] == []  # nothing left: a second sweep does nothing


def test_a_payout_without_a_clear_answer_for_a_day_is_mailed_to_the_team_once(outbox):
    partner = make_partner(1)
    payout_id = make_payout(partner, rail="ledger", currency="USD")
    _set(payout_id, first_sent_at=utcnow() - timedelta(hours=30), error="Stripe transfer: no answer (ReadTimeout)")
    recent = make_payout(make_partner(2), rail="ledger", currency="USD")
    _set(recent, first_sent_at=utcnow() - timedelta(hours=1))

    assert recovery.alert_unclear() == [payout_id]
    assert recovery.alert_unclear() == [payout_id]  # still unclear, but the mail went once
    mails = [p.read_text() for p in outbox.glob("*.eml")]
    assert len(mails) == 1 and f"payout {payout_id}" in mails[0] and "ReadTimeout" in mails[0]


@pytest.fixture
def paypal(configure):
    with FakePayPal() as fake:
        configure(payout_rail="paypal", paypal_client_id=CLIENT_ID, paypal_client_secret=CLIENT_SECRET,
                  paypal_api_host=fake.url, payout_http_timeout_seconds=10)
        yield fake


def _paypal_payout(age: timedelta) -> int:
    partner = make_partner(1, payout_method="paypal",
                           payout_details_encrypted=encrypt(json.dumps({"paypal_email": "p1@example.com"})))
    payout_id = make_payout(partner, rail="paypal", currency="USD")
    # Sent once, and the answer never came (no payout_batch_id recorded): only a re-send could find it.
    _set(payout_id, attempts=1, claimed_at=None, provider_ref=None, first_sent_at=utcnow() - age,
         error="PayPal payout: no answer (ReadTimeout)")
    return payout_id


def test_a_paypal_payout_with_an_unknown_outcome_is_never_resent_past_the_dedup_window(paypal, outbox):
    payout_id = _paypal_payout(timedelta(days=31))
    execute_batch(_batch(payout_id).id)
    assert paypal.create_requests == 0  # PayPal would no longer recognise the sender_batch_id: never sent again
    with session_scope() as s:
        payout = s.get(Payout, payout_id)
        assert payout.status == "needs_review" and "could pay twice" in payout.error
        [entry] = s.exec(select(AuditLog).where(AuditLog.action == "payout.needs_review")).all()
        assert entry.details["evidence"]["last_error"] == "PayPal payout: no answer (ReadTimeout)"
    assert any("needs a person" in p.read_text() for p in outbox.glob("*.eml"))


def test_within_the_window_the_same_sender_batch_id_is_sent_again(paypal):
    payout_id = _paypal_payout(timedelta(days=2))
    execute_batch(_batch(payout_id).id)
    assert paypal.create_requests == 1
    with session_scope() as s:
        payout = s.get(Payout, payout_id)
        assert payout.status == "processing" and payout.provider_ref
    assert len(paypal.items_for(payout.idempotency_key)) == 1


def test_a_batch_is_paid_through_the_rail_it_was_built_for_even_after_the_setting_changed(configure):
    partner = make_partner(1)
    add_conversions([{"partner_id": partner, "amount_minor": 30000, "external_id": "s1"}])
    compute_commissions(now=after_lock())
    batch_id = engine.build_batch(after_lock())  # built for the ledger rail
    engine.decide_batch(batch_id, approve=True, actor="test")
    configure(payout_rail="stripe", stripe_api_key="sk_test_unused", stripe_api_host="http://127.0.0.1:9")
    assert execute_batch(batch_id) == {"paid": 1}
    with session_scope() as s:
        assert len(s.exec(select(LedgerTransfer)).all()) == 1
