"""The Prefect tasks of the news flows: each runs one plain function of this package.

One task per batch of mails, never one per partner. No task result is reused from a cache: what
was done is read from the database (keys per broadcast and partner, per week and partner), so a
resumed or re-run flow sees the truth rather than an earlier run's answer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE
from prefect.runtime import flow_run

from partnerflow.models import utcnow
from partnerflow.tasks.news import broadcasts, reports, weekly
from partnerflow.tasks.news.segments import Segment


def run_key() -> str:
    """A broadcast's default key: this flow run, so the run resumed after its approval finds its broadcast."""
    return f"run-{flow_run.id}" if flow_run.id else "run-local"


def run_start_time() -> datetime:
    """When this run was scheduled to start: a run re-executed later still reports the same week."""
    return flow_run.scheduled_start_time or utcnow()


@task(name="prepare-broadcast", cache_policy=NONE)
def prepare(key: str, template: str, subject: str, fields: dict[str, Any],
            segment: Segment | dict | None) -> tuple[int, str, str | None]:
    """(broadcast id, status, the approval form's description when a person must decide)."""
    broadcast_id, status = broadcasts.prepare(key, template, subject, fields, segment,
                                              flow_run_id=str(flow_run.id) if flow_run.id else None)
    waiting = status == broadcasts.BroadcastStatus.AWAITING_APPROVAL
    return broadcast_id, status, reports.approval_description(broadcast_id) if waiting else None


@task(name="plan-broadcast-batches", cache_policy=NONE)
def plan_broadcast(broadcast_id: int) -> list[list[int]]:
    return broadcasts.pending_batches(broadcast_id)


@task(name="send-broadcast-batch", cache_policy=NONE)  # no retries: a re-run continues, nobody mailed twice
def send_broadcast_batch(broadcast_id: int, partner_ids: list[int]) -> dict[str, Any]:
    return broadcasts.send_batch(broadcast_id, partner_ids)


@task(name="report-broadcast", cache_policy=NONE)
def report_broadcast(broadcast_id: int) -> dict[str, Any]:
    """Mark it sent when nobody is left, and put its figures in the UI (kept per broadcast)."""
    broadcasts.finish(broadcast_id)
    figures = reports.broadcast_figures(broadcast_id)
    create_markdown_artifact(reports.report_markdown(figures), key=f"news-broadcast-{broadcast_id}",
                             description="Program news broadcast: sent, opened, clicked")
    return figures


@task(name="plan-weekly-performance", cache_policy=NONE)
def plan_weekly(week: str) -> list[list[int]]:
    return weekly.weekly_batches(week)


@task(name="send-weekly-performance-batch", cache_policy=NONE)
def send_weekly_batch(week: str, partner_ids: list[int]) -> dict[str, Any]:
    return weekly.send_weekly_batch(week, partner_ids)


def publish_weekly(week: str, counts: dict[str, Any]) -> None:
    rows = [{"outcome": name.replace("_", " "), "count": value} for name, value in sorted(counts.items())]
    create_table_artifact(rows, key="news-weekly-performance",
                          description=f"Weekly performance email for {week}: mails by outcome")
