"""The SendGrid provider against a local server speaking the v3 wire format."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from partnerflow.models import Message, Prospect, session_scope, utcnow
from partnerflow.models.outreach import Enrollment
from partnerflow.providers.email import OutgoingEmail, get_email_provider
from partnerflow.providers.email import sendgrid as sg_module
from partnerflow.providers.errors import AmbiguousError, PermanentError, RetryableError
from partnerflow.settings import get_settings
from partnerflow.tasks.outreach import batch, claims
from partnerflow.tasks.outreach.batch import send_due
from partnerflow.tasks.outreach.enrollment import enroll
from partnerflow.tasks.outreach.sequences import load_sequence_files
from partnerflow.testing.sendgrid import FakeSendGrid

MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
def fake():
    server = FakeSendGrid().start()
    yield server
    server.stop()


@pytest.fixture
def waits(monkeypatch) -> list[float]:
    recorded: list[float] = []
    monkeypatch.setattr(sg_module, "_sleep", recorded.append)
    return recorded


@pytest.fixture
def provider(fake, configure, waits):
    configure(email_provider="sendgrid", sendgrid_api_key="SG.test-key", sendgrid_api_host=fake.url,
              sendgrid_timeout_seconds=0.5)
    return get_email_provider(get_settings().mail)


def emails(n: int, start: int = 0) -> list[OutgoingEmail]:
    return [OutgoingEmail(message_id=i, idempotency_key=f"k:{i}", to=f"r{i}@example.com", subject=f"Hello {i}",
                          text=f"text for {i}", html=f"<p>html for {i}</p>", categories=["outreach"],
                          headers={"List-Unsubscribe": f"<https://x.example/u/{i}>",
                                   "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"})
            for i in range(start, start + n)]


def test_batches_up_to_1000_personalizations_with_per_recipient_content(provider, fake):
    outcomes = provider.send_batch(emails(2500))
    assert [len(r["body"]["personalizations"]) for r in fake.requests] == [1000, 1000, 500]
    assert all(o.error is None for o in outcomes)
    assert {o.provider_message_id for o in outcomes} == {r["message_id"] for r in fake.requests}
    sent = {m["to"]: m for m in fake.messages()}
    m = sent["r1234@example.com"]
    assert m["subject"] == "Hello 1234"
    assert m["content"] == {"text/plain": "text for 1234", "text/html": "<p>html for 1234</p>"}
    assert m["custom_args"] == {"pf_message_id": "1234", "pf_key": "k:1234"}
    assert m["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert m["categories"] == ["outreach"]
    assert m["from"] == {"email": "partners@acme.example", "name": "Acme Partnerships"}


def test_429_waits_for_retry_after_then_sends(provider, fake, waits):
    fake.faults.fail_next(429, headers={"Retry-After": "7"})
    outcomes = provider.send_batch(emails(3))
    assert waits == [7.0]
    assert all(o.error is None for o in outcomes) and fake.accepted_messages == 3


def test_429_without_retry_after_uses_rate_limit_reset(provider, fake, waits):
    fake.faults.fail_next(429, headers={"X-RateLimit-Reset": str(int(time.time()) + 20)})
    provider.send_batch(emails(1))
    assert len(waits) == 1 and 15 <= waits[0] <= 21


def test_5xx_retries_with_exponential_backoff_and_jitter(provider, fake, waits):
    fake.faults.fail_next(500, times=3)
    outcomes = provider.send_batch(emails(2))
    assert all(o.error is None for o in outcomes)
    assert fake.attempts == 4
    assert [int(w) for w in waits] == [1, 2, 4] and any(w != int(w) for w in waits)


def test_5xx_that_persists_is_retryable_not_permanent(provider, fake, waits):
    fake.faults.fail_next(503, times=10)
    outcomes = provider.send_batch(emails(2))
    assert all(isinstance(o.error, RetryableError) and "503" in o.error.reason for o in outcomes)
    assert fake.attempts == 5 and fake.accepted_messages == 0


def test_400_fails_only_the_blamed_recipient_with_sendgrid_reason(provider, fake):
    batch = emails(4)
    batch[2].to = "not-an-address"
    outcomes = {o.message_id: o for o in provider.send_batch(batch)}
    assert isinstance(outcomes[2].error, PermanentError)
    assert "Does not contain a valid address" in outcomes[2].error.reason
    assert all(outcomes[i].error is None for i in (0, 1, 3))
    assert fake.accepted_messages == 3


def test_401_is_permanent(provider, fake, waits):
    fake.faults.fail_next(401, body={"errors": [{"message": "The provided authorization grant is invalid"}]})
    [outcome] = provider.send_batch(emails(1))
    assert isinstance(outcome.error, PermanentError) and "authorization grant" in outcome.error.reason
    assert waits == []


def test_read_timeout_is_ambiguous_and_not_resent(provider, fake, waits):
    fake.faults.stall_next(1.5, after_effect=True)
    [outcome] = provider.send_batch(emails(1))
    assert isinstance(outcome.error, AmbiguousError)
    assert fake.attempts == 1 and fake.accepted_messages == 1  # accepted; we must not send again


def test_unreachable_host_retries_then_gives_up(configure, waits):
    configure(email_provider="sendgrid", sendgrid_api_key="SG.k", sendgrid_api_host="http://127.0.0.1:9",
              sendgrid_timeout_seconds=0.5)
    [outcome] = get_email_provider(get_settings().mail).send_batch(emails(1))
    assert isinstance(outcome.error, RetryableError) and not isinstance(outcome.error, AmbiguousError)
    assert len(waits) == 4


# --- through the outreach sender ---

def _enroll(n: int) -> None:
    load_sequence_files()
    with session_scope() as session:
        session.add_all([Prospect(email=f"p{i}@example.com", name=f"Pat {i}") for i in range(n)])
    enroll(now=MONDAY_NOON)


def _messages() -> list[Message]:
    with session_scope() as session:
        return list(session.exec(select(Message).order_by(Message.id)).all())


def test_outreach_records_x_message_id_and_custom_args(provider, fake):
    _enroll(3)
    assert send_due(now=MONDAY_NOON)["sent"] == 3
    [request] = fake.requests
    rows = _messages()
    assert {m.provider_message_id for m in rows} == {request["message_id"]}
    assert {m["custom_args"]["pf_message_id"] for m in fake.messages()} == {str(m.id) for m in rows}
    assert fake.messages()[0]["categories"] == ["outreach", "partner-recruitment"]


def test_ambiguous_timeout_waits_for_the_webhook_instead_of_resending(provider, fake):
    _enroll(2)
    fake.faults.stall_next(1.5, after_effect=True)
    result = send_due(now=MONDAY_NOON)
    assert result["ambiguous"] == 2 and fake.accepted_messages == 2
    assert {m.status for m in _messages()} == {"sending"}
    # The next hourly run does not send again while unconfirmed.
    result = send_due(now=MONDAY_NOON + timedelta(hours=1, minutes=1))
    assert result["awaiting_confirmation"] == 2 and fake.attempts == 1
    # SendGrid's `processed` events confirm them (as the webhook does); then the sequence moves on.
    from partnerflow.web.outreach import apply_sendgrid_events

    apply_sendgrid_events([{"event": "processed", "sg_event_id": f"e{m.id}", "pf_message_id": str(m.id),
                            "timestamp": int(MONDAY_NOON.timestamp())} for m in _messages()])
    assert {m.status for m in _messages()} == {"sent"}
    send_due(now=MONDAY_NOON + timedelta(hours=2, minutes=2))
    with session_scope() as session:
        assert {e.current_step for e in session.exec(select(Enrollment)).all()} == {1}
    assert fake.attempts == 1


def test_crash_after_sendgrid_accepted_does_not_resend(provider, fake, monkeypatch):
    _enroll(2)
    real = batch.record_outcomes
    monkeypatch.setattr(batch, "record_outcomes", lambda *a, **k: (_ for _ in ()).throw(SystemExit("killed")))
    with pytest.raises(SystemExit):
        send_due(now=MONDAY_NOON)
    monkeypatch.setattr(batch, "record_outcomes", real)
    later = utcnow() + timedelta(minutes=31)  # the dead run's lease (on the wall clock) has run out
    monkeypatch.setattr(claims, "utcnow", lambda: later)
    result = send_due(now=MONDAY_NOON + timedelta(hours=1))
    assert result["awaiting_confirmation"] == 2
    assert fake.attempts == 1 and fake.accepted_messages == 2
    # Never confirmed within the reconcile window: marked failed, not re-sent, the sequence moves on.
    result = send_due(now=MONDAY_NOON + timedelta(days=1, hours=1))
    assert result["unconfirmed"] == 2 and fake.attempts == 1
    assert {m.status for m in _messages()} == {"failed"}


def test_provider_outage_leaves_messages_pending_for_the_next_run(provider, fake):
    _enroll(2)
    fake.faults.fail_next(500, times=5)  # the first try and all 4 retries
    result = send_due(now=MONDAY_NOON)
    assert result["retry_later"] == 2 and fake.accepted_messages == 0
    assert {m.status for m in _messages()} == {"pending"}
    result = send_due(now=MONDAY_NOON + timedelta(hours=1))
    assert result["sent"] == 2 and fake.accepted_messages == 2
    assert len(_messages()) == 2
