"""Prefect events that hand one lifecycle stage to the next (see deployments/ for the triggers).

A hand-off goes through an outbox (models/events.py): `record()` writes the event in the
caller's transaction, so it exists exactly when the state change it announces does. `relay()`
sends pending rows to Prefect and marks them sent: right after the commit for the caller's own
rows (`relay_after_commit`: one quick try, it must not hold up a web request), and from the
`relay-events` sweep every 5 minutes for whatever is left, with Prefect's client retries.

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
from sqlalchemy import delete, func, or_, update
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
CHUNK = 100  # events per request to the Prefect API
# Relayed hand-offs are kept this long for looking back (Prefect keeps its own events 7 days by default).
RELAYED_KEPT = timedelta(days=30)
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
    """Send pending outbox rows (only `keys` when given) to Prefect, a chunk per request; mark them sent."""
    now = now or utcnow()
    query = select(OutboxEvent).where(OutboxEvent.sent_at.is_(None))
    if keys is not None:
        query = query.where(OutboxEvent.key.in_(keys))
    with session_scope() as session:
        rows = session.exec(query.order_by(OutboxEvent.id).limit(limit)).all()
    claimed = [row for row in rows if _claim(row.id, now)]
    counts: Counter = Counter({"busy": len(rows) - len(claimed)} if len(claimed) < len(rows) else {})
    for start in range(0, len(claimed), CHUNK):
        chunk = claimed[start:start + CHUNK]
        ids = [row.id for row in chunk]
        try:
            post_to_prefect(chunk, timeout)
        except Exception as exc:  # any failure: the rows stay pending for the next relay
            _finish(ids, sent_at=None, error=f"{type(exc).__name__}: {exc}"[:500])
            counts["failed"] += len(chunk)
            continue
        kill_point("events.after_send")  # Prefect has them, the rows still say pending: sent again, same ids
        _finish(ids, sent_at=utcnow(), error=None)
        counts["sent"] += len(chunk)
    return dict(counts)


def pending_since() -> tuple[int, datetime | None]:
    """How many hand-offs wait to be relayed, and when the oldest was recorded."""
    with session_scope() as session:
        waiting, oldest = session.execute(select(func.count(), func.min(OutboxEvent.created_at))
                                          .where(OutboxEvent.sent_at.is_(None))).one()
    return waiting, oldest


def prune_relayed(older_than: timedelta = RELAYED_KEPT, now: datetime | None = None) -> int:
    """Delete hand-offs relayed longer ago than `older_than`; returns how many.

    Each row announces one state change that has already happened and cannot happen again, so once
    Prefect has it (and has long since dropped its own copy) the row only grows the table."""
    cutoff = (now or utcnow()) - older_than
    with session_scope() as session:
        return session.execute(delete(OutboxEvent).where(OutboxEvent.sent_at.is_not(None),
                                                          OutboxEvent.sent_at < cutoff)).rowcount


def post_to_prefect(rows: list[OutboxEvent], timeout: float | None = None) -> None:
    """POST the rows' events to the Prefect API in one request; returns once the server accepted them (204)."""
    sent_at = utcnow()  # not the commit time: a trigger judges an event by when it occurred, and a late one
    # stamped long ago could land outside the window Prefect keeps for it; the id already says which one it is
    body = [Event(id=uuid.UUID(row.event_id), event=row.event, occurred=sent_at,
                  resource=_resource(row.resource_kind, row.resource_id), payload=row.payload).model_dump(mode="json")
            for row in rows]
    extra = {"timeout": timeout} if timeout else {}
    with get_client(sync_client=True) as client:
        client.request("POST", "/events", json=body, **extra).raise_for_status()


def _claim(row_id: int, now: datetime) -> bool:
    with session_scope() as session:
        return session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id == row_id, OutboxEvent.sent_at.is_(None),
                   or_(OutboxEvent.claimed_until.is_(None), OutboxEvent.claimed_until < now))
            .values(claimed_until=now + LEASE, attempts=OutboxEvent.attempts + 1)).rowcount == 1


def _finish(row_ids: list[int], *, sent_at: datetime | None, error: str | None) -> None:
    with session_scope() as session:
        session.execute(update(OutboxEvent).where(OutboxEvent.id.in_(row_ids))
                        .values(sent_at=sent_at, claimed_until=None, last_error=error))
