"""Partner portal sessions: a server-side row per signed-in partner, named by a signed cookie.

The cookie holds a random session id signed with itsdangerous (every listed secret key verifies, the
newest signs); the row holds only the id's keyed hash, so a copy of the database signs nobody in. A
session ends when the partner signs out (the row is deleted), after `portal_session_idle_minutes`
without a page, and `portal_session_absolute_hours` after sign-in however active the partner is.

Each session has a CSRF token derived from its id with a keyed hash: every form POST must carry it,
and nothing about it is stored.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import timedelta

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import delete, or_, update
from sqlmodel import select

from partnerflow.models import session_scope, utcnow
from partnerflow.models.portal import PortalSession
from partnerflow.secrets import keys, new_token, token_hash, token_hashes
from partnerflow.settings import get_settings

COOKIE_NAME = "pf_portal"
COOKIE_PATH = "/portal"
_SALT = "partnerflow.portal.session"
# last_seen_at is written at most this often per session: a page view is not a database write each time.
_SEEN_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class PortalVisitor:
    """The partner signed in at this request, and the CSRF token their forms must carry."""

    partner_id: int
    csrf_token: str


def _serializer() -> URLSafeSerializer:
    # itsdangerous signs with the last key of the list and verifies with any; ours are listed newest first.
    return URLSafeSerializer([key.secret for key in reversed(keys())], salt=_SALT)


def _csrf_token(session_id: str) -> str:
    return token_hash(f"portal-csrf:{session_id}")


def start_session(partner_id: int) -> tuple[str, str]:
    """Sign a partner in: (cookie value, CSRF token). Sessions past either expiry, anyone's, are cleared on
    the way, so the table holds only live sessions without a sweep of its own."""
    portal = get_settings().portal
    session_id = new_token(32)
    now = utcnow()
    with session_scope() as session:
        session.execute(delete(PortalSession).where(or_(
            PortalSession.expires_at <= now,
            PortalSession.last_seen_at <= now - timedelta(minutes=portal.portal_session_idle_minutes))))
        expires_at = now + timedelta(hours=portal.portal_session_absolute_hours)
        session.add(PortalSession(partner_id=partner_id, session_hash=token_hash(session_id), created_at=now,
                                  last_seen_at=now, expires_at=expires_at))
    return _serializer().dumps(session_id), _csrf_token(session_id)


def _session_id(cookie_value: str | None) -> str | None:
    """The session id a cookie names, or None for a missing, forged or tampered cookie."""
    if not cookie_value:
        return None
    try:
        session_id = _serializer().loads(cookie_value)
    except BadSignature:
        return None
    return session_id if isinstance(session_id, str) and session_id else None


def visitor_for(cookie_value: str | None) -> PortalVisitor | None:
    """Who the cookie signs in, or None (no cookie, bad signature, signed out, idle or too old)."""
    session_id = _session_id(cookie_value)
    if session_id is None:
        return None
    now = utcnow()
    idle = timedelta(minutes=get_settings().portal.portal_session_idle_minutes)
    with session_scope() as session:
        row = session.exec(select(PortalSession)
                           .where(PortalSession.session_hash.in_(token_hashes(session_id)))).first()
        if row is None:
            return None
        if row.expires_at <= now or row.last_seen_at + idle <= now:
            session.execute(delete(PortalSession).where(PortalSession.id == row.id))
            return None
        if now - row.last_seen_at >= _SEEN_EVERY:
            session.execute(update(PortalSession).where(PortalSession.id == row.id).values(last_seen_at=now))
        return PortalVisitor(partner_id=row.partner_id, csrf_token=_csrf_token(session_id))


def csrf_matches(visitor: PortalVisitor, token: object) -> bool:
    """True when a form's token is this session's (compared in constant time)."""
    return isinstance(token, str) and bool(token) and hmac.compare_digest(token, visitor.csrf_token)


def end_session(cookie_value: str | None) -> bool:
    """Sign out: delete the session's row. False when the cookie named no session."""
    session_id = _session_id(cookie_value)
    if session_id is None:
        return False
    with session_scope() as session:
        return session.execute(delete(PortalSession).where(
            PortalSession.session_hash.in_(token_hashes(session_id)))).rowcount > 0


def form_token(nonce: str) -> str:
    """The CSRF token of a form shown before sign-in (request a link, use a link), bound to the random
    nonce in the visitor's form cookie: a page elsewhere can neither read the nonce nor guess the token."""
    return token_hash(f"portal-form:{nonce}")


def form_token_matches(nonce: str | None, token: object) -> bool:
    if not nonce or not isinstance(token, str) or not token:
        return False
    return any(hmac.compare_digest(token, expected) for expected in token_hashes(f"portal-form:{nonce}"))
