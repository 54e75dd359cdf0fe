"""The partner's payouts in the portal: the next batch and what would hold it, past payouts and their lines.

Why a payout is held comes from the payout batch's own rules (tasks/payouts/batches.blockers_for,
balances.balance and payout_threshold), so the partner reads the reasons the team reads in the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select

from partnerflow.models import Commission, Partner, Payout, session_scope, utcnow
from partnerflow.models.payouts import CommissionStatus, PayoutStatus
from partnerflow.tasks.payouts.balances import balance, fx_lookup, payout_threshold
from partnerflow.tasks.payouts.batches import blockers_for
from partnerflow.tasks.payouts.commission_rules import add_months
from partnerflow.tasks.payouts.remittance import remittance_lines
from partnerflow.tasks.payouts.routing import Routing
from partnerflow.tasks.portal.statements import BalanceLine, balance_lines
from partnerflow.tasks.shared.money import format_money

# The payout-batch-monthly deployment's schedule (deployments/table.py: cron "0 6 1 * *");
# tests/portal/test_portal_statements.py fails if the two drift apart.
BATCH_DAY, BATCH_HOUR = 1, 6
PAYOUTS_PER_PAGE = 12
# What a payout's status means to the partner; the internal error text stays with the team.
PAYOUT_STATUS_TEXT = {
    PayoutStatus.PENDING: "being paid", PayoutStatus.SENDING: "being paid", PayoutStatus.PROCESSING: "being paid",
    PayoutStatus.NEEDS_REVIEW: "being checked by the team", PayoutStatus.PAID: "paid",
    PayoutStatus.FAILED: "failed: the amount went back to your balance",
    PayoutStatus.HELD: "held by the team: the amount went back to your balance",
}


def next_batch_at(now: datetime | None = None) -> datetime:
    """When the monthly payout batch next runs (06:00 UTC on the 1st)."""
    now = (now or utcnow()).astimezone(UTC)
    this_month = now.replace(day=BATCH_DAY, hour=BATCH_HOUR, minute=0, second=0, microsecond=0)
    return this_month if now < this_month else add_months(this_month, 1)


@dataclass
class Upcoming:
    """What the next batch would pay this partner, in their payout currency, or why it would hold them."""

    batch_at: datetime
    currency: str
    amount_minor: int
    by_currency: dict[str, int]  # the commissions it sums, per currency (before conversion)
    threshold_minor: int
    held: list[str] = field(default_factory=list)  # the batch's own reasons; empty: it would be paid
    below_threshold: bool = False


def upcoming_payout(partner_id: int, now: datetime | None = None) -> Upcoming:
    """The partner's next payout as the batch would build it at its next run.

    Commissions still in their lock period count when they unlock before the batch runs (the batch
    releases them first)."""
    batch_at = next_batch_at(now)
    routing = Routing.from_settings()
    with session_scope() as session:
        partner = session.get(Partner, partner_id)
        groups = {cur: (int(total), int(n)) for cur, total, n in session.execute(
            select(Commission.currency, func.sum(Commission.amount_minor), func.count())
            .where(Commission.partner_id == partner_id, Commission.payout_id.is_(None),
                   or_(Commission.status == CommissionStatus.PAYABLE,
                       (Commission.status == CommissionStatus.PENDING) & (Commission.payable_at <= batch_at)))
            .group_by(Commission.currency))}
        held = list(blockers_for(session, [partner], routing).get(partner_id, []))
        try:
            amount, _rates = balance(groups, partner.payout_currency, batch_at, fx_lookup(session))
        except LookupError as exc:  # the batch holds the partner with this same sentence
            held.append(str(exc))
            amount = 0
        if amount < 0:
            held.append("negative balance")
        threshold = payout_threshold(partner)
        return Upcoming(batch_at=batch_at, currency=partner.payout_currency, amount_minor=amount,
                        by_currency={cur: total for cur, (total, _n) in groups.items()}, threshold_minor=threshold,
                        held=held, below_threshold=not held and amount < threshold)



def balance_with_holds(partner_id: int, now: datetime | None = None) -> tuple[list[BalanceLine], Upcoming]:
    """The balance by status, where the payable part reads "held" with the batch's reasons when the next
    batch would hold it; and the next payout itself."""
    upcoming = upcoming_payout(partner_id, now)
    lines = balance_lines(partner_id)
    for line in lines:
        if line.status == "payable" and upcoming.held:
            line.status, line.reason = "held", "; ".join(upcoming.held)
        elif line.status == "payable" and upcoming.below_threshold:
            line.status = "held"
            line.reason = (f"payout threshold not reached: the next payout would be "
                           f"{format_money(upcoming.amount_minor, upcoming.currency)} of the "
                           f"{format_money(upcoming.threshold_minor, upcoming.currency)} needed")
    return lines, upcoming

@dataclass
class PayoutEntry:
    id: int
    created_at: datetime
    paid_at: datetime | None
    amount_minor: int
    currency: str
    rail: str
    status: str
    status_text: str
    fx_rates: dict[str, Any]
    lines: list[dict[str, str]]  # remittance line items, as the remittance mail lists them


def payout_history(partner_id: int, page: int = 1,
                   size: int = PAYOUTS_PER_PAGE) -> tuple[list[PayoutEntry], int]:
    """The partner's payouts, newest first, one page with their line items; and how many there are."""
    page = max(1, page)
    with session_scope() as session:
        total = session.execute(select(func.count()).select_from(Payout)
                                .where(Payout.partner_id == partner_id)).scalar_one()
        payouts = session.execute(select(Payout).where(Payout.partner_id == partner_id)
                                  .order_by(Payout.created_at.desc(), Payout.id.desc())
                                  .limit(size).offset((page - 1) * size)).scalars().all()
        # Held and failed payouts gave their commissions back: they have no lines of their own.
        entries = [PayoutEntry(p.id, p.created_at, p.paid_at, p.amount_minor, p.currency, p.rail, p.status,
                               PAYOUT_STATUS_TEXT.get(p.status, p.status), dict(p.fx_rates),
                               remittance_lines(session, p.id)) for p in payouts]
    return entries, int(total)

