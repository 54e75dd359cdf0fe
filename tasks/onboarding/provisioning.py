"""Provisioning a partner whose contract is signed: active, codes, the compliance watch on their
site, the onboarding form link and the welcome mail (once: key `welcome:{partner_id}`)."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task

from partnerflow.models import Contract, ContractStatus, Partner, Stage, session_scope
from partnerflow.tasks.compliance.pages import register_pages
from partnerflow.tasks.onboarding.activation import (
    activate,
    ensure_onboarding,
    onboarding_url,
    provision_codes,
    tracking_url,
)
from partnerflow.tasks.shared.events import PARTNER_ACTIVATED, record, relay_after_commit
from partnerflow.tasks.shared.mail import deliver


def register_website(partner_id: int) -> None:
    """The partner's own site is the first page the compliance checks watch (more via the CLI)."""
    with session_scope() as session:
        website = (session.get(Partner, partner_id).website or "").strip()
    if website:
        url = website if website.startswith(("http://", "https://")) else f"https://{website}"
        try:
            register_pages(partner_id, [url])
        except ValueError:
            get_run_logger().warning("partner %s: website %r is not a page we can check", partner_id, website)


def signed_partner(contract_id: int) -> int | None:
    """The partner of a signed contract (None: not signed, nothing to onboard)."""
    with session_scope() as session:
        contract = session.get(Contract, contract_id)
        if contract is None or contract.status != ContractStatus.SIGNED:
            return None
        return contract.partner_id


def send_welcome(partner_id: int, tracking: str, coupon: str) -> None:
    row = ensure_onboarding(partner_id)
    with session_scope() as session:
        partner = session.get(Partner, partner_id)
        context = {"contact_name": partner.contact_name or partner.legal_name, "legal_name": partner.legal_name,
                   "tracking_url": tracking_url(tracking), "coupon_code": coupon,
                   "tax_form_kind": row.tax_form_kind, "onboarding_url": onboarding_url(partner_id)}
        to_email = partner.email
    deliver(f"welcome:{partner_id}", kind="welcome", to_email=to_email, template="onboarding/welcome", context=context,
            partner_id=partner_id)


def announce_activation(partner_id: int, contract_id: int) -> None:
    """Record `partner.activated` once per partner while it is active, then relay it.

    Recorded whether or not this run did the activation: a run that died between activating and
    recording is run again and finds the partner already active, and must still announce it.
    """
    with session_scope() as session:
        if session.get(Partner, partner_id).stage != Stage.ACTIVE:
            return
        handoff = record(session, PARTNER_ACTIVATED, "partner", partner_id,
                         {"partner_id": partner_id, "contract_id": contract_id})
    relay_after_commit(handoff)


@task(name="provision-partner")
def provision(contract_id: int) -> dict[str, Any]:
    partner_id = signed_partner(contract_id)
    if partner_id is None:
        return {"contract_id": contract_id, "skipped": "contract is not signed"}
    activated = activate(partner_id, contract_id)
    tracking, coupon = provision_codes(partner_id)
    register_website(partner_id)
    send_welcome(partner_id, tracking, coupon)
    announce_activation(partner_id, contract_id)
    return {"contract_id": contract_id, "partner_id": partner_id, "activated": activated,
            "tracking_code": tracking, "coupon_code": coupon}
