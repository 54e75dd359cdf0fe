"""PayPal Payouts rail against a local fake speaking PayPal's wire format: paid exactly once, polled to the end."""

from __future__ import annotations

import pytest
from factories import commissions_of, make_payout, partner_with_payout_details, payout_row

from partnerflow.providers.errors import AmbiguousError, PermanentError, RetryableError
from partnerflow.providers.payout import get_payout_rail
from partnerflow.providers.payout.base import PayoutInstruction
from partnerflow.providers.payout.paypal import PayPalRail, format_amount
from partnerflow.settings import get_settings
from partnerflow.tasks.payouts.reconcile import poll_paypal
from partnerflow.tasks.shared.money import exponent
from partnerflow.testing.paypal import CLIENT_ID, CLIENT_SECRET, FakePayPal


@pytest.fixture
def paypal(configure):
    with FakePayPal() as fake:
        configure(payout_rail="paypal", paypal_client_id=CLIENT_ID, paypal_client_secret=CLIENT_SECRET,
                  paypal_api_host=fake.url, payout_http_timeout_seconds=0.5)
        yield fake


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def rail(paypal, sleeps):
    rail = PayPalRail(get_settings().payouts, sleep=sleeps.append)
    yield rail
    rail.close()


def instruction(key: str = "payout:1:7", amount_minor: int = 12345, *, currency: str = "USD",
                email: str = "partner@example.com", payout_id: int = 1) -> PayoutInstruction:
    return PayoutInstruction(payout_id=payout_id, idempotency_key=key, partner_id=7, partner_name="Partner",
                             partner_email="p@example.com", amount_minor=amount_minor, currency=currency,
                             destination={"paypal_email": email})


def test_payout_speaks_paypal_and_is_processing_until_polled(paypal):
    rail = get_payout_rail(get_settings().payouts)
    assert isinstance(rail, PayPalRail)
    result = rail.pay(instruction())
    assert result.status == "processing"
    [item] = paypal.items()
    assert item["payout_item"]["amount"] == {"value": "123.45", "currency": "USD"}
    assert item["payout_item"]["sender_item_id"] == "payout:1:7"
    assert item["payout_item"]["receiver"] == "partner@example.com"
    assert paypal.batches[result.provider_ref]["header"]["sender_batch_header"]["sender_batch_id"] == "payout:1:7"
    status = rail.status("payout:1:7", result.provider_ref)
    assert status.state == "paid" and status.transaction_id
    assert paypal.token_requests == 1  # the token is reused


def test_paying_again_reads_the_original_batch_instead_of_paying_twice(rail, paypal):
    first = rail.pay(instruction())
    second = rail.pay(instruction())  # PayPal refuses the reused sender_batch_id and points at the original
    assert second.provider_ref == first.provider_ref and second.status == "paid"
    assert len(paypal.items()) == 1 and paypal.create_requests == 2


def test_accepted_then_timeout_pays_once(rail, paypal):
    paypal.faults.stall_next(1.5, after_effect=True)  # PayPal creates the batch; we give up after 0.5 s
    result = rail.pay(instruction())
    assert len(paypal.items_for("payout:1:7")) == 1
    assert result.provider_ref in paypal.batches


def test_nothing_heard_at_all_is_ambiguous_and_the_next_run_pays_once(rail, paypal):
    paypal.faults.stall_next(1.5, after_effect=True, times=4)
    with pytest.raises(AmbiguousError):
        rail.pay(instruction())
    assert len(paypal.items()) == 1  # the first attempt went through
    assert rail.pay(instruction()).provider_ref in paypal.batches
    assert len(paypal.items()) == 1


def test_rate_limits_and_server_errors_are_retried(rail, paypal, sleeps):
    paypal.faults.fail_next(429, retry_after=2)
    paypal.faults.fail_next(503)
    assert rail.pay(instruction()).status == "processing"
    assert sleeps[0] == 2.0 and len(sleeps) == 2
    assert len(paypal.items()) == 1
    paypal.faults.fail_next(503, times=4)
    with pytest.raises(RetryableError):
        rail.pay(instruction("payout:1:8"))
    assert len(paypal.items()) == 1


def test_expired_token_is_renewed(rail, paypal):
    rail.pay(instruction())
    paypal.expire_tokens()
    rail.pay(instruction("payout:1:8"))
    assert paypal.token_requests == 2 and len(paypal.items()) == 2


def test_wrong_credentials_and_bad_details_are_permanent(configure, paypal):
    configure(paypal_client_secret="wrong")
    with pytest.raises(PermanentError, match="client credentials"):
        PayPalRail(get_settings().payouts).pay(instruction())
    configure(paypal_client_secret=CLIENT_SECRET)
    rail = PayPalRail(get_settings().payouts)
    with pytest.raises(PermanentError, match="PayPal email"):
        rail.pay(PayoutInstruction(payout_id=1, idempotency_key="payout:9", partner_id=1, partner_name="P",
                                   partner_email="p@example.com", amount_minor=100, currency="USD",
                                   destination={"iban": "DE89370400440532013000"}))
    with pytest.raises(PermanentError, match="VALIDATION_ERROR"):
        rail.pay(instruction(currency="US"))
    assert paypal.items() == []


def test_a_different_amount_under_the_same_key_is_refused(rail, paypal):
    from partnerflow.providers.payout.base import PaymentMismatch

    rail.pay(instruction(amount_minor=100))
    with pytest.raises(PaymentMismatch, match="another amount"):  # moved, not as asked: a person decides
        rail.pay(instruction(amount_minor=999))
    assert len(paypal.items()) == 1


def test_amounts_follow_the_currency_exponent():
    assert [exponent(c) for c in ("JPY", "USD", "KWD")] == [0, 2, 3]  # what the engine tells the rail
    assert format_amount(500, exponent("JPY")) == "500"
    assert format_amount(5, exponent("USD")) == "0.05"
    assert format_amount(1234567, exponent("KWD")) == "1234.567"


def test_polling_marks_payouts_paid_or_failed(paypal, outbox):
    rail = PayPalRail(get_settings().payouts)
    paypal.outcomes["gone@example.com"] = ("FAILED", "RECEIVER_ACCOUNT_LOCKED")
    good_partner = partner_with_payout_details(1, method="paypal", currency="USD")
    bad_partner = partner_with_payout_details(2, method="paypal", currency="USD")
    good = make_payout(good_partner, rail="paypal", currency="USD", status="sending")
    bad = make_payout(bad_partner, rail="paypal", currency="USD", status="sending")
    for payout_id, email in ((good, "partner@example.com"), (bad, "gone@example.com")):
        row = payout_row(payout_id)
        result = rail.pay(instruction(row.idempotency_key, row.amount_minor, email=email, payout_id=payout_id))
        from partnerflow.models import Payout, session_scope
        with session_scope() as session:  # what the batch executor records for a "processing" result
            payout = session.get(Payout, payout_id)
            payout.status, payout.provider_ref = "processing", result.provider_ref
    paypal.settle_on_read = False
    assert poll_paypal(rail=rail) == {"processing": 2}  # still PENDING at PayPal
    paypal.settle_on_read = True
    assert poll_paypal(rail=rail) == {"paid": 1, "failed": 1}
    assert payout_row(good).status == "paid"
    failed = payout_row(bad)
    assert failed.status == "failed" and "RECEIVER_ACCOUNT_LOCKED" in failed.error
    assert [c.payout_id for c in commissions_of(bad, bad_partner)] == [None]  # back in the balance
    assert poll_paypal(rail=rail) == {}  # nothing left to ask about
    assert rail.lookup(payout_row(good).idempotency_key, payout_row(good).provider_ref).status == "paid"
    assert rail.lookup("payout:never") is None


def test_the_payout_batch_flow_pays_through_paypal_once_and_polls_to_paid(paypal, outbox, configure):
    configure(payout_approval_above_minor=10**12)  # the team lets policy approve every batch
    import json

    from factories import add_conversions, after_lock
    from factories import make_partner as make_ready_partner

    from partnerflow.flows.payouts import run_payout_batch
    from partnerflow.secrets import encrypt
    from partnerflow.tasks.payouts.commissions import compute_commissions

    one = make_ready_partner(1, payout_method="paypal",
                             payout_details_encrypted=encrypt(json.dumps({"paypal_email": "one@example.com"})))
    two = make_ready_partner(2, payout_method="paypal",
                             payout_details_encrypted=encrypt(json.dumps({"paypal_email": "two@example.com"})))
    add_conversions([{"partner_id": one, "amount_minor": 100000, "external_id": "a"},
                     {"partner_id": two, "amount_minor": 55555, "external_id": "b"}])
    compute_commissions(now=after_lock())
    paypal.settle_on_read = False  # PayPal still working on it when the flow ends
    paypal.faults.stall_next(1.5, after_effect=True)  # the first batch is accepted, its answer lost
    result = run_payout_batch(period_end=after_lock().isoformat())
    assert result["status"] == "approved" and result["paid"] == 0  # processing at PayPal
    paid = sorted((i["payout_item"]["receiver"], i["payout_item"]["amount"]["value"]) for i in paypal.items())
    assert paid == [("one@example.com", "100.00"), ("two@example.com", "55.56")]
    paypal.settle_on_read = True
    assert poll_paypal() == {"paid": 2}
    again = run_payout_batch(period_end=after_lock().isoformat())
    assert again["status"] == "paid" and again["paid"] == 2
    assert len(paypal.items()) == 2  # nobody paid twice


def test_a_batch_paypal_does_not_know_is_never_read_as_failed(paypal):
    partner = partner_with_payout_details(1, method="paypal", currency="USD")
    payout_id = make_payout(partner, rail="paypal", currency="USD", status="processing", provider_ref="NOSUCHBATCH")
    assert poll_paypal(rail=PayPalRail(get_settings().payouts)) == {"unknown": 1}
    assert payout_row(payout_id).status == "processing"  # left for a person, never given back to the balance
