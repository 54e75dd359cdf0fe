"""DocuSign: envelopes against a local fake of the eSignature REST API, Connect callbacks verified by HMAC."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from factories import DOCX, contract_out_for_signature
from fastapi.testclient import TestClient
from sqlmodel import select

from partnerflow.models import SignatureRequest, WebhookEvent, session_scope
from partnerflow.models.contracting import SignatureSendAttempt
from partnerflow.providers.errors import AmbiguousError, PermanentError, RetryableError
from partnerflow.providers.esign.docusign import REFERENCE_FIELD, DocuSignProvider
from partnerflow.settings import get_settings
from partnerflow.tasks.contracting.sending import reference_for, send_request
from partnerflow.testing.docusign import FAKE_PDF, FakeDocuSign


@pytest.fixture(scope="module")
def fake():
    server = FakeDocuSign().start()
    yield server
    server.stop()


@pytest.fixture
def ds(fake, configure):
    fake.envelopes.clear()
    fake.received.clear()
    fake.faults.clear()
    configure(esign_provider="docusign", docusign_access_token=fake.token, docusign_account_id=fake.account_id,
              docusign_api_host=fake.url, docusign_connect_hmac_key=fake.hmac_key, esign_timeout_seconds=3)
    return DocuSignProvider(get_settings().esign)


@pytest.fixture
def client():
    from partnerflow.web.app import create_app

    return TestClient(create_app())


def send(provider, row):
    return send_request(provider, row.id, document=DOCX, filename="contract.docx", title="Partner agreement")


def reload(row) -> SignatureRequest:
    with session_scope() as session:
        return session.get(SignatureRequest, row.id)


def stored_events() -> list[WebhookEvent]:
    with session_scope() as session:
        return list(session.exec(select(WebhookEvent)))


def post(client, body: bytes, headers: dict):
    return client.post("/webhooks/docusign", content=body, headers=headers)


# --- sending --------------------------------------------------------------------------------

def test_envelope_carries_the_docx_signer_and_our_reference_and_is_sent_once(ds, fake):
    row = contract_out_for_signature("docusign")
    envelope_id = send(ds, row)

    envelope = fake.envelopes[envelope_id]
    document = envelope.definition["documents"][0]
    assert document["fileExtension"] == "docx" and envelope.documents == [DOCX]
    assert envelope.definition["status"] == "sent"
    assert envelope.definition["recipients"]["signers"][0]["email"] == "ana@example.com"
    assert envelope.custom_fields() == {REFERENCE_FIELD: reference_for(row)}
    assert send(ds, row) == envelope_id
    assert fake.calls("POST", "/envelopes") == 1
    assert reload(row).status == "sent"


def test_rate_limit_and_server_errors_are_retryable(ds, fake):
    row = contract_out_for_signature("docusign")
    fake.faults.fail_next(429, headers={"Retry-After": "30"})
    with pytest.raises(RetryableError) as caught:
        send(ds, row)
    assert caught.value.retry_after == 30 and not isinstance(caught.value, AmbiguousError)
    fake.faults.fail_next(503)
    with pytest.raises(RetryableError, match="503"):
        send(ds, row)
    assert fake.envelopes == {}
    send(ds, row)
    assert len(fake.envelopes) == 1


def test_invalid_recipient_is_permanent_and_names_the_error(ds):
    row = contract_out_for_signature("docusign", email="nobody")
    with pytest.raises(PermanentError, match="INVALID_EMAIL_ADDRESS_FOR_RECIPIENT"):
        send(ds, row)


def test_expired_token_is_permanent(ds, configure):
    configure(docusign_access_token="expired")
    with pytest.raises(PermanentError, match="USER_AUTHENTICATION_FAILED"):
        send(DocuSignProvider(get_settings().esign), contract_out_for_signature("docusign"))


def test_timeout_after_create_is_found_by_custom_field_not_sent_twice(ds, fake):
    row = contract_out_for_signature("docusign")
    fake.faults.stall_next(4, after_effect=True, path_contains="/envelopes")
    with pytest.raises(AmbiguousError):
        send(ds, row)
    envelope_id = send(ds, row)
    assert list(fake.envelopes) == [envelope_id]
    assert fake.calls("POST", "/envelopes") == 1


def test_gateway_error_not_found_is_resent_after_the_reconcile_wait(ds, fake, configure):
    configure(esign_reconcile_after_seconds=600)
    row = contract_out_for_signature("docusign")
    fake.faults.fail_next(504, path_contains="/envelopes")
    with pytest.raises(AmbiguousError):
        send(ds, row)
    with pytest.raises(AmbiguousError, match="unknown outcome"):
        send(ds, row)
    with session_scope() as session:
        attempted = session.get(SignatureSendAttempt, row.id).attempted_at
    with time_machine.travel(attempted + timedelta(minutes=11), tick=False):
        envelope_id = send(ds, row)
    assert list(fake.envelopes) == [envelope_id]


def test_void_sends_the_reason_and_completed_envelopes_refuse(ds, fake):
    first = send(ds, contract_out_for_signature("docusign"))
    ds.void(first, "application withdrawn")
    assert fake.envelopes[first].status == "voided" and fake.envelopes[first].voided_reason == "application withdrawn"
    second = send(ds, contract_out_for_signature("docusign", email="bo@example.com"))
    fake.complete(second)
    with pytest.raises(PermanentError, match="ENVELOPE_CANNOT_VOID_INVALID_STATE"):
        ds.void(second, "too late")


# --- Connect callbacks ----------------------------------------------------------------------

def test_completed_notification_downloads_the_combined_pdf_and_signs(ds, fake, client):
    from partnerflow.models import Contract
    from partnerflow.settings import get_settings

    row = contract_out_for_signature("docusign")
    envelope_id = send(ds, row)
    fake.complete(envelope_id)
    response = post(client, *fake.connect_notification(envelope_id))
    assert response.status_code == 200
    assert reload(row).status == "signed"
    with session_scope() as session:
        contract = session.get(Contract, row.contract_id)
    assert contract.status == "signed"
    assert (get_settings().documents_dir / contract.signed_path).read_bytes() == FAKE_PDF
    assert fake.calls("GET", "/documents/combined") == 1


def test_replayed_notification_is_acknowledged_and_downloads_nothing_more(ds, fake, client):
    row = contract_out_for_signature("docusign")
    envelope_id = send(ds, row)
    fake.complete(envelope_id)
    body, headers = fake.connect_notification(envelope_id)
    assert post(client, body, headers).status_code == 200
    replay = post(client, body, headers)  # Connect retries anything but a 2xx
    assert replay.status_code == 200 and replay.json()["outcome"] == "duplicate"
    assert len(stored_events()) == 1 and fake.calls("GET", "/documents/combined") == 1


def test_download_failure_answers_503_and_the_retry_finishes(ds, fake, client):
    row = contract_out_for_signature("docusign")
    envelope_id = send(ds, row)
    fake.complete(envelope_id)
    body, headers = fake.connect_notification(envelope_id)
    fake.faults.fail_next(500, path_contains="/documents/combined")
    assert post(client, body, headers).status_code == 503
    assert reload(row).status == "sent" and len(stored_events()) == 1
    assert post(client, body, headers).status_code == 200  # Connect retries the same notification
    assert reload(row).status == "signed"


def test_forged_notification_is_rejected_and_not_stored(ds, fake, client):
    row = contract_out_for_signature("docusign")
    envelope_id = send(ds, row)
    body, headers = fake.connect_notification(envelope_id, key="attacker-key")
    assert post(client, body, headers).status_code == 401
    # A valid signature over a different body does not carry over either.
    good_body, good_headers = fake.connect_notification(envelope_id)
    tampered = good_body.replace(b"envelope-completed", b"envelope-voided")
    assert post(client, tampered, good_headers).status_code == 401
    assert stored_events() == [] and reload(row).status == "sent"


def test_unsigned_notification_is_rejected(ds, fake, client):
    body, headers = fake.connect_notification("env-1")
    headers.pop("X-DocuSign-Signature-1")
    assert post(client, body, headers).status_code == 401
    assert stored_events() == []


def test_old_notification_is_rejected(ds, fake, client, configure):
    configure(esign_webhook_max_age_seconds=3600)
    old = (datetime.now(UTC) - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    body, headers = fake.connect_notification("env-1", generated=old)
    response = post(client, body, headers)
    assert response.status_code == 400 and "too old" in response.text
    assert stored_events() == []


def test_malformed_but_correctly_signed_notification_is_rejected(ds, fake, client):
    body = json.dumps({"event": "envelope-completed", "data": {}}).encode()  # no envelopeId, no time
    import hashlib
    import hmac

    signature = base64.b64encode(hmac.new(fake.hmac_key.encode(), body, hashlib.sha256).digest()).decode()
    response = post(client, body, {"X-DocuSign-Signature-1": signature, "Content-Type": "application/json"})
    assert response.status_code == 400
    assert stored_events() == []


def test_second_hmac_key_header_is_accepted_during_key_rotation(ds, fake, client):
    row = contract_out_for_signature("docusign")
    envelope_id = send(ds, row)
    body, headers = fake.connect_notification(envelope_id, "envelope-delivered")
    rotated = {"Content-Type": "application/json", "X-DocuSign-Signature-1": "b2xkLWtleS1zaWduYXR1cmU=",
               "X-DocuSign-Signature-2": headers["X-DocuSign-Signature-1"]}
    assert post(client, body, rotated).status_code == 200
    assert [e.event_type for e in stored_events()] == ["envelope-delivered"]
    assert reload(row).status == "sent"


def test_declined_envelope_closes_the_request(ds, fake, client):
    row = contract_out_for_signature("docusign")
    envelope_id = send(ds, row)
    fake.envelopes[envelope_id].status = "declined"  # what the API says once the signer declined
    assert post(client, *fake.connect_notification(envelope_id, "envelope-declined")).status_code == 200
    assert reload(row).status == "voided"
    assert fake.calls("GET", "/documents/combined") == 0
