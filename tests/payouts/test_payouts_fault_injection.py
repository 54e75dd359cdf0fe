"""Exactly once, proved: the payout process is SIGKILLed inside a batch, then run again.

Kill points (tasks/shared/faults.py; armed only together with the test switch):
- payouts.after_claim:N   — the Nth chunk is claimed (every payout `sending`, key recorded), no rail called;
- payouts.before_call:N   — payout N is claimed (status `sending`, key recorded) but the rail was not called;
- payouts.after_accept:N  — the rail (provider) accepted payout N but we did not record it;
- payouts.before_record:N — every payout of the Nth chunk was accepted by the rail, none recorded yet;
- payouts.after_record:N  — the Nth chunk of payouts is recorded paid, the process dies before the next chunk.
After each kill the batch is executed again (and again, with another kill, until it completes).
The provider's own record (the ledger rail's table) must show every partner paid exactly once,
for exactly the amount of the commissions attached to its payout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from factories import add_conversions, after_lock, make_partner
from sqlalchemy import func, select

from partnerflow.models import Commission, Payout, PayoutBatch, session_scope
from partnerflow.models.payouts import LedgerTransfer
from partnerflow.tasks.payouts import batches as engine
from partnerflow.tasks.payouts.commissions import compute_commissions
from partnerflow.tasks.shared.faults import KILL_AT, TEST_SWITCH, armed

N_PARTNERS = 12

RUN = """
import sys
import partnerflow.tasks.payouts.execution as execution
execution.CLAIM_CHUNK = 5
print(execution.execute_batch(int(sys.argv[1]), lease_seconds=0))
"""


def _run(batch_id: int, kill_at: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in (KILL_AT, TEST_SWITCH)}
    if kill_at:
        env.update(armed(f"payouts.{kill_at}"))
    return subprocess.run([sys.executable, "-c", RUN, str(batch_id)], env=env, capture_output=True, text=True,
                          timeout=120)


def _approved_batch() -> int:
    partners = [make_partner(i) for i in range(1, N_PARTNERS + 1)]
    add_conversions([{"partner_id": p, "amount_minor": 10000 + 37 * p + k, "external_id": f"s{p}-{k}"}
                     for p in partners for k in range(3)])
    compute_commissions(now=after_lock())
    batch_id = engine.build_batch(after_lock())
    engine.decide_batch(batch_id, approve=True, actor="test")
    return batch_id


def _assert_paid_exactly_once(batch_id: int) -> None:
    with session_scope() as s:
        transfers = s.execute(select(LedgerTransfer.partner_id, LedgerTransfer.amount_minor,
                                     LedgerTransfer.idempotency_key)).all()
        payouts = s.execute(select(Payout).where(Payout.batch_id == batch_id)).scalars().all()
        attached = dict(s.execute(select(Commission.partner_id, func.sum(Commission.amount_minor))
                                  .where(Commission.status == "paid").group_by(Commission.partner_id)).all())
        earned = dict(s.execute(select(Commission.partner_id, func.sum(Commission.amount_minor))
                                .group_by(Commission.partner_id)).all())
        status = s.get(PayoutBatch, batch_id).status
    assert len(payouts) == N_PARTNERS
    per_partner = {}
    for pid, amount, _key in transfers:
        assert pid not in per_partner, f"partner {pid} paid twice"
        per_partner[pid] = amount
    assert per_partner == {p.partner_id: p.amount_minor for p in payouts}  # provider record == our record
    assert per_partner == {k: int(v) for k, v in attached.items()} == {k: int(v) for k, v in earned.items()}
    assert all(p.status == "paid" and p.provider_ref for p in payouts)
    assert status == "paid"


@pytest.mark.parametrize("kill_at", ["after_claim:1", "after_claim:2", "before_call:1", "before_call:4",
                                     "after_accept:1", "after_accept:7", "before_record:1", "before_record:2",
                                     "after_record:1", "after_record:2"])
def test_sigkill_then_rerun_pays_every_partner_exactly_once(kill_at):
    batch_id = _approved_batch()
    killed = _run(batch_id, kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    finished = _run(batch_id, None)
    assert finished.returncode == 0, finished.stderr[-2000:]
    _assert_paid_exactly_once(batch_id)


def test_killed_again_and_again_at_every_point_still_pays_exactly_once():
    batch_id = _approved_batch()
    for kill_at in ("after_accept:2", "before_call:2", "after_record:2", "before_record:1", "after_accept:1",
                    "after_claim:1", "before_call:3"):
        result = _run(batch_id, kill_at)
        assert result.returncode in (0, -signal.SIGKILL), result.stderr[-2000:]
    assert _run(batch_id, None).returncode == 0
    _assert_paid_exactly_once(batch_id)


def test_two_worker_processes_on_the_same_batch_never_pay_twice():
    batch_id = _approved_batch()
    env = dict(os.environ)
    procs = [subprocess.Popen([sys.executable, "-c", RUN, str(batch_id)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
    _assert_paid_exactly_once(batch_id)


KILL_HERE = "from partnerflow.tasks.shared.faults import kill_point; kill_point('test.point'); print('alive')"


def test_a_kill_point_is_inert_without_the_test_switch():
    env = {k: v for k, v in os.environ.items() if k not in (KILL_AT, TEST_SWITCH)}
    unarmed = subprocess.run([sys.executable, "-c", KILL_HERE], env={**env, KILL_AT: "test.point"},
                             capture_output=True, text=True, timeout=60)
    assert unarmed.returncode == 0 and unarmed.stdout.strip() == "alive", unarmed.stderr[-2000:]
    wrong_switch = subprocess.run([sys.executable, "-c", KILL_HERE],
                                  env={**env, KILL_AT: "test.point", TEST_SWITCH: "yes"},
                                  capture_output=True, text=True, timeout=60)
    assert wrong_switch.returncode == 0, wrong_switch.stderr[-2000:]
    killed = subprocess.run([sys.executable, "-c", KILL_HERE], env={**env, **armed("test.point")},
                            capture_output=True, text=True, timeout=60)
    assert killed.returncode == -signal.SIGKILL and "alive" not in killed.stdout


def test_a_kill_point_fires_on_its_nth_arrival_only():
    env = {k: v for k, v in os.environ.items() if k not in (KILL_AT, TEST_SWITCH)}
    script = ("from partnerflow.tasks.shared.faults import kill_point\n"
              "for n in range(1, 5):\n    kill_point('test.other'); kill_point('test.point'); print(n, flush=True)\n")
    result = subprocess.run([sys.executable, "-c", script], env={**env, **armed("test.point:3")},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == -signal.SIGKILL and result.stdout.split() == ["1", "2"]
