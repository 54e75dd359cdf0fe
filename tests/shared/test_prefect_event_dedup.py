"""What the outbox relies on from Prefect's server: an event id it already received is not acted on again.

The relay may send a row twice (it died after Prefect accepted the event, before marking it
sent). Against the test harness's real Prefect server, an automation like a deployment's
event trigger must fire once for the twice-sent event: a later, distinct event fires after it
and the count of firings is then exactly one per distinct id.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

from prefect import get_client
from prefect.events.actions import DoNothing
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

from partnerflow.models.events import OutboxEvent
from partnerflow.tasks.shared import events


def _row(n: int) -> OutboxEvent:
    key = f"partner.applied:dedup-probe:{uuid.uuid4()}"
    return OutboxEvent(key=key, event_id=str(events.event_id_for(key)), event="partner.applied",
                       resource_kind="dedupprobe", resource_id=str(n), payload={"application_id": n})


def _firings(client, automation_id) -> list[str]:
    """The triggering event id of each time the automation fired."""
    query = {"filter": {"event": {"name": ["prefect.automation.triggered"]},
                        "resource": {"id": [f"prefect.automation.{automation_id}"]},
                        "occurred": {"since": "2020-01-01T00:00:00Z"}}, "limit": 50}
    found = client.request("POST", "/events/filter", json=query).json()["events"]
    return [r["prefect.resource.id"].removeprefix("prefect.event.") for e in found for r in e["related"]
            if r.get("prefect.resource.role") == "triggering-event"]


def _wait_for(client, automation_id, event_id: str, deadline: float) -> list[str]:
    while time.monotonic() < deadline:  # Prefect evaluates and stores events in the background
        fired = _firings(client, automation_id)
        if event_id in fired:
            return fired
        time.sleep(0.5)
    raise AssertionError(f"the automation never fired for event {event_id}")


def test_an_event_id_sent_twice_fires_a_trigger_once():
    trigger = EventTrigger(expect={"partner.applied"}, match={"prefect.resource.id": "partnerflow.dedupprobe.*"},
                           posture=Posture.Reactive, threshold=1, within=timedelta(0))
    with get_client(sync_client=True) as client:
        automation_id = client.create_automation(AutomationCore(name=f"dedup-probe-{uuid.uuid4().hex[:8]}",
                                                                trigger=trigger, actions=[DoNothing()]))
        try:
            deadline = time.monotonic() + 90
            while True:  # the server loads new automations in the background: send until one fires
                warm_up = _row(0)
                events.post_to_prefect([warm_up])
                try:
                    _wait_for(client, automation_id, warm_up.event_id, time.monotonic() + 5)
                    break
                except AssertionError:
                    if time.monotonic() > deadline:
                        raise
            twice, after = _row(1), _row(2)
            events.post_to_prefect([twice])
            events.post_to_prefect([twice])  # the relay's re-send after a crash: same id
            events.post_to_prefect([after])
            fired = _wait_for(client, automation_id, after.event_id, time.monotonic() + 60)
            assert fired.count(twice.event_id) == 1 and fired.count(after.event_id) == 1
        finally:
            client.delete_automation(automation_id)
