"""Each partner's program-news choices, and the signed links that change them without signing in.

Two lists a partner can leave, apart from the recruitment suppression list:
- `news`: program broadcasts (new offers, coupons, policy changes);
- `weekly`: the weekly performance email.

An opt-out link is "<list>-<partner id>-<keyed hash>": unguessable without the secret key, made with
the newest key and accepted under every listed one, so a mail sent before a key rotation still works.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from partnerflow.models import Partner, audit, session_scope, utcnow
from partnerflow.models.news import NewsPreference
from partnerflow.secrets import token_hash, token_hashes
from partnerflow.settings import get_settings

NewsList = Literal["news", "weekly"]
LISTS: tuple[NewsList, ...] = ("news", "weekly")
_SIGNATURE_CHARS = 32


def _signed(news_list: str, partner_id: int) -> str:
    return f"news-opt-out:{news_list}:{partner_id}"


def opt_out_token(news_list: NewsList, partner_id: int) -> str:
    return f"{news_list}-{partner_id}-{token_hash(_signed(news_list, partner_id))[:_SIGNATURE_CHARS]}"


def read_token(token: str) -> tuple[NewsList, int] | None:
    """(list, partner id) of a genuine link; None for anything forged, altered or malformed."""
    news_list, _, rest = (token or "").partition("-")
    head, _, signature = rest.partition("-")
    if news_list not in LISTS or not head.isascii() or not head.isdigit() or len(head) > 18 or not signature:
        return None
    given = signature.encode()  # bytes: a non-ASCII token is a mismatch, never a crash
    for expected in token_hashes(_signed(news_list, int(head))):
        if hmac.compare_digest(given, expected[:_SIGNATURE_CHARS].encode()):
            return news_list, int(head)
    return None


def opt_out_url(news_list: NewsList, partner_id: int) -> str:
    return f"{get_settings().public_base_url.rstrip('/')}/news/u/{opt_out_token(news_list, partner_id)}"


def list_headers(url: str) -> dict[str, str]:
    """RFC 8058 for an opt-out link: the one-click https link in List-Unsubscribe, and the header saying
    a POST is enough."""
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


@dataclass(frozen=True)
class Choices:
    news: bool  # gets program broadcasts
    weekly: bool  # gets the weekly performance email


def choices_of(partner_id: int) -> Choices:
    with session_scope() as session:
        row = session.exec(select(NewsPreference).where(NewsPreference.partner_id == partner_id)).first()
    return Choices(news=True, weekly=True) if row is None else Choices(row.news_opted_out_at is None, row.weekly_email)


def opted_out_among(session: Session, partner_ids: Iterable[int], news_list: NewsList) -> set[int]:
    """The partners of `partner_ids` who left `news_list` (one query per 500)."""
    wanted = sorted(set(partner_ids))
    left = (NewsPreference.news_opted_out_at.is_not(None) if news_list == "news"
            else NewsPreference.weekly_email.is_(False))
    found: set[int] = set()
    for i in range(0, len(wanted), 500):
        found.update(session.exec(select(NewsPreference.partner_id).where(
            NewsPreference.partner_id.in_(wanted[i:i + 500]), left)).all())
    return found


def set_choice(partner_id: int, news_list: NewsList, wanted: bool, *, source: str) -> bool:
    """Join or leave one list (idempotent, audited when it changes); False when the partner does not exist."""
    with session_scope() as session:
        if session.get(Partner, partner_id) is None:
            return False
        row = _row(session, partner_id)
        before = Choices(row.news_opted_out_at is None, row.weekly_email)
        if news_list == "news":
            row.news_opted_out_at = None if wanted else (row.news_opted_out_at or utcnow())
        else:
            row.weekly_email = wanted
        if getattr(before, news_list) != wanted:
            row.source, row.updated_at = source, utcnow()
            audit(session, actor=source, action=f"news.{news_list}.{'joined' if wanted else 'left'}",
                  subject_type="partner", subject_id=partner_id)
        session.add(row)
    return True


def _row(session: Session, partner_id: int) -> NewsPreference:
    row = session.exec(select(NewsPreference).where(NewsPreference.partner_id == partner_id)).first()
    if row is not None:
        return row
    try:
        with session.begin_nested():  # a concurrent first choice for the same partner is fine
            row = NewsPreference(partner_id=partner_id)
            session.add(row)
        return row
    except IntegrityError:
        return session.exec(select(NewsPreference).where(NewsPreference.partner_id == partner_id)).one()
