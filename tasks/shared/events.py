"""Prefect events that hand one lifecycle stage to the next (see deployments/ for the triggers)."""

from __future__ import annotations

from typing import Any

from prefect.events import emit_event

PARTNER_APPLIED = "partner.applied"
APPLICATION_DECIDED = "application.decided"
CONTRACT_SIGNED = "contract.signed"
PARTNER_ACTIVATED = "partner.activated"
PAYOUT_BATCH_PAID = "payout.batch.paid"
COMPLIANCE_FINDING = "compliance.finding"


def emit(name: str, resource_kind: str, resource_id: object, payload: dict[str, Any] | None = None) -> None:
    """Emit `name` about partnerflow.<resource_kind>.<resource_id>; the payload feeds trigger parameters."""
    emit_event(
        event=name,
        resource={"prefect.resource.id": f"partnerflow.{resource_kind}.{resource_id}",
                  "prefect.resource.name": f"{resource_kind} {resource_id}"},
        payload=payload or {},
    )
