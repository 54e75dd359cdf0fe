"""Registering partners' promotional pages (checked for disclosure and brand rules)."""

from __future__ import annotations

from urllib.parse import urlsplit

from sqlmodel import select

from partnerflow.models import session_scope
from partnerflow.models.compliance import PartnerPage


def register_pages(partner_id: int, urls: list[str]) -> int:
    """Add these http(s) URLs for the partner (re-activating known ones); returns how many were new."""
    added = 0
    with session_scope() as session:
        for url in urls:
            url = url.strip()
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"not an http(s) URL: {url!r}")
            row = session.exec(select(PartnerPage).where(PartnerPage.partner_id == partner_id,
                                                         PartnerPage.url == url)).first()
            if row:
                row.active = True
                session.add(row)
                continue
            session.add(PartnerPage(partner_id=partner_id, url=url))
            added += 1
    return added
