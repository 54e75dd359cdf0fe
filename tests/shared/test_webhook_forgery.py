"""The forgery matrix: every webhook against every way a delivery can be forged, broken or replayed.

For each (webhook, case) the answer's status is asserted, and a snapshot of every table taken
before and after proves nothing was stored or changed. The genuine delivery is then posted and
must change state, which proves the set-up could have been changed by a delivery that got through.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from factories import DOCX, contract_out_for_signature, make_payout, partner_with_payout_details, payout_row
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlmodel import SQLModel

from partnerflow.models import Prospect, get_engine, session_scope
from partnerflow.providers.esign.dropbox_sign import HELLO
from partnerflow.settings import get_settings
from partnerflow.tasks.contracting.sending import esign_provider, send_request
from partnerflow.testing.documenso import FakeDocumenso
from partnerflow.testing.docusign import FakeDocuSign
from partnerflow.testing.dropbox_sign import FakeDropboxSign
from partnerflow.testing.stripe import WEBHOOK_SECRET, signed_event

CASES = ("no_signature", "wrong_signature", "wrong_secret", "empty_secret", "stale_timestamp", "replay",
         "malformed_json", "huge_body", "huge_body_unannounced", "wrong_content_type", "non_ascii_signature")
NON_ASCII = "é€ü"
MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
INBOUND_TOKEN = "inbound-token-0123456789abcdef"
INBOUND_LIMIT = 2_000_000


def snapshot() -> dict[str, list[tuple]]:
    """Every row of every table."""
    with get_engine().connect() as conn:
        return {table.name: [tuple(row) for row in conn.execute(
            select(table).order_by(*table.primary_key.columns))] for table in SQLModel.metadata.sorted_tables}


def huge(limit: int | None = None) -> bytes:
    return b"x" * ((limit or get_settings().web.web_max_body_bytes) + 1)


class Hook:
    """One webhook: how it is configured, a genuine delivery, and each forgery of it."""

    path = ""
    ok_status = 200
    status: dict[str, int] = {}

    def __init__(self, configure):
        self.configure = configure

    def setup(self) -> None:
        """Configure the secret and create the state a genuine delivery would change."""

    def secure(self) -> None:
        """Configure the verification secret properly."""

    def unconfigure(self) -> None:
        """Configure the verification secret as set but empty."""

    def genuine(self) -> tuple[bytes, dict]:
        raise NotImplementedError

    def forged(self, case: str) -> tuple[bytes, dict]:
        raise NotImplementedError

    def url(self, case: str | None = None) -> str:
        return self.path

    def acknowledged(self, response) -> bool:
        return response.status_code == self.ok_status


# --- SendGrid Event Webhook: ECDSA over timestamp + body ---------------------------------------

SG_SIG, SG_TS = "X-Twilio-Email-Event-Webhook-Signature", "X-Twilio-Email-Event-Webhook-Timestamp"


def sent_outreach() -> None:
    from partnerflow.tasks.outreach.batch import send_due
    from partnerflow.tasks.outreach.enrollment import enroll
    from partnerflow.tasks.outreach.sequences import load_sequence_files

    load_sequence_files()
    with session_scope() as session:
        session.add(Prospect(email="a@example.com", name="Ann"))
    enroll(now=MONDAY_NOON)
    assert send_due(now=MONDAY_NOON)["sent"] == 1


class SendgridEvents(Hook):
    path = "/webhooks/sendgrid/events"
    status = {"no_signature": 401, "wrong_signature": 403, "wrong_secret": 403, "empty_secret": 403,
              "stale_timestamp": 403, "malformed_json": 400, "huge_body": 413, "wrong_content_type": 415,
              "non_ascii_signature": 403}

    def setup(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.secure()
        sent_outreach()

    def secure(self):
        der = self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
        self.configure(sendgrid_webhook_public_key=base64.b64encode(der).decode())

    def unconfigure(self):
        self.configure(sendgrid_webhook_public_key="")

    def body(self) -> bytes:
        return json.dumps([{"event": "spamreport", "sg_event_id": "ev-1", "email": "a@example.com",
                            "timestamp": int(time.time())}]).encode()

    def signed(self, body: bytes, key=None, timestamp: int | None = None) -> dict:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        signature = (key or self.key).sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {SG_SIG: base64.b64encode(signature).decode(), SG_TS: ts, "Content-Type": "application/json"}

    def genuine(self):
        body = self.body()
        return body, self.signed(body)

    def forged(self, case):
        body, headers = self.genuine()
        if case == "no_signature":
            return body, {"Content-Type": "application/json"}
        if case == "wrong_signature":
            return body, {**headers, SG_SIG: base64.b64encode(b"\x30" * 70).decode()}
        if case == "wrong_secret":
            return body, self.signed(body, key=ec.generate_private_key(ec.SECP256R1()))
        if case == "stale_timestamp":
            return body, self.signed(body, timestamp=int(time.time()) - 3600)
        if case == "malformed_json":
            return b"[{not json", self.signed(b"[{not json")
        if case == "huge_body":
            return huge(), headers
        if case == "wrong_content_type":
            return body, {**headers, "Content-Type": "text/plain"}
        if case == "non_ascii_signature":
            return body, {**headers, SG_SIG: (NON_ASCII * 30).encode()}
        return body, headers


# --- SendGrid Inbound Parse: our secret token in the URL --------------------------------------

class SendgridInbound(Hook):
    path = "/webhooks/sendgrid/inbound"
    status = {"no_signature": 403, "wrong_signature": 403, "wrong_secret": 403, "empty_secret": 403,
              "malformed_json": 400, "huge_body": 413, "wrong_content_type": 415, "non_ascii_signature": 403}
    unsupported = {"stale_timestamp": "Inbound Parse posts carry no timestamp; a replay is stored once by digest"}

    def setup(self):
        self.configure(web_max_inbound_mail_bytes=INBOUND_LIMIT)  # mail with attachments has its own limit
        self.secure()
        sent_outreach()

    def secure(self):
        self.configure(sendgrid_inbound_token=INBOUND_TOKEN)

    def unconfigure(self):
        self.configure(sendgrid_inbound_token="")

    def url(self, case=None):
        token = {"no_signature": None, "wrong_signature": "x" * len(INBOUND_TOKEN),
                 "wrong_secret": "another-token-0123456789abcdef", "non_ascii_signature": NON_ASCII * 8,
                 }.get(case, INBOUND_TOKEN)
        return self.path + (f"?{urlencode({'token': token})}" if token else "")

    def genuine(self):
        form = {"from": "Ann <a@example.com>", "to": "partners@acme.example", "subject": "Re: hi",
                "text": "tell me more", "headers": "From: Ann <a@example.com>\nSubject: Re: hi\n"}
        return urlencode(form).encode(), {"Content-Type": "application/x-www-form-urlencoded"}

    def forged(self, case):
        body, headers = self.genuine()
        if case == "malformed_json":  # a broken multipart body
            return b"--b\r\nContent-Disposition: form-data\r\n\r\nno name\r\n", {
                "Content-Type": "multipart/form-data; boundary=b"}
        if case == "huge_body":
            return huge(INBOUND_LIMIT), headers
        if case == "wrong_content_type":
            return json.dumps({"from": "a@example.com"}).encode(), {"Content-Type": "application/json"}
        return body, headers


# --- Stripe: HMAC over "t.body" in Stripe-Signature --------------------------------------------

class Stripe(Hook):
    path = "/webhooks/stripe"
    status = {"no_signature": 400, "wrong_signature": 400, "wrong_secret": 400, "empty_secret": 404,
              "stale_timestamp": 400, "malformed_json": 400, "huge_body": 413, "wrong_content_type": 415,
              "non_ascii_signature": 400}

    def setup(self):
        self.secure()
        partner = partner_with_payout_details()
        self.payout_id = make_payout(partner, rail="stripe", status="sending")
        self.transfer = {"id": "tr_000000000001", "object": "transfer", "amount": 5000, "amount_reversed": 0,
                         "currency": "eur", "destination": "acct_partner_one", "reversed": False,
                         "metadata": {"payout_id": str(self.payout_id)},
                         "transfer_group": payout_row(self.payout_id).idempotency_key}
        self.delivery = signed_event("transfer.created", self.transfer, event_id="evt_matrix")

    def secure(self):
        self.configure(stripe_webhook_secret=WEBHOOK_SECRET, payout_rail="stripe", stripe_api_key="sk_test_x")

    def unconfigure(self):
        self.configure(stripe_webhook_secret="")

    def genuine(self):
        return self.delivery

    def forged(self, case):
        body, headers = self.genuine()
        t = int(time.time())
        if case == "no_signature":
            return body, {"Content-Type": "application/json"}
        if case == "wrong_signature":
            return body, {**headers, "Stripe-Signature": f"t={t},v1={'0' * 64}"}
        if case == "wrong_secret":
            return signed_event("transfer.created", self.transfer, secret="whsec_attacker", event_id="evt_matrix")
        if case == "stale_timestamp":
            return signed_event("transfer.created", self.transfer, timestamp=t - 600, event_id="evt_matrix")
        if case == "malformed_json":
            sig = hmac.new(WEBHOOK_SECRET.encode(), f"{t}.".encode() + b"{not json", hashlib.sha256).hexdigest()
            return b"{not json", {**headers, "Stripe-Signature": f"t={t},v1={sig}"}
        if case == "huge_body":
            return huge(), headers
        if case == "wrong_content_type":
            return body, {**headers, "Content-Type": "text/plain"}
        if case == "non_ascii_signature":
            return body, {**headers, "Stripe-Signature": f"t={t},v1={NON_ASCII * 20}".encode()}
        return body, headers


# --- e-signature vendors ----------------------------------------------------------------------

class EsignHook(Hook):
    vendor = ""
    fake = None

    def setup(self):
        self.secure()
        row = contract_out_for_signature(self.vendor)
        self.request_id = send_request(esign_provider(self.vendor), row.id, document=self.document,
                                       filename=self.filename, title="Partner agreement")
        self.sign_at_vendor()

    document, filename = DOCX, "contract.docx"


class DropboxSign(EsignHook):
    path = "/webhooks/dropbox-sign"
    vendor = "dropbox_sign"
    status = {"no_signature": 400, "wrong_signature": 401, "wrong_secret": 401, "empty_secret": 404,
              "stale_timestamp": 400, "malformed_json": 400, "huge_body": 413, "wrong_content_type": 415,
              "non_ascii_signature": 401}

    def secure(self):
        self.configure(esign_provider="dropbox_sign", dropbox_sign_api_key=self.fake.api_key,
                       dropbox_sign_api_host=self.fake.url, esign_timeout_seconds=3)

    def sign_at_vendor(self):
        self.fake.sign(self.request_id)
        self.form = self.fake.callback(self.request_id)

    def unconfigure(self):
        self.configure(dropbox_sign_api_key="")

    def acknowledged(self, response):
        return response.status_code == 200 and response.text == HELLO

    @staticmethod
    def encoded(form: dict) -> tuple[bytes, dict]:
        return urlencode(form).encode(), {"Content-Type": "application/x-www-form-urlencoded"}

    def genuine(self):
        return self.encoded(self.form)

    def with_event(self, **changes) -> tuple[bytes, dict]:
        payload = json.loads(self.form["json"])
        payload["event"].update(changes)
        payload["event"] = {k: v for k, v in payload["event"].items() if v is not None}
        return self.encoded({"json": json.dumps(payload)})

    def forged(self, case):
        if case == "no_signature":
            return self.with_event(event_hash=None)
        if case == "wrong_signature":
            return self.with_event(event_hash="0" * 64)
        if case == "wrong_secret":
            return self.encoded(self.fake.callback(self.request_id, key="attacker-key"))
        if case == "stale_timestamp":
            return self.encoded(self.fake.callback(self.request_id, event_time=int(time.time()) - 3 * 86400))
        if case == "malformed_json":
            return self.encoded({"json": "{not json"})
        if case == "huge_body":
            return huge(), {"Content-Type": "application/x-www-form-urlencoded"}
        if case == "wrong_content_type":
            return self.form["json"].encode(), {"Content-Type": "application/json"}
        if case == "non_ascii_signature":  # Dropbox Sign's hash travels in the body
            body, headers = self.with_event(event_hash=NON_ASCII * 21)
            return body, {**headers, "X-Note": NON_ASCII.encode()}
        return self.genuine()


class DocuSign(EsignHook):
    path = "/webhooks/docusign"
    vendor = "docusign"
    status = {"no_signature": 401, "wrong_signature": 401, "wrong_secret": 401, "empty_secret": 404,
              "stale_timestamp": 400, "malformed_json": 400, "huge_body": 413, "wrong_content_type": 415,
              "non_ascii_signature": 401}

    def secure(self):
        self.configure(esign_provider="docusign", docusign_access_token=self.fake.token,
                       docusign_account_id=self.fake.account_id, docusign_api_host=self.fake.url,
                       docusign_connect_hmac_key=self.fake.hmac_key, esign_timeout_seconds=3)

    def sign_at_vendor(self):
        self.fake.complete(self.request_id)
        self.delivery = self.fake.connect_notification(self.request_id)

    def unconfigure(self):
        self.configure(docusign_connect_hmac_key="")

    def genuine(self):
        return self.delivery

    def forged(self, case):
        body, headers = self.genuine()
        if case == "no_signature":
            return body, {"Content-Type": "application/json"}
        if case == "wrong_signature":
            return body, {**headers, "X-DocuSign-Signature-1": base64.b64encode(b"\0" * 32).decode()}
        if case == "wrong_secret":
            return self.fake.connect_notification(self.request_id, key="attacker-key")
        if case == "stale_timestamp":
            old = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
            return self.fake.connect_notification(self.request_id, generated=old)
        if case == "malformed_json":
            digest = hmac.new(self.fake.hmac_key.encode(), b"{not json", hashlib.sha256).digest()
            return b"{not json", {**headers, "X-DocuSign-Signature-1": base64.b64encode(digest).decode()}
        if case == "huge_body":
            return huge(), headers
        if case == "wrong_content_type":
            return body, {**headers, "Content-Type": "text/plain"}
        if case == "non_ascii_signature":
            return body, {**headers, "X-DocuSign-Signature-1": (NON_ASCII * 15).encode()}
        return body, headers


class Documenso(EsignHook):
    path = "/webhooks/documenso"
    vendor = "documenso"
    document, filename = b"%PDF-1.4\n% our contract\n%%EOF\n", "contract.pdf"
    status = {"no_signature": 401, "wrong_signature": 401, "wrong_secret": 401, "empty_secret": 404,
              "stale_timestamp": 400, "malformed_json": 400, "huge_body": 413, "wrong_content_type": 415,
              "non_ascii_signature": 401}

    def secure(self):
        self.configure(esign_provider="documenso", documenso_api_key=self.fake.api_key,
                       documenso_api_host=self.fake.url, documenso_webhook_secret=self.fake.webhook_secret,
                       esign_timeout_seconds=3)

    def sign_at_vendor(self):
        self.fake.complete(self.request_id)
        self.delivery = self.fake.webhook(self.request_id)

    def unconfigure(self):
        self.configure(documenso_webhook_secret="")

    def genuine(self):
        return self.delivery

    def forged(self, case):
        body, headers = self.genuine()
        if case == "no_signature":
            return body, {"Content-Type": "application/json"}
        if case == "wrong_signature":
            return body, {**headers, "X-Documenso-Secret": "x" * len(self.fake.webhook_secret)}
        if case == "wrong_secret":
            return self.fake.webhook(self.request_id, secret="attacker-chosen-secret")
        if case == "stale_timestamp":
            old = (datetime.now(UTC) - timedelta(days=3)).isoformat()
            return self.fake.webhook(self.request_id, created_at=old)
        if case == "malformed_json":
            return b"{not json", headers
        if case == "huge_body":
            return huge(), headers
        if case == "wrong_content_type":
            return body, {**headers, "Content-Type": "text/plain"}
        if case == "non_ascii_signature":
            return body, {**headers, "X-Documenso-Secret": (NON_ASCII * 8).encode()}
        return body, headers


HOOKS = {"sendgrid-events": SendgridEvents, "sendgrid-inbound": SendgridInbound, "stripe": Stripe,
         "dropbox-sign": DropboxSign, "docusign": DocuSign, "documenso": Documenso}
FAKES = {DropboxSign: FakeDropboxSign, DocuSign: FakeDocuSign, Documenso: FakeDocumenso}


@pytest.fixture(scope="module")
def fakes():
    servers = {hook: fake().start() for hook, fake in FAKES.items()}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture
def hook(request, configure, fakes):
    cls = HOOKS[request.param]
    cls.fake = fakes.get(cls)
    instance = cls(configure)
    instance.setup()
    return instance


@pytest.fixture
def client():
    from partnerflow.web.app import create_app

    return TestClient(create_app(), raise_server_exceptions=False)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("hook", list(HOOKS), indirect=True)
def test_a_forged_broken_or_replayed_delivery_stores_and_changes_nothing(hook, case, client):
    if case in getattr(hook, "unsupported", {}):
        pytest.skip(hook.unsupported[case])
    if case == "replay":
        body, headers = hook.genuine()
        assert hook.acknowledged(client.post(hook.url(), content=body, headers=headers))
        before = snapshot()
        again = client.post(hook.url(), content=body, headers=headers)
        # Acknowledged as delivered (or the vendor retries for days), and nothing done twice.
        assert hook.acknowledged(again), again.text
        assert snapshot() == before
        return

    before = snapshot()
    if case == "empty_secret":
        hook.unconfigure()
        body, headers = hook.genuine()
    else:
        body, headers = hook.forged(case)
    if case == "huge_body_unannounced":  # sent in chunks without a Content-Length: counted as it arrives
        body, headers = hook.forged("huge_body")
        body = iter([body[i:i + 65536] for i in range(0, len(body), 65536)])
    response = client.post(hook.url(case), content=body, headers=headers)
    assert response.status_code == hook.status.get(case, 413), response.text
    assert snapshot() == before

    # With the secret set properly, the genuine delivery still gets through, and it is what changes state.
    hook.secure()
    body, headers = hook.genuine()
    assert hook.acknowledged(client.post(hook.url(), content=body, headers=headers))
    assert snapshot() != before


@pytest.fixture
def queries_on_the_event_loop():
    """Every SQL statement run on a thread that is running an event loop (a handler blocking it)."""
    import asyncio

    from sqlalchemy import event

    seen: list[str] = []

    def check(conn, cursor, statement, *args):
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # a worker thread: fine
        seen.append(statement.split()[0])

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", check)
    yield seen
    event.remove(engine, "before_cursor_execute", check)


@pytest.mark.parametrize("hook", list(HOOKS), indirect=True)
def test_a_delivery_does_its_database_work_off_the_event_loop(hook, client, queries_on_the_event_loop):
    """One slow database write must not freeze every other request (/healthz included)."""
    body, headers = hook.genuine()
    assert hook.acknowledged(client.post(hook.url(), content=body, headers=headers))
    assert hook.acknowledged(client.post(hook.url(), content=body, headers=headers))  # the duplicate path too
    assert queries_on_the_event_loop == []


def test_unsubscribing_does_its_database_work_off_the_event_loop(client, queries_on_the_event_loop):
    from partnerflow.models.outreach import Enrollment
    from partnerflow.tasks.outreach.unsubscribe import unsubscribe_token

    sent_outreach()
    with session_scope() as session:
        enrollment_id = session.execute(select(Enrollment.id)).scalars().first()
    queries_on_the_event_loop.clear()
    response = client.post(f"/u/{unsubscribe_token(enrollment_id)}", content=b"List-Unsubscribe=One-Click",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200 and "Unsubscribed" in response.text
    assert queries_on_the_event_loop == []


UNSIGN = {
    DropboxSign: lambda fake, request_id: setattr(fake.requests[request_id], "status", "awaiting_signature"),
    DocuSign: lambda fake, request_id: setattr(fake.envelopes[request_id], "status", "sent"),
    Documenso: lambda fake, request_id: setattr(fake.documents[int(request_id)], "status", "PENDING"),
}


@pytest.mark.parametrize("hook", ["dropbox-sign", "docusign", "documenso"], indirect=True)
def test_a_signed_callback_is_believed_only_once_the_vendor_confirms_it(hook, client):
    """Dropbox Sign's hash covers only the event's time and type, Documenso sends a static secret:
    a callback that verifies can still lie about which request was signed."""
    from partnerflow.models import SignatureRequest

    body, headers = hook.genuine()  # verifies, says "signed"...
    UNSIGN[type(hook)](hook.fake, hook.request_id)  # ...but the vendor's API says otherwise
    before = snapshot()
    response = client.post(hook.url(), content=body, headers=headers)
    assert response.status_code == 503 and snapshot() == before  # the vendor retries; nothing stored

    hook.sign_at_vendor()
    assert hook.acknowledged(client.post(hook.url(), content=body, headers=headers))  # the retry completes
    with session_scope() as session:
        row = session.exec(select(SignatureRequest).where(SignatureRequest.provider_request_id == hook.request_id))
        assert row.scalars().one().status == "signed"


DECLINE = {  # (the callback saying "declined", what the vendor's API shows once it is true)
    DropboxSign: (lambda h: DropboxSign.encoded(h.fake.callback(h.request_id, "signature_request_declined")),
                  lambda fake, request_id: fake.decline(request_id, "no thanks")),
    DocuSign: (lambda h: h.fake.connect_notification(h.request_id, "envelope-declined"),
               lambda fake, request_id: setattr(fake.envelopes[request_id], "status", "declined")),
    Documenso: (lambda h: h.fake.webhook(h.request_id, "DOCUMENT_REJECTED"),
                lambda fake, request_id: setattr(fake.documents[int(request_id)], "status", "REJECTED")),
}


@pytest.mark.parametrize("hook", ["dropbox-sign", "docusign", "documenso"], indirect=True)
def test_a_declined_callback_is_believed_only_once_the_vendor_confirms_it(hook, client):
    """A replayed Dropbox Sign hash or a leaked Documenso secret must not void someone's contract."""
    from partnerflow.models import SignatureRequest

    callback, decline_at_vendor = DECLINE[type(hook)]
    UNSIGN[type(hook)](hook.fake, hook.request_id)  # out for signature, nobody declined
    body, headers = callback(hook)
    before = snapshot()
    assert client.post(hook.url(), content=body, headers=headers).status_code == 503
    assert snapshot() == before

    decline_at_vendor(hook.fake, hook.request_id)
    assert hook.acknowledged(client.post(hook.url(), content=body, headers=headers))
    with session_scope() as session:
        row = session.exec(select(SignatureRequest).where(SignatureRequest.provider_request_id == hook.request_id))
        assert row.scalars().one().status == "voided"
