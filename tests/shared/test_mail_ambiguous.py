"""A one-off mail whose send may have been accepted is never sent again: it waits to be settled.

SendGrid's `processed` event or an outbox lookup settles it; otherwise the sweep fails it after
`mail_unconfirmed_after_seconds` and mails the team once. Fault test: the process is SIGKILLed
between the provider call and our status update, and the provider's own record shows one mail.
"""

from __future__ import annotations

import email
import os
import signal
import socket
import subprocess
import sys
from datetime import timedelta

import pytest
from prefect.settings import PREFECT_API_URL
from sqlmodel import select

from partnerflow.flows.mail_sweeps import sweep_unconfirmed_mail
from partnerflow.models import AuditLog, Message, session_scope, utcnow
from partnerflow.providers.email import sendgrid as sg_module
from partnerflow.settings import get_settings
from partnerflow.tasks.shared.faults import KILL_AT, TEST_SWITCH, armed
from partnerflow.tasks.shared.mail import deliver
from partnerflow.tasks.shared.unconfirmed_mail import settle_unconfirmed_mail
from partnerflow.testing.sendgrid import FakeSendGrid

KEY = "notice:42"
CONTEXT = {"name": "Pat"}


@pytest.fixture
def fake():
    server = FakeSendGrid().start()
    yield server
    server.stop()


@pytest.fixture
def sendgrid(fake, configure, monkeypatch):
    monkeypatch.setattr(sg_module, "_sleep", lambda _seconds: None)
    configure(email_provider="sendgrid", sendgrid_api_key="SG.test-key", sendgrid_api_host=fake.url,
              sendgrid_timeout_seconds=0.5, mail_unconfirmed_after_seconds=3600)
    return fake


def _send() -> Message:
    return deliver(KEY, kind="notice", to_email="pat@example.com", template="shared/test_notice", context=CONTEXT)


def _row(key: str = KEY) -> Message:
    with session_scope() as session:
        return session.exec(select(Message).where(Message.idempotency_key == key)).one()


def _actions() -> list[str]:
    with session_scope() as session:
        return [a.action for a in session.exec(select(AuditLog).order_by(AuditLog.id)).all()]


def _to(fake: FakeSendGrid, address: str) -> list[dict]:
    return [m for m in fake.messages() if m["to"] == address]


def test_a_timeout_after_sendgrid_accepted_leaves_the_mail_sending_and_a_retry_does_not_resend(sendgrid):
    sendgrid.faults.stall_next(1.5, after_effect=True)
    message = _send()  # no exception: the task's retries must not run it again
    assert message.status == "sending"
    assert _row().attempted_at is not None and "mail.unconfirmed" in _actions()
    again = _send()  # a retried task or re-run flow finds the row and stops
    assert again.status == "sending"
    assert sendgrid.attempts == 1 and sendgrid.accepted_messages == 1


def test_sendgrids_processed_event_settles_the_mail_and_the_sweep_leaves_it(sendgrid):
    from partnerflow.web.outreach import apply_sendgrid_events  # the webhook's handler, as outreach uses it

    sendgrid.faults.stall_next(1.5, after_effect=True)
    message = _send()
    apply_sendgrid_events([{"event": "processed", "sg_event_id": "ev-1", "pf_message_id": str(message.id),
                            "timestamp": int(utcnow().timestamp())}])
    assert _row().status == "sent"
    assert settle_unconfirmed_mail(now=utcnow() + timedelta(days=2)).get("failed", 0) == 0
    assert _row().status == "sent" and sendgrid.accepted_messages == 1


def test_unconfirmed_mail_is_failed_after_the_setting_and_the_team_is_told_once(sendgrid):
    sendgrid.faults.stall_next(1.5, after_effect=True)
    _send()
    attempted = _row().attempted_at
    early = settle_unconfirmed_mail(now=attempted + timedelta(minutes=59))
    assert early["waiting"] == 1 and _row().status == "sending"
    late = settle_unconfirmed_mail(now=attempted + timedelta(minutes=61))
    assert late["failed"] == 1 and late["team_told"] == 1
    row = _row()
    assert row.status == "failed" and "never confirmed" in row.error
    assert "mail.unconfirmed_failed" in _actions()
    [alert] = _to(sendgrid, get_settings().team_email)
    assert f"Message {row.id} (notice) to pat@example.com" in alert["content"]["text/plain"]
    again = settle_unconfirmed_mail(now=attempted + timedelta(days=3))
    assert again.get("failed", 0) == 0 and again["team_told"] == 0
    assert len(_to(sendgrid, "pat@example.com")) == 1 and len(_to(sendgrid, get_settings().team_email)) == 1


def test_a_refused_alert_is_sent_by_the_next_sweep(sendgrid):
    sendgrid.faults.stall_next(1.5, after_effect=True)
    _send()
    later = _row().attempted_at + timedelta(hours=2)
    sendgrid.faults.fail_next(500, times=5)  # the first try and every retry of the alert
    first = settle_unconfirmed_mail(now=later)
    assert first["failed"] == 1 and first["team_told"] == 0 and first["alerts_deferred"] == 1
    second = settle_unconfirmed_mail(now=later)
    assert second["team_told"] == 1
    assert len(_to(sendgrid, get_settings().team_email)) == 1


def test_a_crash_between_claim_and_send_is_failed_not_sent(sendgrid):
    from partnerflow.tasks.shared.mail import claim, record_intent  # the first half of deliver, then a crash

    row = record_intent(KEY, kind="notice", to_email="pat@example.com", subject="Hello Pat")
    assert claim(row.id, ("pending",))
    assert _send().status == "sending" and sendgrid.attempts == 0  # a re-run does not send it blindly
    result = settle_unconfirmed_mail(now=utcnow() + timedelta(hours=2))
    assert result["failed"] == 1 and result["team_told"] == 1
    assert _to(sendgrid, "pat@example.com") == []


# --- SIGKILL between the provider call and the status update ---

RUN = """
from partnerflow.tasks.shared.mail import deliver
row = deliver("notice:42", kind="notice", to_email="pat@example.com", template="shared/test_notice",
              context={"name": "Pat"})
print(row.status)
"""


def _run(kill: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in (KILL_AT, TEST_SWITCH)}
    env["PREFECT_API_URL"] = PREFECT_API_URL.value() or ""
    if kill:
        env.update(armed("mail.after_send"))
    return subprocess.run([sys.executable, "-c", RUN], env=env, capture_output=True, text=True, timeout=120)


def test_sigkill_after_sendgrid_accepted_then_rerun_and_sweep_mail_exactly_once(sendgrid):
    killed = _run(kill=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert _row().status == "sending" and sendgrid.accepted_messages == 1
    rerun = _run(kill=False)  # the flow's retry or a re-run
    assert rerun.returncode == 0 and rerun.stdout.strip() == "sending", rerun.stderr[-2000:]
    result = settle_unconfirmed_mail(now=utcnow() + timedelta(hours=2))
    assert result["failed"] == 1 and result["team_told"] == 1
    assert len(_to(sendgrid, "pat@example.com")) == 1  # SendGrid's own record: once


def test_sigkill_after_the_outbox_wrote_the_mail_is_settled_by_lookup(configure):
    configure(email_provider="outbox")
    killed = _run(kill=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert _row().status == "sending"
    result = sweep_unconfirmed_mail()  # the deployed sweep's flow
    assert result["confirmed"] == 1 and result.get("failed", 0) == 0
    row = _row()
    assert row.status == "sent" and row.provider == "outbox"
    assert [p.name for p in get_settings().mail.outbox_dir.iterdir()] == [row.provider_message_id]


# --- SMTP: the connection dropped after DATA ---

class DropsAfterData:
    """Takes the message, then cuts the connection before answering: the sender cannot know."""

    def __init__(self):
        self.received: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):
        self.received.append(envelope.content)
        server.transport.abort()
        return "250 Message accepted"


def test_smtp_cut_after_data_is_never_resent_and_is_failed_by_the_sweep(configure):
    from aiosmtpd.controller import Controller  # a real SMTP server, only for this test

    server = DropsAfterData()
    with socket.socket() as sock:  # a free port
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    controller = Controller(server, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        configure(email_provider="smtp", smtp_host="127.0.0.1", smtp_port=port, sendgrid_timeout_seconds=2)
        assert _send().status == "sending"
        assert _send().status == "sending"  # the task's retry
        result = settle_unconfirmed_mail(now=utcnow() + timedelta(days=2))
    finally:
        controller.stop()
    assert result["failed"] == 1 and result["team_told"] == 1
    recipients = [email.message_from_bytes(raw)["To"] for raw in server.received]  # the server's own record
    assert recipients == ["pat@example.com", get_settings().team_email]  # once each (the alert was cut too)
