"""Tracking tables: each click on a partner's tracking link (/r/{code}).

No visitor is stored in clear: the IP address is kept only as a keyed hash (enough to count
distinct visitors and spot click floods), the user agent truncated.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from partnerflow.models.types import UTCDateTime


class Click(SQLModel, table=True):
    """One click on a tracking link; `click_id` travels to the landing page as ?pf_click= and comes back
    with the conversion, so the sale is attributed to this click."""

    __tablename__ = "click"

    id: int | None = Field(default=None, primary_key=True)
    click_id: str = Field(unique=True)  # random, URL-safe
    partner_id: int = Field(foreign_key="partner.id", index=True)
    tracking_code: str
    clicked_at: datetime = Field(sa_type=UTCDateTime, index=True)
    ip_hash: str | None = None  # keyed hash (partnerflow.secrets.pseudonym), never the address
    user_agent: str | None = None  # truncated
    referrer: str | None = None  # truncated
    landing_url: str  # where the visitor was sent (an allowed domain, with ?ref= and ?pf_click=)
    is_bot: bool = False  # crawler, link preview or prefetch (UA pattern, HEAD, Sec-Purpose: prefetch): counted apart
