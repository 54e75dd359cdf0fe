"""The team's always-ask limit for payout batches: a run's auto_approve_below_minor may lower it, never raise it."""

from __future__ import annotations

import pytest
from factories import add_conversions, after_lock, make_partner

from partnerflow.models import PayoutBatch, session_scope
from partnerflow.tasks.payouts import batches
from partnerflow.tasks.payouts.approval import approve_by_policy
from partnerflow.tasks.payouts.commissions import compute_commissions


def _batch_of_2000() -> int:
    p = make_partner(1)
    add_conversions([{"partner_id": p, "amount_minor": 20000, "external_id": "s"}])  # 10 %: 20.00
    compute_commissions(now=after_lock())
    batch_id = batches.build_batch(after_lock())
    assert batches.total_minor_by_currency(batch_id) == {"USD": 2000}
    return batch_id


@pytest.mark.parametrize(("team_limit", "run_parameter", "approved_by_policy"), [
    (0, 10**12, False),  # the team always asks: a run's parameter cannot wave the batch through
    (1999, 10**12, False),
    (1999, None, False),
    (2000, None, True),
    (2000, 2001, True),
    (2000, 2000, False),  # a run may be stricter than the team
    (10**12, 0, False),  # 0 = ask a person for this run, whatever the team allows
])
def test_a_run_parameter_lowers_the_teams_limit_but_never_raises_it(configure, team_limit, run_parameter,
                                                                     approved_by_policy):
    configure(payout_approval_above_minor=team_limit)
    batch_id = _batch_of_2000()
    assert approve_by_policy(batch_id, 1, run_parameter) is approved_by_policy
    with session_scope() as s:
        batch = s.get(PayoutBatch, batch_id)
    assert batch.status == ("approved" if approved_by_policy else "draft")
    assert batch.approved_by == ("policy" if approved_by_policy else None)
