"""The embedded default rail: records the transfer in `ledger_transfer`, nothing leaves the building.

It behaves like a provider: it commits its record in its own transaction (independent of the
payout engine's bookkeeping), refuses a second transfer under the same idempotency key, and
answers `lookup()` from that record. The fault-injection test uses it as the provider's record.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from partnerflow.models.engine import get_engine
from partnerflow.models.payouts import LedgerTransfer
from partnerflow.providers.errors import PermanentError
from partnerflow.providers.payout.base import PayoutInstruction, RailResult
from partnerflow.providers.payout.settings import PayoutRailSettings


class LedgerRail:
    name = "ledger"
    idempotent = True

    def __init__(self, settings: PayoutRailSettings):
        self.settings = settings

    def pay(self, instruction: PayoutInstruction) -> RailResult:
        if instruction.amount_minor <= 0:
            raise PermanentError(f"payout amount must be positive, got {instruction.amount_minor}")
        with Session(get_engine()) as session:
            row = LedgerTransfer(idempotency_key=instruction.idempotency_key, payout_id=instruction.payout_id,
                                 partner_id=instruction.partner_id, amount_minor=instruction.amount_minor,
                                 currency=instruction.currency)
            session.add(row)
            try:
                session.commit()
            except IntegrityError:  # already transferred under this key: the same answer again
                session.rollback()
                existing = self.lookup(instruction.idempotency_key)
                assert existing is not None
                return existing
            return RailResult(status="paid", provider_ref=f"ledger:{row.id}")

    def lookup(self, idempotency_key: str) -> RailResult | None:
        with Session(get_engine()) as session:
            row = session.exec(select(LedgerTransfer).where(LedgerTransfer.idempotency_key == idempotency_key)).first()
            return RailResult(status="paid", provider_ref=f"ledger:{row.id}") if row else None
