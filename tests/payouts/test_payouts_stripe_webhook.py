"""POST /webhooks/stripe: only verified, fresh events are stored (once) and acted on."""

from __future__ import annotations

import json
import time

import pytest
from factories import commissions_of, make_payout, partner_with_payout_details, payout_row
from fastapi.testclient import TestClient
from sqlmodel import select

from partnerflow.models import AuditLog, WebhookEvent, session_scope
from partnerflow.testing.stripe import WEBHOOK_SECRET, signed_event
from partnerflow.web.app import create_app


@pytest.fixture
def client(configure):
    configure(stripe_webhook_secret=WEBHOOK_SECRET, payout_rail="stripe", stripe_api_key="sk_test_x")
    return TestClient(create_app())


def transfer(payout_id: int, *, key: str, amount: int = 5000, tr: str = "tr_000000000001", reversed_: bool = False):
    return {"id": tr, "object": "transfer", "amount": amount, "amount_reversed": amount if reversed_ else 0,
            "currency": "eur", "destination": "acct_partner_one", "metadata": {"payout_id": str(payout_id)},
            "reversed": reversed_, "transfer_group": key}


def post(client, raw: bytes, headers: dict):
    return client.post("/webhooks/stripe", content=raw, headers=headers)


def stored() -> list[WebhookEvent]:
    with session_scope() as session:
        return list(session.exec(select(WebhookEvent)).all())


def audits(action: str) -> list[AuditLog]:
    with session_scope() as session:
        return list(session.exec(select(AuditLog).where(AuditLog.action == action)).all())


def test_transfer_created_confirms_a_payout_a_crash_left_unrecorded(client):
    partner = partner_with_payout_details()
    payout_id = make_payout(partner, rail="stripe", status="sending")
    key = payout_row(payout_id).idempotency_key
    raw, headers = signed_event("transfer.created", transfer(payout_id, key=key), event_id="evt_1")
    response = post(client, raw, headers)
    assert response.status_code == 200 and response.json() == {"status": "paid"}
    payout = payout_row(payout_id)
    assert payout.status == "paid" and payout.provider_ref == "tr_000000000001"
    assert [c.status for c in commissions_of(payout_id, partner)] == ["paid"]
    [event] = stored()
    assert event.provider == "stripe" and event.event_id == "evt_1" and event.processed_at is not None
    # Stripe delivers again: acknowledged, nothing done twice.
    again = post(client, raw, headers)
    assert again.status_code == 200 and again.json() == {"status": "duplicate"}
    assert len(stored()) == 1 and len(audits("payout.paid")) == 1


def test_reversed_transfer_fails_the_payout_and_returns_the_money(client, outbox):
    partner = partner_with_payout_details()
    payout_id = make_payout(partner, rail="stripe", status="paid", provider_ref="tr_000000000001")
    key = payout_row(payout_id).idempotency_key
    raw, headers = signed_event("transfer.reversed", transfer(payout_id, key=key, reversed_=True))
    assert post(client, raw, headers).json() == {"status": "failed"}
    payout = payout_row(payout_id)
    assert payout.status == "failed" and "reversed" in payout.error
    [commission] = commissions_of(payout_id, partner)
    assert commission.status == "payable" and commission.payout_id is None  # back in the partner's balance
    assert len(list(outbox.glob("*.eml"))) == 1  # the team is told


def test_events_for_transfers_that_are_not_ours_change_nothing(client):
    partner = partner_with_payout_details()
    payout_id = make_payout(partner, rail="stripe", status="sending")
    key = payout_row(payout_id).idempotency_key
    for obj in (transfer(payout_id, key=key, amount=9999),  # amount differs from our payout
                transfer(999, key="payout:elsewhere")):
        raw, headers = signed_event("transfer.created", obj)
        assert post(client, raw, headers).json() == {"status": "ignored"}
    assert payout_row(payout_id).status == "sending"
    assert len(stored()) == 2


def test_another_installations_reversal_on_a_shared_account_leaves_our_payout_alone(client):
    partner = partner_with_payout_details()
    payout_id = make_payout(partner, rail="stripe", status="paid", provider_ref="tr_000000000001")
    # Same payout id and amount, but the other installation's key in transfer_group.
    theirs = transfer(payout_id, key="payout:other-installation:1:1", reversed_=True)
    raw, headers = signed_event("transfer.reversed", theirs)
    assert post(client, raw, headers).json() == {"status": "ignored"}
    assert payout_row(payout_id).status == "paid"


@pytest.mark.parametrize("case", ["forged", "unsigned", "tampered", "replayed", "future", "malformed_header",
                                  "not_json", "not_an_event"])
def test_bad_deliveries_are_refused_and_nothing_is_stored(client, case):
    partner = partner_with_payout_details()
    payout_id = make_payout(partner, rail="stripe", status="sending")
    obj = transfer(payout_id, key=payout_row(payout_id).idempotency_key)
    raw, headers = signed_event("transfer.created", obj)
    if case == "forged":
        raw, headers = signed_event("transfer.created", obj, secret="whsec_attacker")
    elif case == "unsigned":
        headers = {"Content-Type": "application/json"}
    elif case == "tampered":
        raw = raw.replace(b'"amount": 5000', b'"amount": 5001')
    elif case == "replayed":  # a genuine delivery captured and sent again ten minutes later
        raw, headers = signed_event("transfer.created", obj, timestamp=int(time.time()) - 600)
    elif case == "future":
        raw, headers = signed_event("transfer.created", obj, timestamp=int(time.time()) + 600)
    elif case == "malformed_header":
        headers = {"Stripe-Signature": "t=yesterday,v1=abc"}
    elif case in ("not_json", "not_an_event"):
        raw = b"{not json" if case == "not_json" else json.dumps({"hello": "world"}).encode()
        t = int(time.time())
        import hashlib
        import hmac
        sig = hmac.new(WEBHOOK_SECRET.encode(), f"{t}.".encode() + raw, hashlib.sha256).hexdigest()
        headers = {"Stripe-Signature": f"t={t},v1={sig}", "Content-Type": "application/json"}
    response = post(client, raw, headers)
    assert response.status_code == 400
    assert stored() == []
    assert payout_row(payout_id).status == "sending"


def test_a_rotated_secret_still_verifies_with_either_signature(client):
    partner = partner_with_payout_details()
    payout_id = make_payout(partner, rail="stripe", status="sending")
    raw, headers = signed_event("transfer.created", transfer(payout_id, key=payout_row(payout_id).idempotency_key))
    _, old = signed_event("x", {}, secret="whsec_old")
    old_sig = old["Stripe-Signature"].split(",")[1]
    headers["Stripe-Signature"] = headers["Stripe-Signature"].replace(",", f",{old_sig},")
    assert post(client, raw, headers).json() == {"status": "paid"}


def test_an_event_stored_but_not_acted_on_is_acted_on_at_the_next_delivery(client):
    partner = partner_with_payout_details()
    payout_id = make_payout(partner, rail="stripe", status="sending")
    raw, headers = signed_event("transfer.created", transfer(payout_id, key=payout_row(payout_id).idempotency_key),
                                event_id="evt_crash")
    with session_scope() as session:  # the first delivery stored it, then the process died
        session.add(WebhookEvent(provider="stripe", event_id="evt_crash", event_type="transfer.created",
                                 payload=json.loads(raw)))
    assert post(client, raw, headers).json() == {"status": "paid"}
    assert payout_row(payout_id).status == "paid"


def test_connected_account_bank_payouts_are_recorded(client):
    raw, headers = signed_event("payout.failed", {"id": "po_1", "object": "payout", "amount": 5000,
                                                  "currency": "eur", "failure_code": "account_closed"},
                                account="acct_partner_one")
    assert post(client, raw, headers).json() == {"status": "recorded"}
    [entry] = audits("stripe.payout.failed")
    assert entry.subject_id == "acct_partner_one" and entry.details["failure_code"] == "account_closed"


def test_unconfigured_webhook_secret_refuses_everything(configure):
    configure(stripe_webhook_secret=None)
    raw, headers = signed_event("transfer.created", {"id": "tr_1", "object": "transfer"})
    response = TestClient(create_app()).post("/webhooks/stripe", content=raw, headers=headers)
    assert response.status_code == 404 and stored() == []


def test_a_transfer_for_a_payout_we_gave_up_on_is_flagged_not_settled(client):
    partner = partner_with_payout_details()
    payout_id = make_payout(partner, rail="stripe", status="failed")
    raw, headers = signed_event("transfer.created", transfer(payout_id, key=payout_row(payout_id).idempotency_key))
    assert post(client, raw, headers).json() == {"status": "needs review"}
    assert payout_row(payout_id).status == "failed"
    [flag] = audits("payout.transfer_after_failure")
    assert flag.subject_id == str(payout_id) and flag.details["transfer"] == "tr_000000000001"
