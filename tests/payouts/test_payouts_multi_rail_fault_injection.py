"""Exactly once across rails: a batch paying some partners on the ledger and others through Stripe (each
the method they chose) is SIGKILLed in either rail's part, then run again or resumed by the recovery sweep.

Same kill points as test_payouts_fault_injection.py (tasks/shared/faults.py); they count arrivals over the
whole process, and the ledger's part is paid first (rails in name order), so the later numbers land in
Stripe's part. Each provider's own record (the ledger's table, the Stripe fake's transfers) must show every
one of its partners paid exactly once, for exactly its payout; no partner appears on the other rail.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from factories import add_conversions, after_lock, make_partner
from sqlalchemy import func
from sqlmodel import select

from partnerflow.models import Commission, Payout, PayoutBatch, session_scope
from partnerflow.models.payouts import LedgerTransfer
from partnerflow.secrets import encrypt
from partnerflow.tasks.payouts import batches as engine
from partnerflow.tasks.payouts.commissions import compute_commissions
from partnerflow.tasks.shared.faults import KILL_AT, TEST_SWITCH, armed
from partnerflow.testing.stripe import API_KEY, FakeStripe

ON_LEDGER = (1, 2, 3, 4)
ON_STRIPE = (5, 6, 7, 8)

EXECUTE = """
import sys
import partnerflow.tasks.payouts.execution as execution
execution.CLAIM_CHUNK = 3
print(execution.execute_batch(int(sys.argv[1]), lease_seconds=0))
"""

RECOVER = """
import partnerflow.tasks.payouts.execution as execution
execution.CLAIM_CHUNK = 3
from partnerflow.tasks.payouts.recovery import recover_open_batches
print(recover_open_batches())
"""


def _run(script: str, batch_id: int, kill_at: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in (KILL_AT, TEST_SWITCH)}
    if kill_at:
        env.update(armed(f"payouts.{kill_at}"))
    return subprocess.run([sys.executable, "-c", script, str(batch_id)], env=env, capture_output=True, text=True,
                          timeout=180)


@pytest.fixture
def stripe(configure):
    with FakeStripe(accounts=tuple(f"acct_p{i}" for i in ON_STRIPE)) as fake:
        configure(payout_rail="ledger", payout_rails_enabled="ledger,stripe", stripe_api_key=API_KEY,
                  stripe_api_host=fake.url, payout_http_timeout_seconds=10, payout_claim_lease_seconds=0)
        yield fake


def _approved_batch() -> int:
    partners = [make_partner(i, payout_method="ledger") for i in ON_LEDGER]
    partners += [make_partner(i, payout_method="stripe",
                              payout_details_encrypted=encrypt(json.dumps({"stripe_account_id": f"acct_p{i}"})))
                 for i in ON_STRIPE]
    add_conversions([{"partner_id": p, "amount_minor": 10000 + 37 * p + k, "external_id": f"s{p}-{k}"}
                     for p in partners for k in range(2)])
    compute_commissions(now=after_lock())
    batch_id = engine.build_batch(after_lock())
    engine.decide_batch(batch_id, approve=True, actor="test")
    with session_scope() as s:
        assert s.get(PayoutBatch, batch_id).summary["rails"] == {"ledger": 4, "stripe": 4}
    return batch_id


def _assert_each_rail_paid_exactly_once(stripe: FakeStripe, batch_id: int) -> None:
    with session_scope() as s:
        payouts = {p.partner_id: (p.rail, p.amount_minor, p.idempotency_key, p.status)
                   for p in s.exec(select(Payout).where(Payout.batch_id == batch_id)).all()}
        ledger = s.exec(select(LedgerTransfer.partner_id, LedgerTransfer.amount_minor)).all()
        paid = dict(s.exec(select(Commission.partner_id, func.sum(Commission.amount_minor))
                           .where(Commission.status == "paid").group_by(Commission.partner_id)).all())
        status = s.get(PayoutBatch, batch_id).status
    by_id = {p: (amount, key) for p, (_rail, amount, key, _status) in payouts.items()}
    assert {p: rail for p, (rail, *_rest) in payouts.items()} == {
        **dict.fromkeys(ON_LEDGER, "ledger"), **dict.fromkeys(ON_STRIPE, "stripe")}
    assert sorted(pid for pid, _ in ledger) == list(ON_LEDGER)  # once each, and no Stripe partner on the ledger
    assert dict(ledger) == {p: by_id[p][0] for p in ON_LEDGER}
    transfers = sorted((t["transfer_group"], t["amount"], t["destination"]) for t in stripe.transfers.values())
    assert transfers == sorted((by_id[p][1], by_id[p][0], f"acct_p{p}") for p in ON_STRIPE)  # once each
    assert {p: int(v) for p, v in paid.items()} == {p: amount for p, (amount, _key) in by_id.items()}
    assert all(s == "paid" for *_rest, s in payouts.values()) and status == "paid"


@pytest.mark.parametrize("kill_at", [
    "before_call:2",  # the ledger's part
    "after_record:1",  # the ledger's first chunk recorded
    "after_accept:5",  # Stripe accepted its first payout, not recorded
    "before_call:7",  # in Stripe's part, after one Stripe chunk's call
    "after_record:3",  # Stripe's first chunk recorded, its second not sent
])
def test_a_batch_spanning_rails_killed_in_either_part_pays_each_partner_once(stripe, kill_at):
    batch_id = _approved_batch()
    killed = _run(EXECUTE, batch_id, kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    finished = _run(EXECUTE, batch_id, None)
    assert finished.returncode == 0, finished.stderr[-2000:]
    _assert_each_rail_paid_exactly_once(stripe, batch_id)


def test_killed_again_and_again_then_resumed_by_the_sweep_pays_each_partner_once(stripe):
    batch_id = _approved_batch()
    for kill_at in ("after_accept:6", "before_call:1", "after_accept:2", "after_record:2"):
        result = _run(EXECUTE, batch_id, kill_at)
        assert result.returncode in (0, -signal.SIGKILL), result.stderr[-2000:]
    swept = _run(RECOVER, batch_id, None)
    assert swept.returncode == 0, swept.stderr[-2000:]
    _assert_each_rail_paid_exactly_once(stripe, batch_id)


def test_the_sweep_killed_mid_batch_then_run_again_pays_each_partner_once(stripe):
    batch_id = _approved_batch()
    killed = _run(RECOVER, batch_id, "after_accept:6")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    swept = _run(RECOVER, batch_id, None)
    assert swept.returncode == 0, swept.stderr[-2000:]
    _assert_each_rail_paid_exactly_once(stripe, batch_id)
