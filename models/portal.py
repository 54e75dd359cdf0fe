"""Partner portal tables: emailed sign-in links, server-side sessions, and payout-detail changes waiting for
the partner's confirmation. Every token (link, session id) is stored only as a keyed hash
(partnerflow.secrets.token_hash); new payout details only encrypted.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from partnerflow.models.types import UTCDateTime, utcnow


class PortalSignInLink(SQLModel, table=True):
    """A magic sign-in link mailed to a partner: works once, for a few minutes."""

    __tablename__ = "portal_sign_in_link"

    id: int | None = Field(default=None, primary_key=True)
    partner_id: int = Field(foreign_key="partner.id", index=True)
    token_hash: str = Field(unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class PortalSession(SQLModel, table=True):
    """A signed-in partner. The cookie names the session; the row holds only the session id's keyed hash.
    Sign-out deletes the row; a row past its idle or absolute expiry no longer signs anyone in."""

    __tablename__ = "portal_session"

    id: int | None = Field(default=None, primary_key=True)
    partner_id: int = Field(foreign_key="partner.id", index=True)
    session_hash: str = Field(unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)  # absolute: however active the partner is


class PayoutDetailsChange(SQLModel, table=True):
    """New payout details asked for in the portal. Nothing changes until the partner opens the link sent to
    the address on file; then the details are applied and payouts to them are held until `hold_until`."""

    __tablename__ = "payout_details_change"

    id: int | None = Field(default=None, primary_key=True)
    partner_id: int = Field(foreign_key="partner.id", index=True)
    token_hash: str = Field(unique=True, index=True)
    payout_method: str
    payout_currency: str
    details_encrypted: str  # partnerflow.secrets.encrypt of the clean details
    details_masked: str
    requested_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    # A newer request, or the link's own use, closes a request: at most one is ever applied.
    cancelled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    confirmed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    hold_until: datetime | None = Field(default=None, sa_type=UTCDateTime)  # the cooling-off period's end
