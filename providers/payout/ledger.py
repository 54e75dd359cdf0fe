"""The embedded default rail: records the transfer in `ledger_transfer`, nothing leaves the building.

It behaves like a provider: the `ledger_transfer` table is its own record (kept in the database
`ledger_database_url` names, ours by default), written through its own engine in its own
transaction, independent of the payout engine's bookkeeping. It refuses a second transfer under the
same idempotency key and answers `lookup()` from that record. The fault-injection tests read it as
"the provider's record".
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, DateTime, create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, select

from partnerflow.providers.errors import PermanentError
from partnerflow.providers.payout.base import PaymentMismatch, PayoutInstruction, PayoutRail, RailResult, RailState
from partnerflow.providers.payout.settings import PayoutRailSettings


def _now() -> datetime:
    return datetime.now(UTC)


class LedgerTransfer(SQLModel, table=True):
    """The ledger rail's own record ("the provider's record"): one row per idempotency key, ever."""

    __tablename__ = "ledger_transfer"

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True)
    payout_id: int = Field(index=True)
    partner_id: int = Field(index=True)
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str
    created_at: datetime = Field(default_factory=_now, sa_type=DateTime(timezone=True))


_engines: dict[str, Engine] = {}


def ledger_engine(url: str) -> Engine:
    """One engine per database URL and process (a rail is built per batch run; its connections are not)."""
    if url not in _engines:
        if url.startswith("sqlite"):
            # Waits for the payout engine's writes instead of failing on a locked database file.
            _engines[url] = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        else:
            _engines[url] = create_engine(url, pool_pre_ping=True)
    return _engines[url]


class LedgerRail(PayoutRail):
    name = "ledger"

    def __init__(self, settings: PayoutRailSettings):
        if not settings.ledger_database_url:
            raise PermanentError("the ledger rail needs PARTNERFLOW_LEDGER_DATABASE_URL (normally our database)")
        self._engine = ledger_engine(settings.ledger_database_url)

    def pay(self, instruction: PayoutInstruction) -> RailResult:
        if instruction.amount_minor <= 0:
            raise PermanentError(f"payout amount must be positive, got {instruction.amount_minor}")
        with Session(self._engine) as session:
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
                problem = self.mismatch(instruction, existing)
                if problem:
                    raise PaymentMismatch(problem, evidence={"held": existing.held,
                                                             "provider_ref": existing.provider_ref}) from None
                return existing
            return RailResult(status=RailState.PAID, provider_ref=f"ledger:{row.id}", held=_held(row))

    def mismatch(self, instruction: PayoutInstruction, found: RailResult) -> str | None:
        asked = {"amount_minor": instruction.amount_minor, "currency": instruction.currency,
                 "partner_id": instruction.partner_id}
        problem = ", ".join(k for k, v in asked.items() if k in found.held and found.held[k] != v)
        return f"ledger transfer {found.provider_ref} has another {problem}" if problem else None

    def lookup(self, idempotency_key: str, provider_ref: str | None = None) -> RailResult | None:
        with Session(self._engine) as session:
            row = session.exec(select(LedgerTransfer).where(LedgerTransfer.idempotency_key == idempotency_key)).first()
            return RailResult(status=RailState.PAID, provider_ref=f"ledger:{row.id}", held=_held(row)) if row else None


def _held(row: LedgerTransfer) -> dict:
    return {"amount_minor": row.amount_minor, "currency": row.currency, "partner_id": row.partner_id}
