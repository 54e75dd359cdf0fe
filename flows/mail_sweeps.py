"""Flow `settle_unconfirmed_mail` (every 15 minutes): one-off mail whose send was never confirmed.

Settled by a lookup where the provider has one (the outbox); SendGrid's events settle theirs
through the webhook. What stays unconfirmed past `mail_unconfirmed_after_seconds` is marked
failed and the team is mailed; it is never sent again by itself.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from partnerflow.tasks.shared.unconfirmed_mail import settle_unconfirmed_mail


@flow(name="settle-unconfirmed-mail")
def sweep_unconfirmed_mail() -> dict[str, int]:
    counts = settle_unconfirmed_mail()
    if counts.get("failed") or counts.get("alerts_deferred"):
        get_run_logger().warning("unconfirmed mail: %s", counts)
    return counts
