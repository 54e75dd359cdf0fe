"""News to partners: a broadcast a person approves, and the weekly performance email.

Broadcast: prepare (audience fixed, preview rendered) -> a person sends or cancels in the Prefect UI
-> one task per batch of recipients -> a report of sent, opened and clicked. The run waiting for the
person holds no process (it is suspended), so it runs only as a deployment; resumed, it runs again
from the start and finds its broadcast by key. Nobody answering in time sends nothing.

Weekly performance: every Monday, each active partner who wants it gets their own figures for the
week that ended, one task per batch of partners, once per partner and week.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from prefect import flow, get_run_logger

from partnerflow.tasks.news import broadcasts, steps, weekly
from partnerflow.tasks.news.segments import ACTIVE_PARTNERS, Segment
from partnerflow.tasks.shared.approvals import ask_person


@flow(name="send-broadcast", persist_result=True)
def send_broadcast(template: str, subject: str, offer: dict[str, str] | None = None,
                   segment: Segment = ACTIVE_PARTNERS, key: str | None = None) -> dict[str, Any]:
    """Announce something to a segment of partners after a person approved the audience and the preview.

    `template`: a folder of templates/news/broadcast/ (new_offer, coupon, policy_change); `offer`: the
    fields it uses (e.g. headline, details, code); `key`: name the broadcast to continue it in a later run.
    """
    broadcast_id, status, description = steps.prepare(key or steps.run_key(), template, subject, offer or {},
                                                      segment)
    if status == broadcasts.BroadcastStatus.AWAITING_APPROVAL:
        answer = ask_person(broadcasts.BroadcastDecision, description, key=f"broadcast-{broadcast_id}",
                            subject=("broadcast", broadcast_id),
                            timeout_seconds=broadcasts.approval_timeout_seconds())
        status = broadcasts.record_decision(broadcast_id, answer)
    counts: Counter = Counter()
    if status == broadcasts.BroadcastStatus.APPROVED:
        for partner_ids in steps.plan_broadcast(broadcast_id):
            if not _add(counts, steps.send_broadcast_batch(broadcast_id, partner_ids)):
                break
    else:
        get_run_logger().info("Broadcast %s is %s; nothing sent.", broadcast_id, status)
    return {**steps.report_broadcast(broadcast_id), "this_run": dict(counts)}


@flow(name="send-weekly-performance")
def send_weekly_performance(week: str | None = None) -> dict[str, Any]:
    """Each active partner's clicks, conversions and commission for an ISO week (default: the last one
    that ended, e.g. 2026-W48) against the week before."""
    week = weekly.week_of(week, steps.run_start_time())
    counts: Counter = Counter()
    for partner_ids in steps.plan_weekly(week):
        if not _add(counts, steps.send_weekly_batch(week, partner_ids)):
            break
    steps.publish_weekly(week, dict(counts))
    return {"week": week, **counts}


def _add(counts: Counter, result: dict[str, Any]) -> bool:
    """Add a batch's counts; False when the provider refused for now (the rest waits for a re-run)."""
    for name, value in result.items():
        if name != "provider_error":
            counts[name] += value
    if "provider_error" in result:
        get_run_logger().warning("mail provider refused, rest left for a re-run: %s", result["provider_error"])
        return False
    return True
