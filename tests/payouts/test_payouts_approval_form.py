"""The payout approval form lists who is paid (the ids to hold), and partner names as plain text."""

from __future__ import annotations

import re

from partnerflow.models import Payout, PayoutBatch
from partnerflow.tasks.payouts.reports import batch_summary


def test_the_form_lists_each_partner_to_hold_and_escapes_the_names_of_held_ones():
    batch = PayoutBatch(id=3, summary={
        "period_end": "2026-11-30T00:00:00+00:00", "rail": "ledger", "totals": {"USD": 17_500},
        "held": [{"partner_id": 9, "partner": "Evil](https://evil.example/approve) <img src=x>",
                  "amount_minor": 900, "currency": "USD", "held": ["no tax form"]}]})
    payouts = [Payout(id=1, batch_id=3, partner_id=4, amount_minor=2_500, currency="USD", rail="ledger",
                      idempotency_key="k4"),
               Payout(id=2, batch_id=3, partner_id=7, amount_minor=15_000, currency="USD", rail="ledger",
                      idempotency_key="k7")]
    text = batch_summary(batch, payouts)

    listed = re.findall(r"^- partner (\d+): ", text, flags=re.MULTILINE)
    assert listed == ["7", "4"]  # every partner in the batch, largest payout first
    assert re.findall(r"(?<!\\)(\]\(|<img)", text) == []  # a held partner's name cannot add a link or HTML
    assert "partner 9 Evil" in text and "no tax form" in text
