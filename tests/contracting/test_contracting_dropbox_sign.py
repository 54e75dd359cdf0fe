"""Dropbox Sign: sending against a local fake of its API, callbacks verified by event hash."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import time_machine
from factories import DOCX, contract_out_for_signature
from fastapi.testclient import TestClient
from sqlmodel import select

from partnerflow.models import AuditLog, SignatureRequest, WebhookEvent, session_scope
from partnerflow.models.contracting import SignatureSendAttempt
from partnerflow.providers.errors import AmbiguousError, PermanentError, RetryableError
from partnerflow.providers.esign.dropbox_sign import (
    HELLO,
    REFERENCE_FIELD,
    DropboxSignProvider,
)
from partnerflow.settings import get_settings
from partnerflow.tasks.contracting.sending import reference_for, send_request
from partnerflow.testing.dropbox_sign import FAKE_PDF, FakeDropboxSign


@pytest.fixture(scope="module")
def fake():
    server = FakeDropboxSign().start()
    yield server
    server.stop()


@pytest.fixture
def dbs(fake, configure):
    fake.requests.clear()
    fake.received.clear()
    fake.faults.clear()
    configure(esign_provider="dropbox_sign", dropbox_sign_api_key=fake.api_key, dropbox_sign_api_host=fake.url,
              esign_timeout_seconds=3)
    return DropboxSignProvider(get_settings().esign)


@pytest.fixture
def client():
    from partnerflow.web.app import create_app

    return TestClient(create_app())


def send(provider, row):
    return send_request(provider, row.id, document=DOCX, filename="contract.docx", title="Partner agreement")


def stored_events() -> list[WebhookEvent]:
    with session_scope() as session:
        return list(session.exec(select(WebhookEvent)))


def reload(row) -> SignatureRequest:
    with session_scope() as session:
        return session.get(SignatureRequest, row.id)


def attempted_at(row):
    with session_scope() as session:
        attempt = session.get(SignatureSendAttempt, row.id)
        return attempt.attempted_at if attempt else None


# --- sending --------------------------------------------------------------------------------

def test_send_uploads_the_document_with_signer_and_our_reference_once(dbs, fake):
    row = contract_out_for_signature("dropbox_sign")
    provider_id = send(dbs, row)

    sent = fake.requests[provider_id]
    assert sent.files == [("contract.docx", DOCX)]
    assert sent.signers == [{"name": "Ana Lopez", "email_address": "ana@example.com"}]
    assert sent.metadata == {REFERENCE_FIELD: reference_for(row)}
    assert reload(row).status == "sent" and reload(row).provider_request_id == provider_id
    # A retried task finds the recorded id and does not send again.
    assert send(dbs, row) == provider_id
    assert fake.calls("POST", "/v3/signature_request/send") == 1


def test_rate_limit_is_retryable_with_retry_after_and_creates_nothing(dbs, fake):
    row = contract_out_for_signature("dropbox_sign")
    fake.faults.fail_next(429, headers={"Retry-After": "7"})
    with pytest.raises(RetryableError) as caught:
        send(dbs, row)
    assert not isinstance(caught.value, AmbiguousError)
    assert caught.value.retry_after == 7
    assert attempted_at(row) is None and fake.requests == {}
    send(dbs, row)  # the retry goes straight through
    assert len(fake.requests) == 1


def test_unavailable_is_retryable_and_unreachable_host_too(dbs, fake, configure):
    row = contract_out_for_signature("dropbox_sign")
    fake.faults.fail_next(503)
    with pytest.raises(RetryableError) as caught:
        send(dbs, row)
    assert not isinstance(caught.value, AmbiguousError) and "503" in caught.value.reason
    configure(dropbox_sign_api_host="http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(RetryableError, match="cannot connect"):
        send(DropboxSignProvider(get_settings().esign), row)
    assert attempted_at(row) is None


def test_bad_request_is_permanent_with_the_providers_reason(dbs, fake):
    row = contract_out_for_signature("dropbox_sign", email="not-an-email")
    with pytest.raises(PermanentError, match="Invalid email address"):
        send(dbs, row)
    assert reload(row).provider_request_id is None and attempted_at(row) is None


def test_wrong_api_key_is_permanent(dbs, fake, configure):
    configure(dropbox_sign_api_key="wrong")
    with pytest.raises(PermanentError, match="401"):
        send(DropboxSignProvider(get_settings().esign), contract_out_for_signature("dropbox_sign"))


def test_timeout_after_the_provider_created_it_is_found_not_sent_twice(dbs, fake):
    row = contract_out_for_signature("dropbox_sign")
    fake.faults.stall_next(4, after_effect=True, path_contains="/send")
    with pytest.raises(AmbiguousError):
        send(dbs, row)
    assert len(fake.requests) == 1 and reload(row).provider_request_id is None

    provider_id = send(dbs, row)  # the retry searches by our reference and adopts the request

    assert provider_id == next(iter(fake.requests))
    assert fake.calls("POST", "/v3/signature_request/send") == 1
    assert reload(row).provider_request_id == provider_id


def test_unknown_outcome_not_found_is_resent_only_after_the_reconcile_wait(dbs, fake, configure):
    configure(esign_reconcile_after_seconds=600)
    row = contract_out_for_signature("dropbox_sign")
    fake.faults.fail_next(502, path_contains="/send")  # a gateway error: maybe created, here not
    with pytest.raises(AmbiguousError):
        send(dbs, row)
    with pytest.raises(AmbiguousError, match="unknown outcome"):
        send(dbs, row)  # the search may lag: refuse to resend yet
    assert fake.requests == {}
    with time_machine.travel(attempted_at(row) + timedelta(seconds=601), tick=False):
        provider_id = send(dbs, row)
    assert list(fake.requests) == [provider_id]


def test_void_cancels_and_download_waits_for_files(dbs, fake):
    row = contract_out_for_signature("dropbox_sign")
    provider_id = send(dbs, row)
    with pytest.raises(RetryableError, match="409"):
        dbs.download(provider_id)  # not signed yet: files not ready
    dbs.void(provider_id, "application withdrawn")
    assert fake.requests[provider_id].status == "cancelled"


# --- callbacks ------------------------------------------------------------------------------

def test_end_to_end_request_signature_then_signed_callback(dbs, fake, client):
    from partnerflow.models import Contract
    from partnerflow.tasks.contracting.signing import request_signature

    contract = contract_out_for_signature("dropbox_sign", with_request=False)
    row = request_signature(contract.id)
    assert row.provider == "dropbox_sign" and row.status == "sent"
    assert request_signature(contract.id).provider_request_id == row.provider_request_id  # re-run: no resend
    assert fake.calls("POST", "/v3/signature_request/send") == 1

    fake.sign(row.provider_request_id)
    assert client.post("/webhooks/dropbox-sign", data=fake.callback(row.provider_request_id)).text == HELLO
    with session_scope() as session:
        signed = session.get(Contract, contract.id)
        trail = session.exec(select(AuditLog).where(AuditLog.action == "contract.signed")).one()
    assert signed.status == "signed" and signed.signed_sha256
    assert trail.actor == "dropbox_sign" and trail.details["provider_request_id"] == row.provider_request_id


def test_signed_callback_downloads_the_pdf_and_signs_the_contract(dbs, fake, client):
    from partnerflow.models import Contract

    row = contract_out_for_signature("dropbox_sign")
    provider_id = send(dbs, row)
    fake.sign(provider_id)

    response = client.post("/webhooks/dropbox-sign", files={"json": (None, fake.callback(provider_id)["json"])})

    assert response.status_code == 200 and response.text == HELLO
    assert reload(row).status == "signed"
    with session_scope() as session:
        contract = session.get(Contract, row.contract_id)
    assert contract.status == "signed"
    from partnerflow.settings import get_settings

    assert (get_settings().documents_dir / contract.signed_path).read_bytes() == FAKE_PDF
    assert [e.processed_at is not None for e in stored_events()] == [True]


def test_all_signed_before_files_are_ready_is_finished_by_downloadable(dbs, fake, client):
    row = contract_out_for_signature("dropbox_sign")
    provider_id = send(dbs, row)
    fake.faults.fail_next(409, path_contains="/files/", body={"error": {"error_name": "conflict",
                                                                        "error_msg": "still processing"}})
    fake.sign(provider_id)
    first = client.post("/webhooks/dropbox-sign", data=fake.callback(provider_id))
    assert first.text == HELLO and reload(row).status != "signed"

    second = client.post("/webhooks/dropbox-sign",
                         data=fake.callback(provider_id, "signature_request_downloadable"))
    assert second.text == HELLO and reload(row).status == "signed"


def test_callback_for_a_send_whose_answer_was_lost_finds_the_row_by_reference(dbs, fake, client):
    row = contract_out_for_signature("dropbox_sign")
    fake.faults.stall_next(4, after_effect=True, path_contains="/send")
    with pytest.raises(AmbiguousError):
        send(dbs, row)
    provider_id = next(iter(fake.requests))
    fake.sign(provider_id)
    response = client.post("/webhooks/dropbox-sign", data=fake.callback(provider_id))
    assert response.text == HELLO
    assert reload(row).provider_request_id == provider_id and reload(row).status == "signed"


def test_forged_callback_is_rejected_and_not_stored(dbs, fake, client):
    row = contract_out_for_signature("dropbox_sign")
    provider_id = send(dbs, row)
    fake.sign(provider_id)
    response = client.post("/webhooks/dropbox-sign", data=fake.callback(provider_id, key="attacker-key"))
    assert response.status_code == 401 and response.text != HELLO
    assert stored_events() == [] and reload(row).status == "sent"


def test_replayed_callback_is_acknowledged_and_acted_on_once(dbs, fake, client):
    row = contract_out_for_signature("dropbox_sign")
    provider_id = send(dbs, row)
    fake.sign(provider_id)
    callback = fake.callback(provider_id)
    assert client.post("/webhooks/dropbox-sign", data=callback).text == HELLO
    replay = client.post("/webhooks/dropbox-sign", data=callback)
    # Dropbox Sign retries a callback until it gets its HELLO body: a duplicate gets it too.
    assert replay.status_code == 200 and replay.text == HELLO
    assert len(stored_events()) == 1
    with session_scope() as session:
        signed = session.exec(select(AuditLog).where(AuditLog.action.like("%signed%"))).all()
    assert len(signed) >= 1


def test_old_callback_is_rejected_even_when_correctly_signed(dbs, fake, client, configure):
    configure(esign_webhook_max_age_seconds=3600)
    row = contract_out_for_signature("dropbox_sign")
    provider_id = send(dbs, row)
    fake.sign(provider_id)
    stale = fake.callback(provider_id, event_time=int(time.time()) - 7200)
    response = client.post("/webhooks/dropbox-sign", data=stale)
    assert response.status_code == 400 and "too old" in response.text
    assert stored_events() == [] and reload(row).status == "sent"


@pytest.mark.parametrize("kwargs", [
    {"data": {}},  # no json field
    {"data": {"json": "{not json"}},
    {"data": {"json": '{"event": {"event_type": "signature_request_all_signed"}}'}},  # no hash, no time
    {"content": b'{"event": {}}', "headers": {"Content-Type": "application/json"}},
])
def test_malformed_or_unsigned_callbacks_are_rejected(dbs, client, kwargs):
    response = client.post("/webhooks/dropbox-sign", **kwargs)
    assert 400 <= response.status_code < 500 and response.text != HELLO
    assert stored_events() == []


def test_callback_test_event_gets_the_hello_reply_and_other_events_are_stored_only(dbs, fake, client):
    assert client.post("/webhooks/dropbox-sign", data=fake.callback("none", "callback_test")).text == HELLO
    assert stored_events() == []
    row = contract_out_for_signature("dropbox_sign")
    provider_id = send(dbs, row)
    viewed = client.post("/webhooks/dropbox-sign", data=fake.callback(provider_id, "signature_request_viewed"))
    assert viewed.text == HELLO
    assert [e.event_type for e in stored_events()] == ["signature_request_viewed"]
    assert reload(row).status == "sent"


def test_two_workers_sending_the_same_request_create_it_once(dbs, fake):
    import threading

    row = contract_out_for_signature("dropbox_sign")
    fake.faults.delay_next(0.5, path_contains="/send")  # keep the first create in flight
    barrier = threading.Barrier(2)
    results: list = []

    def worker():
        barrier.wait()
        try:
            results.append(send(DropboxSignProvider(get_settings().esign), row))
        except RetryableError as exc:
            results.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    ids = [r for r in results if isinstance(r, str)]
    busy = [r for r in results if isinstance(r, RetryableError)]
    # The loser either lost the claim or saw an attempt in flight whose outcome it cannot know yet.
    assert len(ids) == 1 and len(busy) == 1
    assert "another worker" in busy[0].reason or "unknown outcome" in busy[0].reason
    assert fake.calls("POST", "/v3/signature_request/send") == 1
    assert send(dbs, row) == ids[0]  # the loser's retry finds the recorded request


def test_declined_callback_closes_the_request_so_no_reminders_follow(dbs, fake, client):
    from partnerflow.models import Contract

    row = contract_out_for_signature("dropbox_sign")
    provider_id = send(dbs, row)
    fake.decline(provider_id, "commission too low")
    response = client.post("/webhooks/dropbox-sign", data=fake.callback(provider_id, "signature_request_declined"))
    assert response.text == HELLO
    assert reload(row).status == "voided"
    with session_scope() as session:
        assert session.get(Contract, row.contract_id).status == "voided"
        [trail] = session.exec(select(AuditLog).where(AuditLog.action == "signature.declined")).all()
    assert trail.details["reason"] == "commission too low"
