"""Documenso: PDF-only sending (docx converted by LibreOffice), webhooks authenticated by a shared secret."""

from __future__ import annotations

import io
import json
import shutil
from datetime import UTC, datetime, timedelta

import pytest
from factories import contract_out_for_signature
from fastapi.testclient import TestClient
from sqlmodel import select

from partnerflow.models import SignatureRequest, WebhookEvent, session_scope
from partnerflow.providers.errors import AmbiguousError, PermanentError, RetryableError
from partnerflow.providers.esign.documenso import DocumensoProvider
from partnerflow.settings import get_settings
from partnerflow.tasks.contracting.sending import reference_for, send_request
from partnerflow.testing.documenso import FAKE_PDF, FakeDocumenso

PDF = b"%PDF-1.4\n% our contract, already a PDF\n%%EOF\n"


@pytest.fixture(scope="module")
def fake():
    server = FakeDocumenso().start()
    yield server
    server.stop()


@pytest.fixture
def dso(fake, configure):
    fake.documents.clear()
    fake.received.clear()
    fake.faults.clear()
    configure(documenso_api_key=fake.api_key, documenso_api_host=fake.url,
              documenso_webhook_secret=fake.webhook_secret, esign_timeout_seconds=3)
    return DocumensoProvider(get_settings().esign)


@pytest.fixture
def client():
    from partnerflow.web.app import create_app

    return TestClient(create_app())


def send(provider, row, document: bytes = PDF, filename: str = "contract.pdf"):
    return send_request(provider, row.id, document=document, filename=filename, title="Partner agreement")


def reload(row) -> SignatureRequest:
    with session_scope() as session:
        return session.get(SignatureRequest, row.id)


def stored_events() -> list[WebhookEvent]:
    with session_scope() as session:
        return list(session.exec(select(WebhookEvent)))


def post(client, body, headers):
    return client.post("/webhooks/documenso", content=body, headers=headers)


@pytest.mark.skipif(not shutil.which("soffice"), reason="LibreOffice is not installed")
def test_docx_is_converted_to_pdf_uploaded_and_sent_once(dso, fake):
    import docx

    document = docx.Document()
    document.add_paragraph("Partner agreement between Acme Analytics Ltd and Ana Media LLC.")
    buffer = io.BytesIO()
    document.save(buffer)
    row = contract_out_for_signature("documenso")

    document_id = send(dso, row, buffer.getvalue(), "contract-1.docx")

    [sent] = fake.live()
    assert str(sent.id) == document_id and sent.status == "PENDING"
    assert sent.pdf.startswith(b"%PDF") and sent.external_id == reference_for(row)
    assert sent.recipients == [{"name": "Ana Lopez", "email": "ana@example.com", "role": "SIGNER"}]
    assert send(dso, row, buffer.getvalue(), "contract-1.docx") == document_id
    assert fake.calls("POST", "/api/v1/documents") == 2  # one create + one send, nothing more
    assert reload(row).status == "sent"


def test_failed_send_step_removes_the_draft_and_the_retry_starts_clean(dso, fake):
    row = contract_out_for_signature("documenso")
    fake.faults.fail_next(503, path_contains="/send")
    with pytest.raises(RetryableError):
        send(dso, row)
    assert fake.live() == []  # the draft was deleted
    document_id = send(dso, row)
    assert [str(d.id) for d in fake.live()] == [document_id]


def test_timeout_on_send_step_is_reconciled_by_external_id(dso, fake):
    row = contract_out_for_signature("documenso")
    fake.faults.stall_next(4, after_effect=True, path_contains="/send")
    with pytest.raises(AmbiguousError):
        send(dso, row)
    document_id = send(dso, row)
    assert [str(d.id) for d in fake.live()] == [document_id]
    assert fake.calls("POST", "/send") == 1


def test_rate_limit_and_bad_recipient(dso, fake):
    fake.faults.fail_next(429, headers={"Retry-After": "12"})
    with pytest.raises(RetryableError) as caught:
        send(dso, contract_out_for_signature("documenso"))
    assert caught.value.retry_after == 12
    with pytest.raises(PermanentError, match="Invalid email"):
        send(dso, contract_out_for_signature("documenso", email="broken"))


def test_completed_webhook_downloads_and_signs(dso, fake, client):
    row = contract_out_for_signature("documenso")
    document_id = send(dso, row)
    fake.complete(document_id)
    response = post(client, *fake.webhook(document_id))
    assert response.status_code == 200 and reload(row).status == "signed"
    from partnerflow.models import Contract
    from partnerflow.settings import get_settings

    with session_scope() as session:
        contract = session.get(Contract, row.contract_id)
    assert (get_settings().documents_dir / contract.signed_path).read_bytes() == FAKE_PDF


def test_wrong_or_missing_secret_replay_old_and_malformed_are_rejected(dso, fake, client, configure):
    row = contract_out_for_signature("documenso")
    document_id = send(dso, row)
    fake.complete(document_id)
    body, headers = fake.webhook(document_id)

    assert post(client, body, {**headers, "X-Documenso-Secret": "guess"}).status_code == 401
    assert post(client, body, {"Content-Type": "application/json"}).status_code == 401
    assert post(client, b"{not json", headers).status_code == 400
    assert post(client, json.dumps({"event": "DOCUMENT_COMPLETED"}).encode(), headers).status_code == 400
    old = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    assert post(client, *fake.webhook(document_id, created_at=old)).status_code == 400
    assert stored_events() == [] and reload(row).status == "sent"

    assert post(client, body, headers).status_code == 200
    replay = post(client, body, headers)  # acknowledged, so Documenso stops retrying; nothing done twice
    assert replay.status_code == 200 and replay.json()["outcome"] == "duplicate"
    assert len(stored_events()) == 1


def test_void_deletes_the_pending_document(dso, fake):
    row = contract_out_for_signature("documenso")
    document_id = send(dso, row)
    dso.void(document_id, "withdrawn")
    assert fake.documents[int(document_id)].status == "DELETED"


def test_rejected_document_closes_the_request(dso, fake, client):
    row = contract_out_for_signature("documenso")
    document_id = send(dso, row)
    fake.documents[int(document_id)].status = "REJECTED"  # what the API says once the signer rejected
    assert post(client, *fake.webhook(document_id, "DOCUMENT_REJECTED")).status_code == 200
    assert reload(row).status == "voided"
