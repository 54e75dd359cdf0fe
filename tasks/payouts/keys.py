"""Payout idempotency keys: deterministic per payout, unique per installation.

Two installations sharing a Stripe or PayPal account (staging and production, two brands) would
both send `payout:1:7` for their first batch, and the provider would answer the second with the
first one's transfer. So every new key carries this installation's namespace, a random id kept in
the database (table `installation`, made by migration 0005), shared by every process and worker.

A key is written on the payout row when the batch is built and never recomputed: payouts built
before the namespace existed keep their old key, so a payout in flight is looked up under the key
it was sent with.
"""

from __future__ import annotations

import uuid

from sqlalchemy.exc import IntegrityError

from partnerflow.models import session_scope
from partnerflow.models.payouts import Installation


def installation_namespace() -> str:
    """This installation's namespace; made on first use when the database was not built by the migration."""
    with session_scope() as session:
        row = session.get(Installation, 1)
        if row is not None:
            return row.namespace
    try:
        with session_scope() as session:
            session.add(Installation(id=1, namespace=uuid.uuid4().hex))
    except IntegrityError:  # another process made it first: use theirs
        pass
    with session_scope() as session:
        return session.get(Installation, 1).namespace


def payout_key(namespace: str, batch_id: int, partner_id: int) -> str:
    """At most 7 + 32 + 2 + digits characters: within PayPal's 63 for a sender_item_id."""
    return f"payout:{namespace}:{batch_id}:{partner_id}"
