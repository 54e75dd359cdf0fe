"""Prefect events that hand one lifecycle stage to the next (see deployments/ for the triggers).

A hand-off goes through an outbox (models/events.py): `record()` writes the event in the
caller's transaction, so it exists exactly when the state change it announces does. `relay()`
sends pending rows to Prefect and marks them sent: right after the commit for the caller's own
rows (`relay_after_commit`: one quick try, it must not hold up a web request), and from the
`relay-events` sweep every minute for whatever is left, with Prefect's client retries.

Each row has one Prefect event id, derived from its key, on every send. Prefect's server drops
an event id it has already seen (its publisher remembers ids for 5 minutes, its triggers for 30,
in memory), so a re-send after a lost answer is normally not acted on twice. Past that window, or
after a server restart, the triggered flows are what keep it harmless: contract-application and
onboard-partner are safe to run again for the same application or contract (every effect keyed).

`emit()` is the direct, fire-and-forget emit for events no stage depends on.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from prefect import get_client
from prefect.events import Event, emit_event
from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings
from sqlalchemy import or_, update
from sqlmodel import Session, select

from partnerflow.models import session_scope, utcnow
from partnerflow.models.events import OutboxEvent
from partnerflow.tasks.shared.faults import kill_point

PARTNER_APPLIED = "partner.applied"
APPLICATION_DECIDED = "application.decided"
CONTRACT_SIGNED = "contract.signed"
PARTNER_ACTIVATED = "partner.activated"
PAYOUT_BATCH_PAID = "payout.batch.paid"
COMPLIANCE_FINDING = "compliance.finding"

# Fixed forever: the same outbox key gives the same Prefect event id in every process and release.
EVENT_ID_NAMESPACE = uuid.UUID("6f1c3f0e-2b7a-4c55-9d3e-0c9a4e1d7b21")
LEASE = timedelta(seconds=60)  # a relay that died holding a row lets the next one send it after this
QUICK_TIMEOUT_SECONDS = 5.0  # the relay right after a commit gives up fast; the sweep tries again

log = logging.getLogger(__name__)


def emit(name: str, resource_kind: str, resource_id: object, payload: dict[str, Any] | None = None) -> None:
    """Emit `name` about partnerflow.<resource_kind>.<resource_id> now, without an outbox row."""
    emit_event(event=name, resource=_resource(resource_kind, resource_id), payload=payload or {})


def _resource(resource_kind: str, resource_id: object) -> dict[str, str]:
    return {"prefect.resource.id": f"partnerflow.{resource_kind}.{resource_id}",
            "prefect.resource.name": f"{resource_kind} {resource_id}"}


def outbox_key(name: str, resource_kind: str, resource_id: object, occurrence: object | None = None) -> str:
    key = f"{name}:{resource_kind}:{resource_id}"
    return key if occurrence is None else f"{key}:{occurrence}"


def event_id_for(key: str) -> uuid.UUID:
    return uuid.uuid5(EVENT_ID_NAMESPACE, key)


def record(session: Session, name: str, resource_kind: str, resource_id: object,
           payload: dict[str, Any] | None = None, *, occurrence: object | None = None) -> str:
    """Write the hand-off `name` in the caller's transaction; returns its key.

    Once per event and resource, or per `occurrence` of it when one resource hands off again and
    again (e.g. the ids of a partner's new findings). Relay it after the commit with
    `relay_after_commit(key)`; the sweep sends it if that fails.
    """
    key = outbox_key(name, resource_kind, resource_id, occurrence)
    if session.exec(select(OutboxEvent.id).where(OutboxEvent.key == key)).first() is None:
        session.add(OutboxEvent(key=key, event_id=str(event_id_for(key)), event=name, resource_kind=resource_kind,
                                resource_id=str(resource_id), payload=payload or {}))
    return key


def relay_after_commit(*keys: str) -> dict[str, int]:
    """Best effort, right after the commit: one quick try each, no retries (the sweep does those)."""
    kill_point("events.before_relay")  # committed, not yet sent: the sweep must find it
    if not PREFECT_API_URL.value():
        return {}  # no server to talk to from this process; the sweep (run by the server's runner) sends it
    try:
        with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 0}):
            return relay(keys=list(keys), timeout=QUICK_TIMEOUT_SECONDS)
    except Exception as exc:  # never fail the caller: its state change is committed and the row is safe
        log.warning("events %s not relayed yet (%s); the relay sweep will send them", keys, type(exc).__name__)
        return {"failed": len(keys)}


def relay(keys: list[str] | None = None, *, limit: int = 500, timeout: float | None = None,
          now: datetime | None = None) -> dict[str, int]:
    """Send pending outbox rows (only `keys` when given) to Prefect; each row sent is marked sent."""
    now = now or utcnow()
    query = select(OutboxEvent).where(OutboxEvent.sent_at.is_(None))
    if keys is not None:
        query = query.where(OutboxEvent.key.in_(keys))
    with session_scope() as session:
        rows = session.exec(query.order_by(OutboxEvent.id).limit(limit)).all()
    counts: Counter = Counter()
    for row in rows:
        if not _claim(row.id, now):
            counts["busy"] += 1  # another relay holds it
            continue
        try:
            post_to_prefect(row, timeout)
        except Exception as exc:  # any failure: the row stays pending for the next relay
            _finish(row.id, sent_at=None, error=f"{type(exc).__name__}: {exc}"[:500])
            counts["failed"] += 1
            continue
        kill_point("events.after_send")  # Prefect has it, the row still says pending: sent again, same id
        _finish(row.id, sent_at=utcnow(), error=None)
        counts["sent"] += 1
    return dict(counts)


def pending_since(now: datetime | None = None) -> tuple[int, datetime | None]:
    """How many hand-offs wait to be relayed, and when the oldest was recorded."""
    with session_scope() as session:
        rows = session.exec(select(OutboxEvent.created_at).where(OutboxEvent.sent_at.is_(None))
                            .order_by(OutboxEvent.id)).all()
    return len(rows), (rows[0] if rows else None)


def post_to_prefect(row: OutboxEvent, timeout: float | None = None) -> None:
    """POST the row's event to the Prefect API; returns only once the server accepted it (204)."""
    event = Event(id=uuid.UUID(row.event_id), event=row.event, occurred=utcnow(),
                  resource=_resource(row.resource_kind, row.resource_id), payload=row.payload)
    extra = {"timeout": timeout} if timeout else {}
    with get_client(sync_client=True) as client:
        response = client.request("POST", "/events", json=[event.model_dump(mode="json")], **extra)
        response.raise_for_status()


def _claim(row_id: int, now: datetime) -> bool:
    with session_scope() as session:
        return session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id == row_id, OutboxEvent.sent_at.is_(None),
                   or_(OutboxEvent.claimed_until.is_(None), OutboxEvent.claimed_until < now))
            .values(claimed_until=now + LEASE, attempts=OutboxEvent.attempts + 1)).rowcount == 1


def _finish(row_id: int, *, sent_at: datetime | None, error: str | None) -> None:
    with session_scope() as session:
        session.execute(update(OutboxEvent).where(OutboxEvent.id == row_id)
                        .values(sent_at=sent_at, claimed_until=None, last_error=error))
