"""Stripe Connect rail against a local fake speaking Stripe's wire format: paid exactly once, whatever fails."""

from __future__ import annotations

import pytest

from partnerflow.providers.errors import AmbiguousError, PermanentError, RetryableError
from partnerflow.providers.payout import get_payout_rail
from partnerflow.providers.payout.base import PayoutInstruction
from partnerflow.providers.payout.stripe import StripeRail
from partnerflow.settings import get_settings
from partnerflow.testing.stripe import API_KEY, FakeStripe


@pytest.fixture
def stripe(configure):
    with FakeStripe() as fake:
        configure(payout_rail="stripe", stripe_api_key=API_KEY, stripe_api_host=fake.url,
                  payout_http_timeout_seconds=0.5)
        yield fake


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def rail(stripe, sleeps):
    rail = StripeRail(get_settings().payouts, sleep=sleeps.append, attempts=4)
    yield rail
    rail.close()


def instruction(payout_id: int = 7, amount_minor: int = 12345, *, account: str = "acct_partner_one",
                currency: str = "EUR") -> PayoutInstruction:
    return PayoutInstruction(payout_id=payout_id, idempotency_key=f"payout:{payout_id}", partner_id=3,
                             partner_name="Partner", partner_email="p@example.com", amount_minor=amount_minor,
                             currency=currency, destination={"stripe_account_id": account})


def test_transfer_speaks_stripe_and_is_paid(stripe):
    rail = get_payout_rail(get_settings().payouts)
    assert isinstance(rail, StripeRail)
    result = rail.pay(instruction())
    assert result.status == "paid" and result.provider_ref.startswith("tr_")
    [transfer] = stripe.transfers.values()
    assert transfer["amount"] == 12345 and transfer["currency"] == "eur"  # minor units, lower-case currency
    assert transfer["destination"] == "acct_partner_one"
    assert transfer["metadata"] == {"payout_id": "7", "partner_id": "3"}
    assert transfer["transfer_group"] == "payout:7"
    assert [r["key"] for r in stripe.requests] == ["payout:7"]  # Idempotency-Key header = our payout key


def test_paying_again_finds_the_transfer_even_after_stripe_forgot_the_key(rail, stripe):
    first = rail.pay(instruction())
    stripe.forget_idempotency_keys()  # more than 24 hours later
    assert rail.pay(instruction()) == first
    assert rail.lookup("payout:7") == first
    assert rail.lookup("payout:8") is None
    assert len(stripe.transfers) == 1 and len(stripe.requests) == 1


def test_rate_limit_waits_as_told(rail, stripe, sleeps):
    stripe.faults.fail_next(429, times=2, retry_after=3)
    assert rail.pay(instruction()).status == "paid"
    assert sleeps == [3.0, 3.0]
    assert len(stripe.transfers) == 1


def test_server_errors_are_retried_then_reported_retryable(rail, stripe, sleeps):
    stripe.faults.fail_next(503, times=2)
    assert rail.pay(instruction(1)).status == "paid"
    stripe.faults.fail_next(503, times=4)
    with pytest.raises(RetryableError) as err:
        rail.pay(instruction(2))
    assert not isinstance(err.value, AmbiguousError)  # 503 means nothing was done
    assert len(stripe.transfers) == 1


def test_accepted_then_timeout_is_retried_with_the_same_key_and_pays_once(rail, stripe):
    stripe.faults.stall_next(1.5, after_effect=True)  # Stripe creates the transfer, we time out (0.5 s)
    result = rail.pay(instruction())
    assert result.status == "paid"
    assert len(stripe.transfers) == 1
    assert [r["key"] for r in stripe.requests] == ["payout:7", "payout:7"]
    assert result.provider_ref == next(iter(stripe.transfers))


def test_no_answer_at_all_is_resolved_from_stripes_record(rail, stripe):
    stripe.faults.stall_next(1.5, after_effect=True, times=4)  # every attempt times out, the first one paid
    result = rail.pay(instruction())
    assert result.status == "paid" and len(stripe.transfers) == 1


def test_timeout_before_stripe_acted_is_ambiguous_and_pays_nothing(rail, stripe):
    stripe.faults.stall_next(1.5, after_effect=False, times=4)
    with pytest.raises(AmbiguousError):
        rail.pay(instruction())
    assert stripe.transfers == {}
    assert rail.pay(instruction()).status == "paid"  # the next run pays, once
    assert len(stripe.transfers) == 1


def test_refusals_are_permanent(rail, stripe):
    with pytest.raises(PermanentError, match="No such destination"):
        rail.pay(instruction(account="acct_unknown"))
    with pytest.raises(PermanentError, match="connected account"):
        rail.pay(PayoutInstruction(payout_id=9, idempotency_key="payout:9", partner_id=1, partner_name="P",
                                   partner_email="p@example.com", amount_minor=100, currency="USD",
                                   destination={"iban": "DE89370400440532013000"}))
    assert stripe.transfers == {}


def test_a_different_amount_under_the_same_payout_key_is_refused(rail, stripe):
    from partnerflow.providers.payout.base import PaymentMismatch

    rail.pay(instruction(amount_minor=100))
    with pytest.raises(PaymentMismatch, match="another amount"):  # moved, not as asked: a person decides
        rail.pay(instruction(amount_minor=999))
    [transfer] = stripe.transfers.values()
    assert transfer["amount"] == 100


def test_stripe_rejects_a_reused_key_with_other_parameters(rail, stripe):
    # Our lookup-first path normally catches this; Stripe's own check is the second line.
    rail.pay(instruction(amount_minor=100))
    stripe.transfers.clear()  # hide the transfer from the lookup so the request reaches Stripe's key check
    with pytest.raises(PermanentError, match="different parameters"):
        rail.pay(instruction(amount_minor=999))
    assert stripe.transfers == {}


def test_bad_api_key_is_permanent(configure, stripe):
    configure(stripe_api_key="sk_test_wrong")
    with pytest.raises(PermanentError, match="API key"):
        StripeRail(get_settings().payouts).pay(instruction())
    assert stripe.transfers == {}


def test_the_payout_batch_flow_pays_each_partner_once_through_stripe(stripe, outbox, configure):
    configure(payout_approval_above_minor=10**12)  # the team lets policy approve every batch
    import json

    from factories import add_conversions, after_lock, make_partner

    from partnerflow.flows.payouts import run_payout_batch
    from partnerflow.secrets import encrypt
    from partnerflow.tasks.payouts.commissions import compute_commissions

    one = make_partner(1, payout_method="stripe",
                       payout_details_encrypted=encrypt(json.dumps({"stripe_account_id": "acct_partner_one"})))
    two = make_partner(2, payout_method="stripe",
                       payout_details_encrypted=encrypt(json.dumps({"stripe_account_id": "acct_partner_two"})))
    add_conversions([{"partner_id": one, "amount_minor": 100000, "external_id": "a"},
                     {"partner_id": two, "amount_minor": 55555, "external_id": "b"}])
    compute_commissions(now=after_lock())
    stripe.faults.stall_next(1.5, after_effect=True)  # the first transfer is made, its answer lost
    result = run_payout_batch(period_end=after_lock().isoformat())
    assert result["status"] == "paid" and result["paid"] == 2
    amounts = sorted((t["destination"], t["amount"], t["currency"]) for t in stripe.transfers.values())
    assert amounts == [("acct_partner_one", 10000, "usd"), ("acct_partner_two", 5556, "usd")]  # 10%, half-even
    again = run_payout_batch(period_end=after_lock().isoformat())
    assert again["batch_id"] == result["batch_id"] and len(stripe.transfers) == 2
    assert len(list(outbox.glob("*.eml"))) == 2  # one remittance each


def test_two_workers_paying_the_same_payout_at_once_make_one_transfer(stripe):
    import threading

    results, barrier = [], threading.Barrier(2)

    def worker():
        rail = StripeRail(get_settings().payouts, sleep=lambda s: None)
        barrier.wait()
        results.append(rail.pay(instruction()))
        rail.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 2 and results[0] == results[1]
    assert len(stripe.transfers) == 1
