"""Changing payout details through the partner portal.

Asking changes nothing: the new details wait, encrypted, in a PayoutDetailsChange row, and a link goes
to the partner's address on file. Only that link's confirmation applies them (tasks/onboarding/details.py
writes the partner's details and the field-by-field masked audit), tells the team, and holds payouts to
the new details for `portal_payout_cooling_off_hours`. A newer request replaces one still waiting.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import select

from partnerflow.models import Partner, audit, session_scope, utcnow
from partnerflow.models.onboarding import Onboarding
from partnerflow.models.portal import PayoutDetailsChange
from partnerflow.secrets import decrypt, encrypt, new_token, token_hash, token_hashes
from partnerflow.settings import get_settings
from partnerflow.tasks.onboarding.details import (
    OnboardingInvalid,
    apply_payout_details,
    validate_currency,
    validate_payout,
)
from partnerflow.tasks.portal.access import LinkRefused
from partnerflow.tasks.shared.mail import deliver

log = logging.getLogger(__name__)


class ChangeUnavailable(PermissionError):
    """This partner cannot change payout details in the portal yet (the sentence says why)."""


def confirm_url(token: str) -> str:
    return f"{get_settings().public_base_url.rstrip('/')}/portal/payout-details/confirm/{token}"


def request_change(partner_id: int, data: dict[str, Any]) -> PayoutDetailsChange:
    """Keep the asked-for details (encrypted) and mail the confirmation link to the address on file.

    Raises OnboardingInvalid naming every wrong field, ChangeUnavailable before onboarding has begun."""
    details, masked, errors = validate_payout(data)
    currency, currency_errors = validate_currency(data, details["method"])
    errors.update(currency_errors)
    if errors:
        raise OnboardingInvalid(errors)
    portal, now, token = get_settings().portal, utcnow(), new_token(32)
    with session_scope() as session:
        partner = session.get(Partner, partner_id)
        if session.exec(select(Onboarding.id).where(Onboarding.partner_id == partner_id)).first() is None:
            raise ChangeUnavailable("Payout details can be changed here once your onboarding has begun; "
                                    f"please write to {get_settings().team_email}.")
        session.execute(update(PayoutDetailsChange)
                        .where(PayoutDetailsChange.partner_id == partner_id,
                               PayoutDetailsChange.confirmed_at.is_(None), PayoutDetailsChange.cancelled_at.is_(None))
                        .values(cancelled_at=now))
        change = PayoutDetailsChange(partner_id=partner_id, token_hash=token_hash(token),
                                     payout_method=details["method"],
                                     payout_currency=currency or partner.payout_currency,
                                     details_encrypted=encrypt(json.dumps(details)), details_masked=masked,
                                     requested_at=now,
                                     expires_at=now + timedelta(minutes=portal.portal_details_link_minutes))
        session.add(change)
        session.flush()
        audit(session, actor=f"partner:{partner_id}", action="portal.payout_details_change_requested",
              subject_type="partner", subject_id=partner_id,
              details={"change": change.id, "to": masked, "currency": change.payout_currency})
        mail = {"key": f"portal-details-change:{change.id}", "to_email": partner.email, "context": {
            "name": partner.contact_name or partner.legal_name, "legal_name": partner.legal_name,
            "masked": masked, "currency": change.payout_currency, "url": confirm_url(token),
            "minutes": portal.portal_details_link_minutes, "cooling_off_hours": portal.portal_payout_cooling_off_hours,
            "at": f"{now:%Y-%m-%d %H:%M} UTC", "team_email": get_settings().team_email}}
    _send(mail["key"], mail["to_email"], "portal/details_change_confirm", mail["context"], partner_id)
    return change


def pending_change(partner_id: int) -> PayoutDetailsChange | None:
    """The request still waiting for the partner's confirmation, if any."""
    with session_scope() as session:
        return session.exec(select(PayoutDetailsChange)
                            .where(PayoutDetailsChange.partner_id == partner_id,
                                   PayoutDetailsChange.confirmed_at.is_(None),
                                   PayoutDetailsChange.cancelled_at.is_(None),
                                   PayoutDetailsChange.expires_at > utcnow())
                            .order_by(PayoutDetailsChange.id.desc())).first()


def change_for_link(token: str) -> PayoutDetailsChange | LinkRefused:
    """The change a confirmation link would apply, or why it cannot (nothing is changed)."""
    with session_scope() as session:
        change = session.exec(select(PayoutDetailsChange)
                              .where(PayoutDetailsChange.token_hash.in_(token_hashes(token)))).first()
    if change is None:
        return LinkRefused.UNKNOWN
    if change.confirmed_at is not None or change.cancelled_at is not None:
        return LinkRefused.USED
    if change.expires_at <= utcnow():
        return LinkRefused.EXPIRED
    return change


def confirm_change(token: str) -> PayoutDetailsChange | LinkRefused:
    """Apply the change the link names: the partner's details change, payouts to them are held for the
    cooling-off period, the audit log records each field (masked), the team is mailed. Works once."""
    found = change_for_link(token)
    if isinstance(found, LinkRefused):
        return found
    hours = get_settings().portal.portal_payout_cooling_off_hours
    now = utcnow()
    hold_until = now + timedelta(hours=hours) if hours else None
    with session_scope() as session:
        claimed = session.execute(update(PayoutDetailsChange)
                                  .where(PayoutDetailsChange.id == found.id,
                                         PayoutDetailsChange.confirmed_at.is_(None),
                                         PayoutDetailsChange.cancelled_at.is_(None),
                                         PayoutDetailsChange.expires_at > now)
                                  .values(confirmed_at=now, hold_until=hold_until)).rowcount
        if claimed != 1:  # a second click racing this one, or the link ran out meanwhile
            return LinkRefused.USED
        change = session.get(PayoutDetailsChange, found.id)
        partner = session.get(Partner, change.partner_id)
        changes = apply_payout_details(
            session, partner, json.loads(decrypt(change.details_encrypted)), change.details_masked,
            change.payout_currency, actor=f"partner:{partner.id}", via="portal", hold_since=now if hold_until else None,
            extra={"change": change.id, "hold_until": hold_until.isoformat() if hold_until else None})
        context = {"legal_name": partner.legal_name, "partner_id": partner.id, "email": partner.email,
                   "fields": changes, "at": f"{now:%Y-%m-%d %H:%M} UTC",
                   "hold_until": f"{hold_until:%Y-%m-%d %H:%M} UTC" if hold_until else ""}
    _send(f"portal-details-change:{change.id}:team", get_settings().team_email,
          "portal/payout_details_changed_team", context, change.partner_id)
    return change


def _send(key: str, to_email: str, template: str, context: dict[str, Any], partner_id: int) -> None:
    """A mail that cannot go now does not undo the change: deliver recorded it, and the hold protects the money."""
    try:
        deliver(key, kind="payout_details_notice", to_email=to_email, template=template, context=context,
                partner_id=partner_id)
    except Exception:
        log.exception("payout details mail %s could not be sent now", key)


def payout_profile(partner_id: int) -> dict[str, Any]:
    """What the payout-details page shows of the partner: names, address on file, masked details."""
    with session_scope() as session:
        partner = session.get(Partner, partner_id)
        return {"legal_name": partner.legal_name, "email": partner.email, "method": partner.payout_method or "",
                "masked": partner.payout_details_masked or "", "currency": partner.payout_currency}
