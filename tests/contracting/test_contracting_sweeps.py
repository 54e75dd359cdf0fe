"""Reminder, expiry and withdrawal sweeps over open signature requests, with frozen time."""

from __future__ import annotations

import email
import email.policy
from datetime import timedelta

import pytest
import time_machine
from factories import DOCX, contract_out_for_signature
from sqlmodel import select

from partnerflow.flows.contracting_sweeps import (
    expire_signature_requests,
    send_signing_reminders,
    signature_sweeps,
)
from partnerflow.models import (
    Application,
    ApplicationStatus,
    AuditLog,
    Contract,
    SignatureRequest,
    session_scope,
    utcnow,
)
from partnerflow.tasks.contracting.sending import esign_provider, reference_for, send_request
from partnerflow.tasks.contracting.sweeps import void_for_application
from partnerflow.testing.docusign import FakeDocuSign
from partnerflow.testing.dropbox_sign import FakeDropboxSign


@pytest.fixture(scope="module")
def dropbox():
    server = FakeDropboxSign().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def docusign():
    server = FakeDocuSign().start()
    yield server
    server.stop()


@pytest.fixture
def settings(configure, dropbox, docusign):
    return configure(signing_reminder_days=3, signing_max_reminders=2, signing_expiry_days=14,
                     dropbox_sign_api_key=dropbox.api_key, dropbox_sign_api_host=dropbox.url,
                     docusign_access_token=docusign.token, docusign_account_id=docusign.account_id,
                     docusign_api_host=docusign.url, docusign_connect_hmac_key=docusign.hmac_key,
                     esign_timeout_seconds=5)


def sent_through(provider_name: str, **kwargs) -> SignatureRequest:
    row = contract_out_for_signature(provider_name, **kwargs)
    send_request(esign_provider(provider_name), row.id, document=DOCX, filename="contract.docx", title="Agreement")
    return reload(row)


def reload(row) -> SignatureRequest:
    with session_scope() as session:
        return session.get(SignatureRequest, row.id)


def contract_of(row) -> Contract:
    with session_scope() as session:
        return session.get(Contract, row.contract_id)


def reminders(outbox) -> list[email.message.Message]:
    if not outbox.exists():
        return []
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in sorted(outbox.glob("sign-reminder*.eml"))]


def actions(name: str) -> list[AuditLog]:
    with session_scope() as session:
        return list(session.exec(select(AuditLog).where(AuditLog.action == name)))


def test_reminders_every_n_days_at_most_the_maximum_and_never_twice(settings, outbox):
    start = utcnow()
    row = sent_through("builtin", created_at=start)

    with time_machine.travel(start + timedelta(days=2, hours=23), tick=False):
        assert send_signing_reminders.fn() == 0
    with time_machine.travel(start + timedelta(days=3, minutes=1), tick=False):
        assert send_signing_reminders.fn() == 1
        assert send_signing_reminders.fn() == 0  # a re-run the same hour sends nothing
    with time_machine.travel(start + timedelta(days=5), tick=False):
        assert send_signing_reminders.fn() == 0
    with time_machine.travel(start + timedelta(days=6, minutes=1), tick=False):
        assert send_signing_reminders.fn() == 1
    with time_machine.travel(start + timedelta(days=9, minutes=1), tick=False):
        assert send_signing_reminders.fn() == 0  # the maximum (2) is reached

    sent = reminders(outbox)
    assert len(sent) == 2 and reload(row).reminders_sent == 2
    assert all(m["To"] == "ana@example.com" and "waiting for your signature" in m["Subject"] for m in sent)
    # The builtin link is derived from the row, so the reminder carries a working link again.
    body = sent[0].get_body(preferencelist=("plain",)).get_content()
    assert esign_provider("builtin").signing_link(reference_for(reload(row))).url in body
    assert len(actions("signature.reminded")) == 2


def test_signed_expired_and_saas_rows_get_the_right_reminder_or_none(settings, outbox):
    start = utcnow()
    signed = contract_out_for_signature("builtin", email="done@example.com", created_at=start, status="signed")
    saas = sent_through("dropbox_sign", email="saas@example.com", created_at=start)
    with time_machine.travel(start + timedelta(days=3, minutes=1), tick=False):
        assert send_signing_reminders.fn() == 1
    [only] = reminders(outbox)
    assert only["To"] == "saas@example.com"
    assert "Dropbox Sign" in only.get_body(preferencelist=("plain",)).get_content()
    assert reload(signed).reminders_sent == 0 and reload(saas).reminders_sent == 1


def test_expiry_after_m_days_cancels_at_the_provider(settings, dropbox, docusign):
    start = utcnow()
    at_dropbox = sent_through("dropbox_sign", created_at=start)
    at_docusign = sent_through("docusign", email="bo@example.com", created_at=start)

    with time_machine.travel(start + timedelta(days=13, hours=23), tick=False):
        assert expire_signature_requests.fn() == 0
    with time_machine.travel(start + timedelta(days=14, minutes=1), tick=False):
        assert expire_signature_requests.fn() == 2
        assert expire_signature_requests.fn() == 0

    assert dropbox.requests[at_dropbox.provider_request_id].status == "cancelled"
    assert docusign.envelopes[at_docusign.provider_request_id].status == "voided"
    for row in (at_dropbox, at_docusign):
        assert reload(row).status == "expired" and contract_of(row).status == "expired"
    assert len(actions("signature.expired")) == 2


def test_a_requests_own_expiry_date_wins(settings):
    start = utcnow()
    row = contract_out_for_signature("builtin", created_at=start)
    with session_scope() as session:
        stored = session.get(SignatureRequest, row.id)
        stored.expires_at = start + timedelta(days=2)
        session.add(stored)
    with time_machine.travel(start + timedelta(days=2, minutes=1), tick=False):
        assert expire_signature_requests.fn() == 1
    assert reload(row).status == "expired"


def test_expiry_waits_when_the_provider_is_down_and_leaves_completed_requests_to_their_callback(settings, dropbox):
    start = utcnow()
    flaky = sent_through("dropbox_sign", created_at=start)
    completed = sent_through("dropbox_sign", email="late@example.com", created_at=start)
    dropbox.sign(completed.provider_request_id)  # signed at the provider; the callback is on its way
    dropbox.faults.fail_next(503, path_contains=f"/cancel/{flaky.provider_request_id}")

    with time_machine.travel(start + timedelta(days=15), tick=False):
        assert expire_signature_requests.fn() == 0
        assert reload(flaky).status == "sent" and reload(completed).status == "sent"
        assert [a.details["provider_reason"] for a in actions("signature.void_refused")][0].count("cancel") >= 1
        assert expire_signature_requests.fn() == 1  # the provider is back: the flaky one expires now
    assert reload(flaky).status == "expired" and reload(completed).status == "sent"


def test_withdrawn_application_voids_its_request_with_the_reason(settings, docusign):
    row = sent_through("docusign")
    other = sent_through("docusign", email="stays@example.com")
    application_id = contract_of(row).application_id

    assert void_for_application(application_id, "applicant withdrew", actor="Ana Lopez") == 1
    assert void_for_application(application_id, "applicant withdrew") == 0

    envelope = docusign.envelopes[row.provider_request_id]
    assert envelope.status == "voided" and envelope.voided_reason == "applicant withdrew"
    assert reload(row).status == "voided" and contract_of(row).status == "voided"
    assert reload(other).status == "sent"
    [trail] = actions("signature.voided")
    assert trail.actor == "Ana Lopez" and trail.details["application_id"] == application_id


def test_sweep_flow_voids_withdrawn_expires_overdue_and_reminds(settings, dropbox, outbox):
    long_ago = utcnow() - timedelta(days=20)
    a_while_ago = utcnow() - timedelta(days=4)
    overdue = sent_through("dropbox_sign", email="old@example.com", created_at=long_ago)
    sent_through("builtin", email="wait@example.com", created_at=a_while_ago)
    withdrawn = sent_through("dropbox_sign", email="gone@example.com", created_at=a_while_ago)
    with session_scope() as session:
        application = session.get(Application, contract_of(withdrawn).application_id)
        application.status = ApplicationStatus.WITHDRAWN
        session.add(application)

    assert signature_sweeps() == {"completed": 0, "voided": 1, "expired": 1, "reminded": 1}
    assert reload(withdrawn).status == "voided"
    assert dropbox.requests[withdrawn.provider_request_id].status == "cancelled"
    assert reload(overdue).status == "expired"
    assert [m["To"] for m in reminders(outbox)] == ["wait@example.com"]
    assert signature_sweeps() == {"completed": 0, "voided": 0, "expired": 0, "reminded": 0}


def test_sweeps_are_deployed_on_an_hourly_schedule():
    from partnerflow.deployments import all_deployments

    [deployment] = [d for d in all_deployments("contracting") if d.name == "signature-sweeps"]
    assert deployment.name == "signature-sweeps"
    assert deployment.entrypoint == "partnerflow.flows.contracting_sweeps.signature_sweeps"
    assert deployment.schedules[0].schedule.cron == "17 * * * *"


def test_a_stored_signed_callback_that_could_not_be_finished_is_completed_by_the_sweep(settings, docusign):
    from fastapi.testclient import TestClient

    from partnerflow.flows.contracting_sweeps import finish_stored_completions
    from partnerflow.web.app import create_app

    row = sent_through("docusign")
    docusign.complete(row.provider_request_id)
    body, headers = docusign.connect_notification(row.provider_request_id)
    docusign.faults.fail_next(500, path_contains="/documents/combined")
    assert TestClient(create_app()).post("/webhooks/docusign", content=body, headers=headers).status_code == 503
    assert reload(row).status == "sent"  # stored, not acted on; suppose Connect gives up here

    assert finish_stored_completions.fn() == 0  # too fresh: a live request may still be on it
    with time_machine.travel(utcnow() + timedelta(minutes=11), tick=False):
        assert finish_stored_completions.fn() == 1
        assert finish_stored_completions.fn() == 0
    assert reload(row).status == "signed" and contract_of(row).status == "signed"


def test_signed_at_the_provider_after_expiry_is_flagged_not_silently_signed(settings, dropbox):
    from fastapi.testclient import TestClient

    from partnerflow.web.app import create_app

    start = utcnow()
    row = sent_through("dropbox_sign", created_at=start)
    dropbox.faults.fail_next(404, path_contains="/cancel/")  # gone at the provider: expires here anyway
    with time_machine.travel(start + timedelta(days=15), tick=False):
        assert expire_signature_requests.fn() == 1
    dropbox.sign(row.provider_request_id)
    response = TestClient(create_app()).post("/webhooks/dropbox-sign", data=dropbox.callback(row.provider_request_id))
    assert response.status_code == 200
    assert reload(row).status == "expired" and contract_of(row).status == "expired"
    [flag] = actions("signature.signed_after_close")
    assert flag.details["status"] == "expired"


def test_polling_completes_requests_whose_callbacks_never_came(settings, dropbox, docusign, configure):
    from partnerflow.flows.contracting_sweeps import poll_unsigned

    configure(esign_poll_after_hours=24)
    start = utcnow()
    signed_quietly = sent_through("dropbox_sign", created_at=start)
    still_open = sent_through("docusign", email="bo@example.com", created_at=start)
    dropbox.sign(signed_quietly.provider_request_id)

    assert poll_unsigned.fn() == 0  # too early to ask
    assert dropbox.calls("GET", f"/v3/signature_request/{signed_quietly.provider_request_id}") == 0
    with time_machine.travel(start + timedelta(hours=25), tick=False):
        assert poll_unsigned.fn() == 1
        assert poll_unsigned.fn() == 0
    assert reload(signed_quietly).status == "signed" and contract_of(signed_quietly).status == "signed"
    assert reload(still_open).status == "sent"
