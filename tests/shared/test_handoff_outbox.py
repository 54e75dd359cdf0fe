"""Hand-offs between stages go through an outbox: a failed emit or a crash after the commit loses nothing.

`post_to_prefect` is replaced by a recorder (our stand-in for Prefect's own record of what it
received) except where a test talks to the harness's Prefect server on purpose.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import httpx
import pytest
from factories import application
from prefect import get_client
from prefect.settings import PREFECT_API_URL
from sqlmodel import select

from partnerflow.flows.handoffs import relay_events
from partnerflow.models import Partner, Stage, session_scope, utcnow
from partnerflow.models.events import OutboxEvent
from partnerflow.tasks.contracting.applications import submit_application
from partnerflow.tasks.shared import events
from partnerflow.tasks.shared.faults import KILL_AT, TEST_SWITCH, armed


class FakePrefect:
    """Records each event it accepts; refuses everything while `down`."""

    def __init__(self):
        self.down = False
        self.received: list[tuple[str, str, dict]] = []
        self.requests = 0

    def post(self, rows: list[OutboxEvent], timeout: float | None = None) -> None:
        self.requests += 1
        if self.down:
            raise httpx.ConnectError("All connection attempts failed")
        self.received += [(row.event, row.event_id, dict(row.payload)) for row in rows]


@pytest.fixture
def prefect(monkeypatch) -> FakePrefect:
    fake = FakePrefect()
    monkeypatch.setattr(events, "post_to_prefect", fake.post)
    return fake


def _outbox() -> list[OutboxEvent]:
    with session_scope() as session:
        return list(session.exec(select(OutboxEvent).order_by(OutboxEvent.id)).all())


def test_an_application_whose_handoff_could_not_be_emitted_is_relayed_later_exactly_once(prefect):
    prefect.down = True
    app, created = submit_application(application())  # the applicant still gets their answer
    assert created
    [row] = _outbox()
    assert row.event == "partner.applied" and row.sent_at is None and row.attempts == 1
    assert "ConnectError" in row.last_error and prefect.received == []
    prefect.down = False
    assert relay_events()["sent"] == 1  # the every-minute sweep
    key = events.outbox_key("partner.applied", "application", app.id)
    assert prefect.received == [("partner.applied", str(events.event_id_for(key)), {"application_id": app.id})]
    assert events.relay() == {} and len(prefect.received) == 1
    [row] = _outbox()
    assert row.sent_at is not None and row.last_error is None


def test_an_application_is_relayed_right_after_its_commit(prefect):
    app, _ = submit_application(application())
    assert prefect.received == [("partner.applied", _outbox()[0].event_id, {"application_id": app.id})]
    assert _outbox()[0].sent_at is not None


def test_a_signed_contract_records_contract_signed_with_the_signature(prefect):
    from factories import approved_partner  # a partner that applied, without a flow run

    from partnerflow.tasks.contracting.documents import generate_contract
    from partnerflow.tasks.contracting.signing import complete_signature, request_signature

    contract = generate_contract(approved_partner())
    prefect.down = True
    row = request_signature(contract.id)
    assert complete_signature(row.id, signed_document=b"%PDF-1.4 signed", filename="signed.pdf",
                              evidence={"signer_name": "Nora Wind"}, actor="test")
    signed = [r for r in _outbox() if r.event == "contract.signed"]
    assert len(signed) == 1 and signed[0].sent_at is None and signed[0].payload["contract_id"] == contract.id
    prefect.down = False
    events.relay()
    events.relay()
    assert [e for e in prefect.received if e[0] == "contract.signed"] == [
        ("contract.signed", signed[0].event_id, {"contract_id": contract.id, "partner_id": contract.partner_id})]


def test_activation_is_announced_by_a_rerun_that_finds_the_partner_already_active(prefect):
    from factories import approved_partner  # a partner that applied, without a flow run

    from partnerflow.tasks.onboarding.provisioning import announce_activation

    partner_id = approved_partner()
    with session_scope() as session:  # activated by a run that died before announcing it
        session.get(Partner, partner_id).stage = Stage.ACTIVE
    announce_activation(partner_id, 7)
    announce_activation(partner_id, 7)
    assert [e for e in prefect.received if e[0] == "partner.activated"] == [
        ("partner.activated", events.event_id_for(f"partner.activated:partner:{partner_id}").__str__(),
         {"partner_id": partner_id, "contract_id": 7})]


def test_a_handoff_is_recorded_once_per_resource_or_per_occurrence():
    with session_scope() as session:
        keys = [events.record(session, "compliance.finding", "partner", 5, {"partner_id": 5}, occurrence=o)
                for o in ("1-2", "1-2", "3")]
        keys.append(events.record(session, "contract.signed", "contract", 9))
        keys.append(events.record(session, "contract.signed", "contract", 9))
    assert [r.key for r in _outbox()] == ["compliance.finding:partner:5:1-2", "compliance.finding:partner:5:3",
                                          "contract.signed:contract:9"]
    assert len({r.event_id for r in _outbox()}) == 3 and len(set(keys)) == 3


def test_the_sweep_sends_what_piled_up_in_one_request_per_chunk(prefect):
    prefect.down = True
    for n in range(3):
        submit_application(application(email=f"p{n}@firm{n}.example", website=f"https://firm{n}.example"))
    assert prefect.requests == 3 and relay_events() == {"failed": 3, "waiting": 3}
    prefect.down = False
    assert relay_events() == {"sent": 3, "waiting": 0}
    assert prefect.requests == 5 and len({e[1] for e in prefect.received}) == 3


def test_the_sweep_prunes_only_handoffs_relayed_long_ago(prefect):
    for n in range(3):
        submit_application(application(email=f"p{n}@firm{n}.example", website=f"https://firm{n}.example"))
    prefect.down = True
    submit_application(application(email="late@firm9.example", website="https://firm9.example"))
    prefect.down = False
    old, recent, fresh, pending = _outbox()
    with session_scope() as session:
        session.get(OutboxEvent, old.id).sent_at = utcnow() - timedelta(days=31)
        session.get(OutboxEvent, recent.id).sent_at = utcnow() - timedelta(days=29)
        session.get(OutboxEvent, pending.id).created_at = utcnow() - timedelta(days=40)
    assert events.prune_relayed() == 1
    # the one relayed 31 days ago goes; never relayed is kept however old, until the relay sends it
    assert [r.key for r in _outbox()] == [recent.key, fresh.key, pending.key]
    assert _outbox()[-1].sent_at is None


def test_two_relays_never_send_the_same_row_at_once(prefect):
    prefect.down = True
    submit_application(application())
    prefect.down = False
    [row] = _outbox()
    now = utcnow()
    assert events._claim(row.id, now)  # another relay holds it
    assert events.relay(now=now) == {"busy": 1} and prefect.received == []
    assert events.relay(now=now + events.LEASE + timedelta(seconds=1)) == {"sent": 1}  # its holder died


# --- SIGKILL after the commit ---

RUN = """
from factories import application
from partnerflow.tasks.contracting.applications import submit_application
app, created = submit_application(application())
print(app.id)
"""


def _run(kill_at: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in (KILL_AT, TEST_SWITCH)}
    env.update(armed(kill_at), PREFECT_API_URL=PREFECT_API_URL.value() or "",
               PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(__file__)), env.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", RUN], env=env, capture_output=True, text=True, timeout=120)


def test_sigkill_after_the_commit_before_the_relay_then_the_sweep_delivers_exactly_once(prefect):
    killed = _run("events.before_relay")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    [row] = _outbox()
    assert row.sent_at is None and row.attempts == 0  # the application and its hand-off committed together
    assert events.relay() == {"sent": 1}
    assert events.relay() == {}
    assert prefect.received == [("partner.applied", row.event_id, dict(row.payload))]


def test_sigkill_after_prefect_accepted_is_sent_again_under_the_same_event_id(prefect):
    killed = _run("events.after_send")  # this one really posted to the harness's Prefect server
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    [row] = _outbox()
    assert row.sent_at is None and row.attempts == 1
    assert events.relay() == {"busy": 1}  # the dead relay's lease still holds
    assert events.relay(now=utcnow() + events.LEASE + timedelta(seconds=1)) == {"sent": 1}
    # Prefect gets the same id again, so its server drops the repeat (see tasks/shared/events.py).
    assert prefect.received == [("partner.applied", row.event_id, dict(row.payload))]
    assert row.event_id == str(events.event_id_for(row.key))


def test_the_relay_posts_to_the_prefect_api_which_keeps_one_event_per_id():
    submit_application(application())  # the real relay right after the commit
    [row] = _outbox()
    assert row.sent_at is not None and row.attempts == 1 and row.last_error is None
    events.post_to_prefect([row])  # a repeat of the same id is accepted, and stored once
    query = {"filter": {"id": {"id": [row.event_id]}, "occurred": {"since": "2020-01-01T00:00:00Z"}}}
    deadline = time.monotonic() + 60
    found: dict = {}
    with get_client(sync_client=True) as client:
        while not found.get("events") and time.monotonic() < deadline:  # Prefect stores events in batches
            time.sleep(0.5)
            found = client.request("POST", "/events/filter", json=query).json()
    assert [(e["id"], e["event"], e["payload"]) for e in found["events"]] == [
        (row.event_id, "partner.applied", dict(row.payload))]


def test_the_relay_and_the_mail_sweep_are_deployed_on_their_schedules():
    from partnerflow.deployments import all_deployments  # builds every deployment of the stage

    found = {d.name: d for d in all_deployments("shared")}
    assert found["relay-events"].entrypoint == "partnerflow.flows.handoffs.relay_events"
    assert found["relay-events"].schedules[0].schedule.cron == "*/5 * * * *"
    assert found["settle-unconfirmed-mail"].entrypoint == "partnerflow.flows.mail_sweeps.sweep_unconfirmed_mail"
    assert found["settle-unconfirmed-mail"].schedules[0].schedule.cron == "*/15 * * * *"
