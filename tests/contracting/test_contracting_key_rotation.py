"""Values made from the secret key survive a key rotation: the e-sign reference an unclear send is
looked up by, the built-in signing link a reminder re-mails, and the onboarding link a re-sent mail carries."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import timedelta

import pytest
import time_machine
from factories import DOCX, approved_partner, contract_out_for_signature
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import select
from support import link, mail_text

from partnerflow.flows.contracting_sweeps import send_signing_reminders
from partnerflow.models import AuditLog, SignatureRequest, session_scope, utcnow
from partnerflow.models.contracting import SignatureSendAttempt
from partnerflow.providers.errors import AmbiguousError
from partnerflow.providers.esign.base import Envelope
from partnerflow.providers.esign.dropbox_sign import REFERENCE_FIELD, DropboxSignProvider
from partnerflow.settings import get_settings
from partnerflow.tasks.contracting.documents import generate_contract
from partnerflow.tasks.contracting.sending import legacy_references, send_request
from partnerflow.tasks.contracting.signing import request_signature
from partnerflow.tasks.contracting.signing_page import find_by_token
from partnerflow.tasks.onboarding.activation import ensure_onboarding, onboarding_url, provision_codes
from partnerflow.tasks.onboarding.details import find_onboarding
from partnerflow.tasks.onboarding.provisioning import send_welcome
from partnerflow.testing.dropbox_sign import FakeDropboxSign
from partnerflow.web.app import create_app

OLD_KEY = "old-key-" + "o" * 40
NEW_KEY = "new-key-" + "n" * 40


def rotate(configure) -> None:
    configure(secret_key=NEW_KEY, previous_secret_keys=OLD_KEY)


def retire_old_key(configure) -> None:
    configure(secret_key=NEW_KEY, previous_secret_keys=None)


def reload(row) -> SignatureRequest:
    with session_scope() as session:
        return session.get(SignatureRequest, row.id)


def token_of(path: str) -> str:
    return path.rsplit("/", 1)[1]


# --- the reference an unclear send is looked up by ------------------------------------------

@pytest.fixture(scope="module")
def fake():
    server = FakeDropboxSign().start()
    yield server
    server.stop()


@pytest.fixture
def dropbox(fake, configure):
    fake.requests.clear()
    fake.received.clear()
    fake.faults.clear()
    configure(secret_key=OLD_KEY, esign_provider="dropbox_sign", dropbox_sign_api_key=fake.api_key,
              dropbox_sign_api_host=fake.url, esign_timeout_seconds=3, esign_reconcile_after_seconds=600)
    return fake


def send(row) -> str:
    return send_request(DropboxSignProvider(get_settings().esign), row.id, document=DOCX, filename="contract.docx",
                        title="Partner agreement")


def test_an_unclear_send_is_found_after_a_key_rotation_and_never_sent_again(dropbox, configure):
    row = contract_out_for_signature("dropbox_sign")
    dropbox.faults.stall_next(4, after_effect=True, path_contains="/send")  # created, but the answer is lost
    with pytest.raises(AmbiguousError):
        send(row)
    rotate(configure)

    # Even once the reconcile wait is over (when "not found" would be trusted), the search finds it.
    with time_machine.travel(utcnow() + timedelta(seconds=601), tick=False):
        provider_id = send(row)

    assert dropbox.calls("POST", "/v3/signature_request/send") == 1
    assert list(dropbox.requests) == [provider_id]
    assert dropbox.requests[provider_id].metadata == {REFERENCE_FIELD: reload(row).reference}
    assert reload(row).provider_request_id == provider_id and reload(row).status == "sent"


def test_a_row_from_before_stored_references_is_found_under_the_key_of_its_send(dropbox, configure):
    row = contract_out_for_signature("dropbox_sign")
    with session_scope() as session:  # as a row made before migration 0006 is: no reference stored
        session.execute(update(SignatureRequest).where(SignatureRequest.id == row.id).values(reference=None))
        legacy = legacy_references(session.get(SignatureRequest, row.id))[0]  # under the old key, newest then
        session.add(SignatureSendAttempt(signature_request_id=row.id, attempted_at=utcnow()))
    sent_then = DropboxSignProvider(get_settings().esign).send(
        Envelope(reference=legacy, title="Partner agreement", message="", document=DOCX, filename="contract.docx",
                 signer_name="Ana Lopez", signer_email="ana@example.com"))
    rotate(configure)

    with time_machine.travel(utcnow() + timedelta(seconds=601), tick=False):
        assert send(row) == sent_then

    assert dropbox.calls("POST", "/v3/signature_request/send") == 1
    assert reload(row).reference == legacy  # kept from now on, whatever the keys do


def test_a_new_request_carries_a_stored_reference_the_same_before_and_after_a_rotation(dropbox, configure):
    row = contract_out_for_signature("dropbox_sign")
    assert re.fullmatch(r"pf[0-9a-f]{24}", row.reference)
    rotate(configure)
    provider_id = send(row)
    assert dropbox.requests[provider_id].metadata == {REFERENCE_FIELD: row.reference}


# --- the built-in signing link a reminder re-mails ------------------------------------------

def reminder_link(outbox) -> str:
    [reminder] = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
                  for p in sorted(outbox.glob("sign-reminder*.eml"))]
    return re.search(r"https?://[^/\s]+(/sign/[A-Za-z0-9_\-]+)", mail_text(reminder)).group(1)


def test_a_signing_reminder_mailed_after_a_rotation_opens_the_page_and_so_does_the_first_link(configure, outbox):
    configure(secret_key=OLD_KEY, signing_reminder_days=3, signing_max_reminders=2, signing_expiry_days=14)
    start = utcnow()
    row = request_signature(generate_contract(approved_partner()).id)
    first = link(outbox, "/sign/")
    rotate(configure)

    with time_machine.travel(start + timedelta(days=3, minutes=1), tick=False):
        assert send_signing_reminders.fn() == 1
    reminded = reminder_link(outbox)

    client = TestClient(create_app())
    for path in (first, reminded):
        assert find_by_token(token_of(path))[0].id == row.id
        assert client.get(path).status_code == 200

    retire_old_key(configure)  # links made under the retired key stop working; the reminder's still works
    assert find_by_token(token_of(first)) is None
    assert find_by_token(token_of(reminded))[0].id == row.id
    assert find_by_token(token_of(reminded)[:-1] + "x") is None  # the MAC is checked, not only the reference


# --- the onboarding link a re-sent mail carries ---------------------------------------------

def test_an_onboarding_mail_sent_after_a_rotation_carries_the_link_first_issued(configure, outbox):
    configure(secret_key=OLD_KEY)
    partner_id = approved_partner()
    ensure_onboarding(partner_id)  # the row (and its link's hash) is made, then the run dies before mailing
    issued = onboarding_url(partner_id)
    rotate(configure)

    send_welcome(partner_id, *provision_codes(partner_id))

    mailed = link(outbox, "/onboarding/")
    assert issued.endswith(mailed)
    assert find_onboarding(token_of(mailed)).partner_id == partner_id


def test_once_the_key_of_an_onboarding_link_is_retired_a_new_link_replaces_it(configure):
    configure(secret_key=OLD_KEY)
    partner_id = approved_partner()
    ensure_onboarding(partner_id)
    old = token_of(onboarding_url(partner_id))
    retire_old_key(configure)

    new = token_of(onboarding_url(partner_id))

    assert new != old and find_onboarding(old) is None
    assert find_onboarding(new).partner_id == partner_id
    assert token_of(onboarding_url(partner_id)) == new  # the same link on every later mail
    with session_scope() as session:
        reissued = session.exec(select(AuditLog).where(AuditLog.action == "onboarding.link_reissued")).all()
    assert [a.subject_id for a in reissued] == [str(partner_id)]
