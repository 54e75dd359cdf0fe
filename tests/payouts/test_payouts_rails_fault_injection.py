"""Exactly once through the SaaS rails: the payout process is SIGKILLed mid-batch, then run again.

The same kill points as test_payouts_fault_injection.py (payouts.*, tasks/shared/faults.py),
but the provider is a local Stripe or PayPal fake running in this test process, so "the provider's
own record" is what Stripe / PayPal would hold: every partner must appear in it exactly once, with
exactly the amount of its payout. (PayPal results are "processing" until polled, so its runs have no
after_record point: the engine records nothing final for them.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from decimal import Decimal

import pytest
from factories import add_conversions, after_lock, make_partner
from sqlmodel import select

from partnerflow.models import Payout, PayoutBatch, session_scope
from partnerflow.secrets import encrypt
from partnerflow.settings import get_settings
from partnerflow.tasks.payouts import batches as engine
from partnerflow.tasks.payouts.commissions import compute_commissions
from partnerflow.tasks.payouts.reconcile import poll_paypal
from partnerflow.tasks.shared.faults import KILL_AT, TEST_SWITCH, armed
from partnerflow.testing.paypal import CLIENT_ID, CLIENT_SECRET, FakePayPal
from partnerflow.testing.stripe import API_KEY, FakeStripe

N_PARTNERS = 8

RUN = """
import sys
import partnerflow.tasks.payouts.execution as execution
execution.CLAIM_CHUNK = 3
print(execution.execute_batch(int(sys.argv[1]), lease_seconds=0))
"""


def _run(batch_id: int, kill_at: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in (KILL_AT, TEST_SWITCH)}
    if kill_at:
        env.update(armed(f"payouts.{kill_at}"))
    return subprocess.run([sys.executable, "-c", RUN, str(batch_id)], env=env, capture_output=True, text=True,
                          timeout=180)


def _approved_batch(details) -> int:
    method = get_settings().payouts.payout_rail  # each partner chose the rail under test
    partners = [make_partner(i, payout_method=method, payout_details_encrypted=encrypt(json.dumps(details(i))))
                for i in range(1, N_PARTNERS + 1)]
    add_conversions([{"partner_id": p, "amount_minor": 10000 + 37 * p + k, "external_id": f"s{p}-{k}"}
                     for p in partners for k in range(2)])
    compute_commissions(now=after_lock())
    batch_id = engine.build_batch(after_lock())
    engine.decide_batch(batch_id, approve=True, actor="test")
    return batch_id


def _payouts(batch_id: int) -> list[Payout]:
    with session_scope() as s:
        rows = s.exec(select(Payout).where(Payout.batch_id == batch_id)).all()
        for r in rows:
            s.expunge(r)
        return rows


def _batch_status(batch_id: int) -> str:
    with session_scope() as s:
        return s.get(PayoutBatch, batch_id).status


@pytest.fixture
def stripe(configure):
    with FakeStripe(accounts=tuple(f"acct_p{i}" for i in range(1, N_PARTNERS + 1))) as fake:
        configure(payout_rail="stripe", stripe_api_key=API_KEY, stripe_api_host=fake.url,
                  payout_http_timeout_seconds=10)
        yield fake


@pytest.fixture
def paypal(configure):
    with FakePayPal() as fake:
        configure(payout_rail="paypal", paypal_client_id=CLIENT_ID, paypal_client_secret=CLIENT_SECRET,
                  paypal_api_host=fake.url, payout_http_timeout_seconds=10)
        yield fake


def _assert_stripe_paid_once(stripe: FakeStripe, batch_id: int) -> None:
    payouts = _payouts(batch_id)
    assert len(payouts) == N_PARTNERS
    by_key: dict[str, list[dict]] = {}
    for t in stripe.transfers.values():
        by_key.setdefault(t["transfer_group"], []).append(t)
    assert sorted(by_key) == sorted(p.idempotency_key for p in payouts)
    for p in payouts:
        [transfer] = by_key[p.idempotency_key]  # exactly one transfer per payout
        assert transfer["amount"] == p.amount_minor and transfer["destination"] == f"acct_p{p.partner_id}"
        assert p.status == "paid" and p.provider_ref == transfer["id"]
    assert _batch_status(batch_id) == "paid"


@pytest.mark.parametrize("kill_at", ["before_call:2", "after_accept:1", "after_accept:5", "after_record:1"])
def test_stripe_sigkill_then_rerun_pays_every_partner_exactly_once(stripe, kill_at):
    batch_id = _approved_batch(lambda i: {"stripe_account_id": f"acct_p{i}"})
    killed = _run(batch_id, kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    finished = _run(batch_id, None)
    assert finished.returncode == 0, finished.stderr[-2000:]
    _assert_stripe_paid_once(stripe, batch_id)


def test_stripe_two_worker_processes_never_pay_twice(stripe):
    batch_id = _approved_batch(lambda i: {"stripe_account_id": f"acct_p{i}"})
    procs = [subprocess.Popen([sys.executable, "-c", RUN, str(batch_id)], env=dict(os.environ),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        _out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err[-2000:]
    _assert_stripe_paid_once(stripe, batch_id)


@pytest.mark.parametrize("kill_at", ["before_call:3", "after_accept:1", "after_accept:4"])
def test_paypal_sigkill_then_rerun_pays_every_partner_exactly_once(paypal, kill_at):
    batch_id = _approved_batch(lambda i: {"paypal_email": f"p{i}@example.com"})
    killed = _run(batch_id, kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    finished = _run(batch_id, None)
    assert finished.returncode == 0, finished.stderr[-2000:]
    poll_paypal()  # PayPal settles later; polling records it
    payouts = _payouts(batch_id)
    assert len(payouts) == N_PARTNERS
    for p in payouts:
        [item] = paypal.items_for(p.idempotency_key)  # exactly one PayPal payment per payout
        assert Decimal(item["payout_item"]["amount"]["value"]) * 100 == p.amount_minor
        assert item["payout_item"]["receiver"] == f"p{p.partner_id}@example.com"
        assert p.status == "paid"
    assert len(paypal.items()) == N_PARTNERS
    assert _batch_status(batch_id) == "paid"


# SEPA is paid a claimed chunk at a time (one bank file per chunk): kill inside the second chunk.
@pytest.mark.parametrize("kill_at", ["before_call:2", "after_accept:2"])
def test_sepa_sigkill_then_rerun_puts_every_partner_in_the_bank_files_once(configure, tmp_path, kill_at):
    from lxml import etree

    from partnerflow.providers.payout.sepa import NS, end_to_end_id, validate_pain001

    configure(payout_rail="sepa", sepa_debtor_iban="DE02120300000000202051", sepa_debtor_bic="BYLADEM1001",
              sepa_output_dir=tmp_path / "sepa")
    partners = [make_partner(i, payout_method="sepa", currency="EUR",
                             terms={"kind": "percentage", "rate": "0.10", "lock_days": 30, "currency": "EUR"},
                             payout_details_encrypted=encrypt(json.dumps({"iban": "DE89370400440532013000"})))
                for i in range(1, N_PARTNERS + 1)]
    add_conversions([{"partner_id": p, "amount_minor": 10000 + 37 * p, "currency": "EUR", "external_id": f"e{p}"}
                     for p in partners])
    compute_commissions(now=after_lock())
    batch_id = engine.build_batch(after_lock())
    engine.decide_batch(batch_id, approve=True, actor="test")
    killed = _run(batch_id, kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert _run(batch_id, None).returncode == 0
    payouts = _payouts(batch_id)
    in_files: list[tuple[str, str]] = []
    for path in sorted((tmp_path / "sepa").glob("pain001-*.xml")):
        validate_pain001(path.read_bytes())
        doc = etree.parse(str(path)).getroot()
        for tx in doc.iterfind(".//p:CdtTrfTxInf", {"p": NS}):
            in_files.append((tx.findtext("p:PmtId/p:EndToEndId", namespaces={"p": NS}),
                             tx.findtext("p:Amt/p:InstdAmt", namespaces={"p": NS})))
    expected = sorted((end_to_end_id(p.idempotency_key), str(Decimal(p.amount_minor).scaleb(-2))) for p in payouts)
    assert sorted(in_files) == expected  # every payout in exactly one bank file, with its exact amount
    assert all(p.status == "processing" for p in payouts) and len(payouts) == N_PARTNERS
