"""Flow `signature_sweeps` (hourly): the open signature requests, looked at one sweep at a time.

No flow waits days for a signature: requests are rows, and this sweep looks at them. It
finishes signed callbacks that were stored but not acted on and asks the vendors about quiet
requests, voids requests of withdrawn applications, expires overdue ones and reminds the rest.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from partnerflow.providers.errors import ProviderError
from partnerflow.tasks.contracting.sweeps import (
    expire_signature_requests,
    finish_stored_completions,
    poll_unsigned,
    send_signing_reminders,
    sweep_report,
    void_withdrawn,
)


@flow(name="signature-sweeps")
def signature_sweeps() -> dict[str, int]:
    try:
        completed = finish_stored_completions() + poll_unsigned()
        voided = void_withdrawn()
        expired = expire_signature_requests()
        reminded = send_signing_reminders()
    except ProviderError as exc:
        get_run_logger().warning("signature sweep stopped: %s", exc.reason)
        raise
    summary = {"completed": completed, "voided": voided, "expired": expired, "reminded": reminded}
    get_run_logger().info("signature sweeps: %s", summary)
    create_markdown_artifact(key="signature-sweeps", description="What the last signature sweep did",
                             markdown=sweep_report(summary))
    return summary
