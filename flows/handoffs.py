"""Flow `relay_events` (every 5 minutes): hand-offs recorded in the outbox but not yet sent to Prefect.

The relay right after each commit is the usual path; this sweep catches what it missed, and runs
only every 5 minutes because each run starts a process. Hand-offs relayed more than 30 days ago are
deleted, so the outbox stays small on a system left running for months.

A stage records its hand-off event (`partner.applied`, `contract.signed`, ...) in the same
transaction as its state change and relays it right after the commit. When that relay failed
(the Prefect server was down, the process died), this sweep sends it, under the same event id.
"""

from __future__ import annotations

from datetime import timedelta

from prefect import flow, get_run_logger

from partnerflow.models import utcnow
from partnerflow.tasks.shared.events import pending_since, prune_relayed, relay

OVERDUE = timedelta(minutes=15)  # a hand-off this late means the next stage is waiting on us: say so


@flow(name="relay-events")
def relay_events() -> dict[str, int]:
    counts = relay()
    waiting, oldest = pending_since()
    if oldest is not None and utcnow() - oldest > OVERDUE:
        get_run_logger().warning("%d hand-off events still not relayed, the oldest recorded at %s: is the Prefect "
                                 "API reachable from this worker?", waiting, f"{oldest:%Y-%m-%d %H:%M} UTC")
    elif counts:
        get_run_logger().info("hand-off events relayed: %s", counts)
    pruned = prune_relayed()
    return {**counts, "waiting": waiting, **({"pruned": pruned} if pruned else {})}
