"""Signing in to the partner portal by an emailed link.

Asking for a link looks the same from outside whether or not the address belongs to a partner: the
page answers before anything is looked up, and only a partner's address gets mail. The link is an
unguessable token whose keyed hash is all the database holds; it works once, for
`portal_sign_in_link_minutes`, and is mailed through the exactly-once delivery under its own key.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from enum import StrEnum

from sqlalchemy import delete, update
from sqlmodel import select

from partnerflow.models import Partner, Stage, audit, session_scope, utcnow
from partnerflow.models.portal import PortalSignInLink
from partnerflow.secrets import new_token, pseudonym, token_hash, token_hashes
from partnerflow.settings import get_settings
from partnerflow.tasks.shared.identity import normalise_email
from partnerflow.tasks.shared.mail import deliver

log = logging.getLogger(__name__)
# An application that was turned down has nothing to see in the portal.
NO_PORTAL_STAGES = (Stage.REJECTED,)


class LinkRefused(StrEnum):
    """Why a sign-in or confirmation link did not work (the page says so in words)."""

    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"


def sign_in_url(token: str) -> str:
    return f"{get_settings().public_base_url.rstrip('/')}/portal/sign-in/{token}"


def send_sign_in_link(email: str) -> bool:
    """Mail a sign-in link when `email` is a partner's address on file; True when one went out.

    Errors of the mail provider are logged, never shown: the person asking sees the same page either way."""
    address = normalise_email(email)
    if address is None:
        return False
    with session_scope() as session:
        partner = session.exec(select(Partner).where(Partner.email == address)).first()
        if partner is None or partner.stage in NO_PORTAL_STAGES:
            return False
        token, now = new_token(32), utcnow()
        minutes = get_settings().portal.portal_sign_in_link_minutes
        # Spent or expired links are worth nothing: cleared here, so the table needs no sweep of its own.
        session.execute(delete(PortalSignInLink).where(PortalSignInLink.expires_at <= now - timedelta(days=1)))
        link = PortalSignInLink(partner_id=partner.id, token_hash=token_hash(token), created_at=now,
                                expires_at=now + timedelta(minutes=minutes))
        session.add(link)
        session.flush()
        context = {"name": partner.contact_name or partner.legal_name, "url": sign_in_url(token),
                   "minutes": minutes, "team_email": get_settings().team_email}
        key, partner_id, to_email = f"portal-sign-in:{link.id}", partner.id, partner.email
    try:
        deliver(key, kind="portal_sign_in", to_email=to_email, template="portal/sign_in_link", context=context,
                partner_id=partner_id)
    except Exception:  # recorded as pending/failed by deliver; the partner can ask for another link
        log.exception("portal sign-in link %s could not be sent now", key)
    return True


def link_state(token: str) -> LinkRefused | None:
    """None when the sign-in link can still be used; otherwise why not (nothing is changed)."""
    with session_scope() as session:
        link = session.exec(select(PortalSignInLink)
                            .where(PortalSignInLink.token_hash.in_(token_hashes(token)))).first()
    if link is None:
        return LinkRefused.UNKNOWN
    if link.used_at is not None:
        return LinkRefused.USED
    if link.expires_at <= utcnow():
        return LinkRefused.EXPIRED
    return None


def use_sign_in_link(token: str, *, ip: str | None = None) -> int | LinkRefused:
    """Spend the link: the partner id it signs in, or why it cannot. Of two uses racing, exactly one wins."""
    now = utcnow()
    with session_scope() as session:
        link = session.exec(select(PortalSignInLink)
                            .where(PortalSignInLink.token_hash.in_(token_hashes(token)))).first()
        if link is None:
            return LinkRefused.UNKNOWN
        claimed = session.execute(update(PortalSignInLink)
                                  .where(PortalSignInLink.id == link.id, PortalSignInLink.used_at.is_(None),
                                         PortalSignInLink.expires_at > now)
                                  .values(used_at=now)).rowcount
        if claimed != 1:
            return LinkRefused.USED if link.used_at is not None else LinkRefused.EXPIRED
        partner = session.get(Partner, link.partner_id)
        if partner is None or partner.stage in NO_PORTAL_STAGES:
            return LinkRefused.UNKNOWN
        audit(session, actor=f"partner:{partner.id}", action="portal.signed_in", subject_type="partner",
              subject_id=partner.id, details={"link": link.id, "ip_hash": pseudonym(ip, "portal-ip") if ip else None})
        return partner.id
