"""SIGKILL mid-pass, then the recovery sweep (not a re-run of the batch) finishes the batch, exactly once.

The batch run is killed at a kill point (tasks/shared/faults.py); the sweep runs in a fresh process, as
the hourly deployment would, and knows only that the batch is open. The provider's own record (the
ledger table, the PayPal fake's items, the SEPA files including archived ones) must hold each payout
exactly once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from decimal import Decimal

import pytest
from factories import add_conversions, after_lock, make_partner
from sqlalchemy import func
from sqlmodel import select

from partnerflow.models import Commission, Payout, PayoutBatch, session_scope
from partnerflow.models.payouts import LedgerTransfer, SepaFileEntry
from partnerflow.secrets import encrypt
from partnerflow.tasks.payouts import batches as engine
from partnerflow.tasks.payouts.commissions import compute_commissions
from partnerflow.tasks.payouts.reconcile import poll_paypal
from partnerflow.tasks.shared.faults import KILL_AT, TEST_SWITCH, armed
from partnerflow.testing.paypal import CLIENT_ID, CLIENT_SECRET, FakePayPal

N_PARTNERS = 8

BATCH_RUN = """
import sys
import partnerflow.tasks.payouts.execution as execution
execution.CLAIM_CHUNK = 3
print(execution.execute_batch(int(sys.argv[1]), lease_seconds=0))
"""

SWEEP = """
import partnerflow.tasks.payouts.execution as execution
from partnerflow.tasks.payouts.recovery import recover_open_batches
execution.CLAIM_CHUNK = 3
print(recover_open_batches())
"""


def _env(kill_at: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (KILL_AT, TEST_SWITCH)}
    # The killed process's claims are taken over at once (the deployment waits for the 5-minute lease).
    env["PARTNERFLOW_PAYOUT_CLAIM_LEASE_SECONDS"] = "0"
    if kill_at:
        env.update(armed(f"payouts.{kill_at}"))
    return env


def _run(script: str, *args: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script, *args], env=_env(kill_at), capture_output=True, text=True,
                          timeout=180)


def _killed_batch(batch_id: int, kill_at: str) -> None:
    killed = _run(BATCH_RUN, str(batch_id), kill_at=kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]


def _sweep() -> None:
    swept = _run(SWEEP)
    assert swept.returncode == 0, swept.stderr[-2000:]


def _approved_batch(details=None, **partner) -> int:
    partners = [make_partner(i, **partner, **({"payout_details_encrypted": encrypt(json.dumps(details(i)))}
                                              if details else {}))
                for i in range(1, N_PARTNERS + 1)]
    currency = partner.get("currency", "USD")
    add_conversions([{"partner_id": p, "amount_minor": 10000 + 37 * p, "currency": currency, "external_id": f"s{p}"}
                     for p in partners])
    compute_commissions(now=after_lock())
    batch_id = engine.build_batch(after_lock())
    engine.decide_batch(batch_id, approve=True, actor="test")
    return batch_id


def _payouts(batch_id: int) -> list[Payout]:
    with session_scope() as s:
        rows = s.exec(select(Payout).where(Payout.batch_id == batch_id).order_by(Payout.id)).all()
        for r in rows:
            s.expunge(r)
        return rows


def _batch_status(batch_id: int) -> str:
    with session_scope() as s:
        return s.get(PayoutBatch, batch_id).status


@pytest.mark.parametrize("kill_at", ["before_call:2", "after_accept:4", "after_record:1"])
def test_ledger_killed_mid_pass_is_finished_by_the_sweep_exactly_once(kill_at):
    batch_id = _approved_batch()
    _killed_batch(batch_id, kill_at)
    _sweep()
    payouts = _payouts(batch_id)
    with session_scope() as s:
        transfers = s.exec(select(LedgerTransfer.partner_id, LedgerTransfer.amount_minor)).all()
        paid = dict(s.exec(select(Commission.partner_id, func.sum(Commission.amount_minor))
                           .where(Commission.status == "paid").group_by(Commission.partner_id)).all())
    assert sorted(transfers) == sorted((p.partner_id, p.amount_minor) for p in payouts)  # one each, exact amount
    assert {pid: int(v) for pid, v in paid.items()} == {p.partner_id: p.amount_minor for p in payouts}
    assert all(p.status == "paid" for p in payouts) and _batch_status(batch_id) == "paid"


def test_the_sweep_itself_killed_is_finished_by_the_next_sweep():
    batch_id = _approved_batch()
    _killed_batch(batch_id, "after_accept:2")
    killed = _run(SWEEP, kill_at="after_accept:2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    _sweep()
    with session_scope() as s:
        assert s.exec(select(func.count()).select_from(LedgerTransfer)).one() == N_PARTNERS
    assert _batch_status(batch_id) == "paid"


@pytest.mark.parametrize("kill_at", ["after_accept:1", "after_accept:5"])
def test_paypal_killed_after_it_answered_is_found_by_its_batch_id_and_paid_once(configure, kill_at):
    with FakePayPal() as paypal:
        configure(payout_rail="paypal", paypal_client_id=CLIENT_ID, paypal_client_secret=CLIENT_SECRET,
                  paypal_api_host=paypal.url, payout_http_timeout_seconds=10)
        batch_id = _approved_batch(lambda i: {"paypal_email": f"p{i}@example.com"}, payout_method="paypal")
        _killed_batch(batch_id, kill_at)
        cut = [p for p in _payouts(batch_id) if p.status == "sending"]  # the claimed chunk the kill fell in
        # PayPal's payout_batch_id was kept the moment PayPal answered, before the process died.
        assert [p.provider_ref for p in cut] == [paypal.by_sender_batch_id.get(p.idempotency_key) for p in cut]
        assert any(p.provider_ref for p in cut)
        _sweep()
        poll_paypal()
        for p in _payouts(batch_id):
            [item] = paypal.items_for(p.idempotency_key)  # exactly one PayPal payment per payout
            assert Decimal(item["payout_item"]["amount"]["value"]) * 100 == p.amount_minor
            assert p.status == "paid"
        assert len(paypal.items()) == N_PARTNERS and _batch_status(batch_id) == "paid"


def _sepa(configure, tmp_path) -> int:
    configure(payout_rail="sepa", sepa_debtor_iban="DE02120300000000202051", sepa_debtor_bic="BYLADEM1001",
              sepa_output_dir=tmp_path / "sepa")
    return _approved_batch(lambda i: {"iban": "DE89370400440532013000"}, payout_method="sepa", currency="EUR",
                           terms={"kind": "percentage", "rate": "0.10", "lock_days": 30, "currency": "EUR"})


def _archive(tmp_path) -> None:
    """What the team does with a bank file once uploaded: move it out of the output folder."""
    (tmp_path / "archive").mkdir(exist_ok=True)
    for path in (tmp_path / "sepa").glob("pain001-*.xml"):
        shutil.move(path, tmp_path / "archive" / path.name)


def _payments_in_files(tmp_path) -> list[str]:
    from lxml import etree

    from partnerflow.providers.payout.sepa import NS

    found = []
    for path in [*(tmp_path / "sepa").glob("pain001-*.xml"), *(tmp_path / "archive").glob("pain001-*.xml")]:
        found += [e.text for e in etree.parse(str(path)).getroot().iterfind(".//p:EndToEndId", {"p": NS})]
    return found


def test_sepa_payment_in_an_archived_file_is_never_written_again(configure, tmp_path):
    batch_id = _sepa(configure, tmp_path)
    first = _run(BATCH_RUN, str(batch_id))  # every payout into a file, recorded processing
    assert first.returncode == 0, first.stderr[-2000:]
    _archive(tmp_path)
    _set_all_sending(batch_id)  # as if a crash had left them to be recovered
    _sweep()
    payments = _payments_in_files(tmp_path)
    assert len(payments) == len(set(payments)) == N_PARTNERS  # each payment in one bank file, archive included
    assert all(p.status == "processing" for p in _payouts(batch_id))


def _set_all_sending(batch_id: int) -> None:
    from sqlalchemy import update

    with session_scope() as s:
        s.execute(update(Payout).where(Payout.batch_id == batch_id).values(status="sending", claimed_at=None))


@pytest.mark.parametrize("kill_at", ["before_call:2", "after_accept:2"])
def test_sepa_killed_then_archived_then_swept_puts_no_payment_in_two_files(configure, tmp_path, kill_at):
    batch_id = _sepa(configure, tmp_path)
    _killed_batch(batch_id, kill_at)
    _archive(tmp_path)
    _sweep()
    payments = _payments_in_files(tmp_path)
    assert len(payments) == len(set(payments))  # no payment in two files, ever
    payouts = _payouts(batch_id)
    with session_scope() as s:
        entries = dict(s.exec(select(SepaFileEntry.payout_id, SepaFileEntry.file_name)).all())
    for p in payouts:
        if p.status == "needs_review":  # its file was written and archived before we recorded it: a person checks
            assert kill_at.startswith("after_accept") and "archived" in p.error and entries[p.id] is None
        else:
            assert p.status == "processing" and entries[p.id] == p.provider_ref.partition("#")[0]
    if kill_at.startswith("before_call"):  # nothing was written for the cut chunk: all paid, one file each
        assert len(payments) == N_PARTNERS and all(p.status == "processing" for p in payouts)
    else:
        assert len(payments) == N_PARTNERS and sum(p.status == "needs_review" for p in payouts) == 3
