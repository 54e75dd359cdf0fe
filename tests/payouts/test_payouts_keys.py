"""Payout keys carry the installation's namespace, kept in the database, so two installations sharing a
Stripe or PayPal account never collide; a payout already in flight keeps the key it was sent with."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys

import pytest
from factories import add_conversions, after_lock, make_partner, make_payout
from sqlalchemy import update
from sqlmodel import select

from partnerflow.models import Payout, session_scope
from partnerflow.models.payouts import Installation, LedgerTransfer
from partnerflow.secrets import encrypt
from partnerflow.tasks.payouts import batches as engine
from partnerflow.tasks.payouts.commissions import compute_commissions
from partnerflow.tasks.payouts.execution import execute_batch
from partnerflow.tasks.payouts.keys import installation_namespace
from partnerflow.testing.stripe import API_KEY, FakeStripe


def _batch_of_one(**partner) -> tuple[int, int]:
    pid = make_partner(1, **partner)
    add_conversions([{"partner_id": pid, "amount_minor": 40000, "external_id": "s1"}])
    compute_commissions(now=after_lock())
    batch_id = engine.build_batch(after_lock())
    engine.decide_batch(batch_id, approve=True, actor="test")
    return batch_id, pid


def test_new_keys_carry_the_namespace_stored_in_the_database():
    batch_id, pid = _batch_of_one()
    namespace = installation_namespace()
    assert re.fullmatch(r"[0-9a-f]{32}", namespace) and installation_namespace() == namespace
    with session_scope() as s:
        assert [r.namespace for r in s.exec(select(Installation)).all()] == [namespace]
        key = s.exec(select(Payout.idempotency_key).where(Payout.batch_id == batch_id)).one()
    assert key == f"payout:{namespace}:{batch_id}:{pid}" and len(key) <= 63  # PayPal's sender_item_id limit


def test_the_migration_makes_the_namespace(tmp_path):
    db = tmp_path / "fresh.db"
    env = {**os.environ, "PARTNERFLOW_DATABASE_URL": f"sqlite:///{db}"}
    done = subprocess.run([sys.executable, "-c", "from partnerflow import dbtools; dbtools.upgrade()"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, namespace FROM installation").fetchall()
    assert len(rows) == 1 and rows[0][0] == 1 and re.fullmatch(r"[0-9a-f]{32}", rows[0][1])


def test_a_payout_in_flight_keeps_the_key_it_was_sent_with():
    """Built before the namespace existed, sent, answer lost: found under its old key, never paid twice."""
    pid = make_partner(1)
    payout_id = make_payout(pid, rail="ledger", currency="USD", amount_minor=5000)  # key payout:{batch}:{partner}
    with session_scope() as s:
        payout = s.get(Payout, payout_id)
        old_key, batch_id = payout.idempotency_key, payout.batch_id
        s.execute(update(Payout).where(Payout.id == payout_id).values(attempts=1, claimed_at=None))
        s.add(LedgerTransfer(idempotency_key=old_key, payout_id=payout_id, partner_id=pid, amount_minor=5000,
                             currency="USD"))
    installation_namespace()
    execute_batch(batch_id, lease_seconds=0)
    with session_scope() as s:
        payout = s.get(Payout, payout_id)
        assert payout.status == "paid" and payout.idempotency_key == old_key
        assert len(s.exec(select(LedgerTransfer)).all()) == 1


@pytest.fixture
def stripe(configure):
    with FakeStripe(accounts=("acct_p1",)) as fake:
        configure(payout_rail="stripe", stripe_api_key=API_KEY, stripe_api_host=fake.url,
                  payout_http_timeout_seconds=10)
        yield fake


def test_another_installation_on_the_same_stripe_account_does_not_stand_in_for_our_payout(stripe):
    batch_id, pid = _batch_of_one(payout_method="stripe",
                                  payout_details_encrypted=encrypt(json.dumps({"stripe_account_id": "acct_p1"})))
    with session_scope() as s:
        ours = s.exec(select(Payout).where(Payout.batch_id == batch_id)).one()
        s.expunge(ours)
    # The other installation's first batch paid the same partner id the same amount, under the key its own
    # namespace gives (without namespaces: the very same key as ours).
    other_key = ours.idempotency_key.replace(installation_namespace(), "0" * 32)
    stripe.transfers["tr_other"] = {"id": "tr_other", "object": "transfer", "amount": ours.amount_minor,
                                    "currency": "usd", "destination": "acct_p1", "transfer_group": other_key,
                                    "reversed": False, "amount_reversed": 0, "metadata": {}, "created": 0,
                                    "livemode": False}
    execute_batch(batch_id)
    with session_scope() as s:
        paid = s.get(Payout, ours.id)
    assert paid.status == "paid" and paid.provider_ref != "tr_other"  # our own transfer, not theirs
    assert [t["id"] for t in stripe.transfers_for_group(ours.idempotency_key)] == [paid.provider_ref]
    assert len(stripe.transfers_to("acct_p1")) == 2
