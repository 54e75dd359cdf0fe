"""SendGrid Event Webhook (signed), one-click unsubscribe, and Inbound Parse replies."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sqlmodel import select

from partnerflow.models import Message, Prospect, WebhookEvent, session_scope
from partnerflow.models.mail import Suppression
from partnerflow.models.outreach import Enrollment
from partnerflow.tasks.outreach.batch import send_due
from partnerflow.tasks.outreach.enrollment import enroll
from partnerflow.tasks.outreach.sequences import load_sequence_files

MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SIG, TS = "X-Twilio-Email-Event-Webhook-Signature", "X-Twilio-Email-Event-Webhook-Timestamp"


@pytest.fixture
def key(configure):
    private = ec.generate_private_key(ec.SECP256R1())
    public_der = private.public_key().public_bytes(serialization.Encoding.DER,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    configure(sendgrid_webhook_public_key=base64.b64encode(public_der).decode())
    return private


@pytest.fixture
def client():
    from partnerflow.web.app import create_app

    return TestClient(create_app())


def signed(private, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    ts = str(timestamp if timestamp is not None else int(time.time()))
    signature = private.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {SIG: base64.b64encode(signature).decode(), TS: ts, "Content-Type": "application/json"}


@pytest.fixture
def sent(outbox) -> list[Message]:
    """Two prospects who got step 1 of the shipped sequence."""
    load_sequence_files()
    with session_scope() as session:
        session.add_all([Prospect(email="a@example.com", name="Ann"), Prospect(email="b@example.com", name="Bo")])
    enroll(now=MONDAY_NOON)
    assert send_due(now=MONDAY_NOON)["sent"] == 2
    with session_scope() as session:
        return list(session.exec(select(Message).order_by(Message.id)).all())


def rows(model):
    with session_scope() as session:
        return list(session.exec(select(model).order_by(model.id)).all())


def event(message: Message, kind: str, event_id: str, **extra) -> dict:
    return {"event": kind, "sg_event_id": event_id, "email": message.to_email, "timestamp": int(time.time()),
            "pf_message_id": str(message.id), "sg_message_id": "abc.filter0001", **extra}


def test_valid_signature_updates_state_and_stores_each_event_once(client, key, sent):
    body = json.dumps([event(sent[0], "delivered", "ev1"), event(sent[0], "open", "ev2"),
                       event(sent[1], "bounce", "ev3", type="bounce", reason="550 5.1.1 no such user")]).encode()
    response = client.post("/webhooks/sendgrid/events", content=body, headers=signed(key, body))
    assert response.status_code == 200 and response.json()["new"] == 3
    again = client.post("/webhooks/sendgrid/events", content=body, headers=signed(key, body))
    assert again.status_code == 200 and again.json()["duplicate"] == 3
    assert len(rows(WebhookEvent)) == 3
    with session_scope() as session:
        a, b = session.get(Message, sent[0].id), session.get(Message, sent[1].id)
        assert a.delivered_at and a.opened_at and a.status == "sent"
        assert b.status == "bounced" and "no such user" in b.error
        enrollment = session.exec(select(Enrollment).where(Enrollment.email == "b@example.com")).one()
        assert (enrollment.status, enrollment.stop_reason) == ("stopped", "bounce")
    assert [(s.email, s.reason) for s in rows(Suppression)] == [("b@example.com", "bounce")]


@pytest.mark.parametrize("kind,reason", [("spamreport", "spam_report"), ("unsubscribe", "unsubscribe"),
                                         ("group_unsubscribe", "unsubscribe")])
def test_spam_report_and_unsubscribe_events_suppress_and_stop(client, key, sent, kind, reason):
    body = json.dumps([event(sent[0], kind, "ev-" + kind)]).encode()
    assert client.post("/webhooks/sendgrid/events", content=body, headers=signed(key, body)).status_code == 200
    assert [(s.email, s.reason) for s in rows(Suppression)] == [("a@example.com", reason)]
    stopped = [e for e in rows(Enrollment) if e.status == "stopped"]
    assert [(e.email, e.stop_reason) for e in stopped] == [("a@example.com", reason)]


def test_soft_bounce_fails_the_message_but_does_not_suppress(client, key, sent):
    body = json.dumps([event(sent[0], "bounce", "ev-soft", type="blocked", reason="421 try later")]).encode()
    client.post("/webhooks/sendgrid/events", content=body, headers=signed(key, body))
    assert rows(Suppression) == []
    with session_scope() as session:
        assert session.get(Message, sent[0].id).status == "failed"
    assert {e.status for e in rows(Enrollment)} == {"active"}


@pytest.mark.parametrize("case", ["unsigned", "forged", "tampered", "replayed", "future", "malformed_sig",
                                  "malformed_body", "wrong_key"])
def test_bad_posts_get_4xx_and_change_nothing(client, key, sent, case):
    body = json.dumps([event(sent[0], "spamreport", "ev-bad")]).encode()
    headers = signed(key, body)
    if case == "unsigned":
        headers = {"Content-Type": "application/json"}
    elif case == "forged":
        headers = signed(ec.generate_private_key(ec.SECP256R1()), body)
    elif case == "tampered":
        body = body.replace(b"spamreport", b"unsubscribe")
    elif case == "replayed":
        headers = signed(key, body, int(time.time()) - 3600)
    elif case == "future":
        headers = signed(key, body, int(time.time()) + 3600)
    elif case == "malformed_sig":
        headers[SIG] = "not base64 !!"
    elif case == "malformed_body":
        body = b'{"event": "open"}'
        headers = signed(key, body)
    elif case == "wrong_key":
        headers[TS] = "yesterday"
    response = client.post("/webhooks/sendgrid/events", content=body, headers=headers)
    assert 400 <= response.status_code < 500, response.text
    assert rows(WebhookEvent) == [] and rows(Suppression) == []
    assert {e.status for e in rows(Enrollment)} == {"active"}


def test_one_click_unsubscribe_and_link_are_idempotent(client, sent, outbox):
    import email
    import email.policy

    mail = email.message_from_bytes(sorted(outbox.glob("*.eml"))[0].read_bytes(), policy=email.policy.default)
    url = mail["List-Unsubscribe"].strip("<>").replace("http://127.0.0.1:8765", "")
    # GET only shows a confirmation (link scanners must not unsubscribe anyone).
    page = client.get(url)
    assert page.status_code == 200 and "<form method='post'>" in page.text and rows(Suppression) == []
    for _ in range(2):  # RFC 8058 one-click POST, twice
        response = client.post(url, content=b"List-Unsubscribe=One-Click",
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert response.status_code == 200 and "Unsubscribed" in response.text
    assert client.post(url).status_code == 200  # the page's button, after the fact
    assert [(s.email, s.reason, s.source) for s in rows(Suppression)] == [(mail["To"], "unsubscribe", "one-click")]
    enrollment = [e for e in rows(Enrollment) if e.email == mail["To"]][0]
    assert (enrollment.status, enrollment.stop_reason) == ("stopped", "unsubscribe")
    # Later runs never mail this address again.
    from datetime import timedelta

    send_due(now=MONDAY_NOON + timedelta(days=30))
    recipients = [email.message_from_bytes(p.read_bytes())["To"] for p in outbox.glob("*.eml")]
    assert recipients.count(mail["To"]) == 1


def test_unsubscribe_token_cannot_be_guessed(client, sent):
    enrollment_id = rows(Enrollment)[0].id
    assert client.get(f"/u/{enrollment_id}-{'0' * 32}").status_code == 404
    assert client.post(f"/u/{enrollment_id}-{'0' * 32}", content=b"List-Unsubscribe=One-Click").status_code == 404
    assert rows(Suppression) == []


INBOUND_TOKEN = "inbound-token-0123456789"
INBOUND = f"/webhooks/sendgrid/inbound?token={INBOUND_TOKEN}"


@pytest.fixture
def inbound(configure):
    configure(sendgrid_inbound_token=INBOUND_TOKEN)
    return INBOUND


def test_inbound_reply_stops_the_enrollment(client, sent, inbound):
    headers = ("From: Ann <A@Example.com>\nTo: partners@acme.example\nSubject: Re: hi\n"
               f"In-Reply-To: <outreach.enrollment.{rows(Enrollment)[0].id}.step.0@acme.example>\n")
    form = {"from": "Ann <someone-else@example.org>", "to": "partners@acme.example", "subject": "Re: hi",
            "text": "Sounds good, tell me more", "headers": headers}
    response = client.post(inbound, data=form)
    assert response.status_code == 200 and response.json()["matched"] == 1
    assert client.post(inbound, data=form).json()["duplicate"] is True
    first = rows(Enrollment)[0]
    assert (first.status, first.stop_reason) == ("stopped", "reply")
    with session_scope() as session:
        assert session.exec(select(Prospect).where(Prospect.email == "a@example.com")).one().status == "replied"


def test_inbound_reply_matched_by_sender_address(client, sent, inbound):
    form = {"from": "Bo <b@example.com>", "to": "partners@acme.example", "subject": "question",
            "text": "hello", "headers": "From: Bo <b@example.com>\nSubject: question\n"}
    assert client.post(inbound, data=form).json()["matched"] == 1
    assert [(e.email, e.status) for e in rows(Enrollment)] == [("a@example.com", "active"),
                                                               ("b@example.com", "stopped")]


def test_inbound_token_is_enforced(client, sent, inbound):
    form = {"from": "b@example.com", "headers": "From: b@example.com\n", "text": "hi"}
    assert client.post("/webhooks/sendgrid/inbound", data=form).status_code == 403
    assert client.post(inbound + "x", data=form).status_code == 403
    assert client.post("/webhooks/sendgrid/inbound?token=t%C3%B6ken-%E2%82%AC", data=form).status_code == 403
    assert {e.status for e in rows(Enrollment)} == {"active"}
    assert client.post(inbound, data=form).status_code == 200


def test_without_an_inbound_token_configured_every_reply_is_refused(client, sent, configure):
    """A forged "reply" must not stop real enrollments just because nobody set the token."""
    configure(sendgrid_inbound_token=None)
    form = {"from": "b@example.com", "headers": "From: b@example.com\n", "text": "hi"}
    for query in ("", "?token=", "?token=x"):
        assert client.post("/webhooks/sendgrid/inbound" + query, data=form).status_code == 403
    assert rows(WebhookEvent) == [] and {e.status for e in rows(Enrollment)} == {"active"}
