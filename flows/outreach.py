"""Outreach flows: load sequence files, enroll prospects, send the due steps (hourly).

A send run claims due enrollments in the database batch by batch and sends each batch in one
task, so several workers can share the work and never send the same step twice.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from partnerflow.tasks.outreach.batch import send_outreach_batch
from partnerflow.tasks.outreach.claims import SendRun
from partnerflow.tasks.outreach.enrollment import enroll_task
from partnerflow.tasks.outreach.reports import enrollment_markdown, send_markdown, sequences_markdown
from partnerflow.tasks.outreach.sequences import load_sequences_task


@flow(name="load-sequences")
def load_sequences(root: str | None = None) -> dict:
    """Load templates/outreach/sequences/*/sequence.yaml; a changed file becomes a new version."""
    result = load_sequences_task(root)
    create_markdown_artifact(sequences_markdown(result), key="outreach-sequences")
    return result


@flow(name="enroll-prospects")
def enroll_prospects(sequence: str = "partner-recruitment", prospect_ids: list[int] | None = None,
                     min_score: int | None = None) -> dict:
    """Enroll prospects with an email (all, or `prospect_ids`, optionally score >= min_score)."""
    result = enroll_task(sequence, prospect_ids, min_score)
    create_markdown_artifact(enrollment_markdown(sequence, result), key="outreach-enrollment")
    return result


@flow(name="send-due-outreach")
def send_due_outreach(limit: int = 5000) -> dict[str, Any]:
    """Send every due sequence step (business hours, daily cap, suppression and stop rules apply)."""
    run = SendRun(limit)
    while ids := run.claim():
        run.add(send_outreach_batch(ids, run.token, run.now))
    result = run.summary()
    create_markdown_artifact(send_markdown(result), key="outreach-send",
                             description="Due outreach steps sent, deferred and stopped in this run")
    if result["errors"]:
        get_run_logger().warning("provider failing, rest left for the next run: %s", result["errors"][0])
    return result
