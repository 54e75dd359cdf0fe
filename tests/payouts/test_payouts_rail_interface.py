"""One complete rail interface: every registered rail implements it; the defaults behave."""

from __future__ import annotations

import inspect

import pytest

from partnerflow.providers.errors import PermanentError
from partnerflow.providers.payout.base import PayoutInstruction, PayoutRail, RailResult, RailState
from partnerflow.providers.payout.registry import RAILS


@pytest.mark.parametrize("name", sorted(RAILS))
def test_every_registered_rail_is_a_complete_payout_rail(name):
    rail = RAILS[name].load()
    assert issubclass(rail, PayoutRail) and not inspect.isabstract(rail)
    assert rail.name == name


class Booked(PayoutRail):
    """Pays positive amounts; remembers what it paid."""

    name = "booked"

    def __init__(self):
        self.paid: dict[str, RailResult] = {}

    def pay(self, instruction: PayoutInstruction) -> RailResult:
        if instruction.amount_minor <= 0:
            raise PermanentError("not positive")
        self.paid[instruction.idempotency_key] = RailResult(RailState.PAID, f"b:{instruction.payout_id}")
        return self.paid[instruction.idempotency_key]

    def lookup(self, idempotency_key: str, provider_ref: str | None = None) -> RailResult | None:
        return self.paid.get(idempotency_key)


def _instruction(payout_id: int, amount_minor: int) -> PayoutInstruction:
    return PayoutInstruction(payout_id=payout_id, idempotency_key=f"payout:{payout_id}", partner_id=payout_id,
                             partner_name="P", partner_email="p@example.com", amount_minor=amount_minor,
                             currency="USD")


def test_the_default_pay_batch_pays_one_by_one_and_keeps_errors_in_place():
    rail = Booked()
    assert not rail.pays_in_batches
    first, refused, third = rail.pay_batch([_instruction(1, 100), _instruction(2, 0), _instruction(3, 5)])
    assert first == RailResult(RailState.PAID, "b:1") and third.provider_ref == "b:3"
    assert isinstance(refused, PermanentError)
    assert sorted(rail.paid) == ["payout:1", "payout:3"]


def test_the_default_status_is_what_lookup_finds_and_never_failed():
    rail = Booked()
    rail.pay(_instruction(1, 100))
    assert rail.status("payout:1", "b:1").state == RailState.PAID
    assert rail.status("payout:9", "b:9").state == RailState.PROCESSING  # unknown is never read as failed
