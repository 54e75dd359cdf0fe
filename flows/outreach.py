"""Outreach flows: load sequence files, enroll prospects, send the due steps (hourly)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from partnerflow.tasks.outreach import steps as outreach
from partnerflow.tasks.outreach.sequences import load_sequence_files


@flow(name="load-sequences")
def load_sequences(root: str | None = None) -> dict:
    """Load templates/outreach/sequences/*/sequence.yaml; a changed file becomes a new version."""
    result = load_sequence_files(root)
    lines = ["| sequence | version | changed |", "|---|---|---|"]
    lines += [f"| {name} | {info['version']} | {'yes' if info['changed'] else 'no'} |" for name, info in result.items()]
    create_markdown_artifact("# Sequences loaded\n\n" + "\n".join(lines), key="outreach-sequences")
    return result


@flow(name="enroll-prospects")
def enroll_prospects(sequence: str = "partner-recruitment", prospect_ids: list[int] | None = None,
                     min_score: int | None = None) -> dict:
    """Enroll prospects with an email (all, or `prospect_ids`, optionally score >= min_score)."""
    result = outreach.enroll(sequence, prospect_ids=prospect_ids, min_score=min_score)
    body = "\n".join(f"| {k.replace('_', ' ')} | {v} |" for k, v in result.items())
    create_markdown_artifact(f"# Enrolled into `{sequence}`\n\n| | count |\n|---|---|\n{body}",
                             key="outreach-enrollment")
    return result


@task(name="send-outreach-batch")  # no retries: the provider retries itself; the DB makes re-runs safe
def send_outreach_batch(enrollment_ids: list[int], token: str, now: datetime) -> dict[str, Any]:
    """One task per batch (up to outreach_batch_size messages), never one per email."""
    return outreach.process_batch(enrollment_ids, token, now)


@flow(name="send-due-outreach")
def send_due_outreach(limit: int = 5000) -> dict:
    """Send every due sequence step (business hours, daily cap, suppression and stop rules apply)."""
    result = outreach.send_due(limit, run_batch=send_outreach_batch)
    rows = "\n".join(f"| {k.replace('_', ' ')} | {v} |" for k, v in result.items() if k != "errors")
    errors = "".join(f"\n- {e}" for e in result["errors"])
    create_markdown_artifact(
        f"# Outreach send run\n\n| | count |\n|---|---|\n{rows}\n" + (f"\n## Provider errors{errors}\n" if errors else ""),
        key="outreach-send", description="Due outreach steps sent, deferred and stopped in this run")
    if result["errors"]:
        get_run_logger().warning("provider failing, rest left for the next run: %s", result["errors"][0])
    return result
