"""Deciding a payout batch: by policy when it is small enough, else by a person in the Prefect UI.

A batch nobody decides in time expires and pays nothing (the safe default).
"""

from __future__ import annotations

from typing import Literal

from prefect.input import RunInput
from pydantic import Field

from partnerflow.models.payouts import PayoutBatchStatus
from partnerflow.settings import get_settings
from partnerflow.tasks.payouts.batches import decide_batch, total_minor_by_currency


class PayoutDecision(RunInput):
    """The approval form: approve (except the partners held back), or reject the whole batch."""

    decision: Literal["approve", "reject"]
    hold_partner_ids: list[int] = Field([], description="Partners to leave out of this batch (paid next time).")
    note: str = ""
    approver: str = Field(min_length=1, description="Your name: who decided.")


def auto_approval_limit(auto_approve_below_minor: int | None = None) -> int:
    """The largest batch total (minor units, any one currency) that policy may approve: the team's
    `payout_approval_above_minor`, which a run's `auto_approve_below_minor` may lower but never raise."""
    limit = get_settings().payouts.payout_approval_above_minor
    if auto_approve_below_minor is not None:
        limit = min(limit, auto_approve_below_minor - 1)
    return limit


def approve_by_policy(batch_id: int, payouts: int, auto_approve_below_minor: int | None = None) -> bool:
    """Approve the batch when nothing needs a person (nothing to pay, or within the limit); True if decided."""
    biggest = max(total_minor_by_currency(batch_id).values(), default=0)
    limit = auto_approval_limit(auto_approve_below_minor)
    if not payouts:
        decide_batch(batch_id, approve=True, actor="policy", note="nothing to pay")
    elif biggest <= limit:
        decide_batch(batch_id, approve=True, actor="policy",
                     note=f"largest total {biggest} minor units is within the auto-approval limit of {limit}")
    return not payouts or biggest <= limit


def record_answer(batch_id: int, answer: PayoutDecision | None) -> None:
    """The person's answer, or the safe default when nobody answered."""
    if answer is None:
        decide_batch(batch_id, approve=False, actor="policy", status_if_rejected=PayoutBatchStatus.EXPIRED,
                     note="nobody answered in time; nothing paid")
    elif answer.decision == "reject":
        decide_batch(batch_id, approve=False, actor=answer.approver, note=answer.note)
    else:
        decide_batch(batch_id, approve=True, actor=answer.approver, note=answer.note,
                     hold_partner_ids=answer.hold_partner_ids)


def expire(batch_id: str, _details: dict) -> None:
    """Nobody answered the batch's approval form in time: it expires and pays nothing."""
    record_answer(int(batch_id), None)


def approval_timeout_seconds() -> int:
    return get_settings().payouts.payout_approval_timeout_seconds
