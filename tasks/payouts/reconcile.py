"""Reconciling the rails that confirm later: PayPal (status polling) and SEPA (the bank's report).

Both only move payouts through C1's idempotent `mark_payout_paid` / `mark_payout_failed`, so running
them twice, or after a webhook already confirmed a payout, changes nothing.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

from sqlmodel import select

from partnerflow.models import Payout, session_scope
from partnerflow.providers.errors import PermanentError, RetryableError
from partnerflow.settings import get_settings

log = logging.getLogger(__name__)


def poll_paypal(*, rail=None, limit: int = 1000) -> dict[str, int]:
    """Ask PayPal about every PayPal payout still processing; mark the settled ones paid or failed."""
    from partnerflow.providers.payout.paypal import PayPalRail
    from partnerflow.tasks.payouts.batches import (
        finish_batch,
        mark_payout_failed,
        mark_payout_paid,
    )

    with session_scope() as session:
        rows = session.exec(select(Payout.id, Payout.idempotency_key, Payout.provider_ref, Payout.batch_id).where(
            Payout.rail == "paypal", Payout.status == "processing", Payout.provider_ref.is_not(None))
            .order_by(Payout.id).limit(limit)).all()
    counts: dict[str, int] = defaultdict(int)
    if not rows:
        return {}
    rail = rail or PayPalRail(get_settings().payouts)
    batches = set()
    for payout_id, key, ref, batch_id in rows:
        try:
            status = rail.status(ref, key)
        except (RetryableError, PermanentError) as exc:  # unknown is never read as failed: that could pay twice
            log.warning("PayPal status for payout %s unknown for now: %s", payout_id, exc.reason)
            counts["unknown"] += 1
            continue
        if status.state == "paid":
            mark_payout_paid(payout_id, ref, actor="paypal")  # the batch id: lookups need it
        elif status.state == "failed":
            mark_payout_failed(payout_id, f"PayPal: {status.reason}", actor="paypal")
        counts[status.state] += 1
        batches.add(batch_id)
    for batch_id in batches:
        finish_batch(batch_id)
    return dict(counts)


def import_bank_report(path: str | Path) -> dict[str, int]:
    """Apply a SEPA bank report (pain.002 status report or camt.053/054 statement) to our SEPA payouts.

    Lines for payments that are not ours are counted as "unknown", never guessed at.
    """
    from partnerflow.providers.payout.sepa import end_to_end_id, read_bank_report
    from partnerflow.tasks.payouts.batches import (
        finish_batch,
        mark_payout_failed,
        mark_payout_paid,
    )

    outcomes = read_bank_report(Path(path).read_bytes())
    with session_scope() as session:
        rows = session.exec(select(Payout.id, Payout.idempotency_key, Payout.batch_id).where(
            Payout.rail == "sepa", Payout.status.in_(("sending", "processing", "paid", "failed")))).all()
    ours = {end_to_end_id(key): (payout_id, batch_id) for payout_id, key, batch_id in rows}
    counts: dict[str, int] = defaultdict(int)
    batches = set()
    for outcome in outcomes:
        match = ours.get(outcome.end_to_end_id)
        if match is None:
            counts["unknown"] += 1
            continue
        payout_id, batch_id = match
        if outcome.status == "paid":
            changed = mark_payout_paid(payout_id, outcome.bank_ref or outcome.end_to_end_id, actor="bank")
        else:
            changed = mark_payout_failed(payout_id, outcome.reason, actor="bank")
        counts[outcome.status if changed else "unchanged"] += 1
        batches.add(batch_id)
    for batch_id in batches:
        finish_batch(batch_id)
    return dict(counts)
