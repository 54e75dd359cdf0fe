"""Onboarding after signature: activation, tracking link + coupon, the form link for tax form and
payout details, and the onboarding checklist.

Codes are claimed with a compare-and-set UPDATE (`... WHERE tracking_code IS NULL`) on columns
with unique constraints, so two workers onboarding the same or different partners at once never
hand out one code twice: a collision raises IntegrityError and we try the next candidate.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta
from urllib.parse import urlencode, urlsplit, urlunsplit

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from unidecode import unidecode

from partnerflow.models import (
    Contract,
    ContractStatus,
    Message,
    MessageStatus,
    Partner,
    Stage,
    audit,
    session_scope,
    utcnow,
)
from partnerflow.models.onboarding import Onboarding, TaxFormStatus
from partnerflow.secrets import Key, keys, token_hash, token_hashes
from partnerflow.settings import get_settings
from partnerflow.tasks.onboarding.prospects import link_prospect

# No 0/O, 1/I/L: codes get read aloud and typed from videos.
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
_STOP = {"ltd", "llc", "inc", "gmbh", "ag", "sa", "sas", "bv", "plc", "co", "corp", "the", "limited", "and"}


def tax_form_kind(country: str) -> str:
    """US persons give a W-9; everyone else a W-8BEN."""
    return "W-9" if (country or "").upper() in ("US", "PR", "GU", "VI", "AS", "MP") else "W-8BEN"


def _stem(name: str, length: int) -> str:
    words = [w for w in re.split(r"[^a-z0-9]+", unidecode(name or "").lower()) if w and w not in _STOP]
    return "".join(words)[:length] or "partner"


def _suffix(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def tracking_candidate(name: str) -> str:
    return f"{_stem(name, 12)}-{_suffix(4)}"


def coupon_candidate(name: str) -> str:
    return f"{_stem(name, 8).upper()}{_suffix(3).upper()}"


def _claim_code(partner_id: int, column: str, make, attempts: int = 50) -> str:
    for _ in range(attempts):
        with session_scope() as session:
            current = getattr(session.get(Partner, partner_id), column)
            if current:
                return current
            name = session.get(Partner, partner_id).legal_name
        candidate = make(name)
        try:
            with session_scope() as session:
                column_attr = getattr(Partner, column)
                session.execute(update(Partner).where(Partner.id == partner_id, column_attr.is_(None))
                                .values({column: candidate}))
        except IntegrityError:
            continue  # taken by another partner: draw again
    raise RuntimeError(f"could not find a free {column} for partner {partner_id} in {attempts} attempts")


def provision_codes(partner_id: int) -> tuple[str, str]:
    """The partner's tracking code and coupon code, created once (unique, human-friendly)."""
    return (_claim_code(partner_id, "tracking_code", tracking_candidate),
            _claim_code(partner_id, "coupon_code", coupon_candidate))


def tracking_url(code: str) -> str:
    return f"{get_settings().public_base_url.rstrip('/')}/r/{code}"


def onboarding_token(partner_id: int, key: Key | None = None) -> str:
    """Derived from a secret key (the newest unless given): a re-sent mail can carry the same link; the DB keeps
    its hash."""
    mac = hmac.new((key or keys()[0]).secret, f"onboarding-form:{partner_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def issued_onboarding_token(partner_id: int) -> str:
    """The token whose hash the partner's row keeps: made under the key newest then, so a mail re-sent after a key
    rotation carries the link first mailed while that key is listed. Once it is retired that link is dead: a new
    one under the newest key takes its place (audited), so the mail still carries a link that works."""
    with session_scope() as session:
        row = session.exec(select(Onboarding).where(Onboarding.partner_id == partner_id)).first()
        if row is None:
            return onboarding_token(partner_id)
        for key in keys():
            if row.token_hash in token_hashes(token := onboarding_token(partner_id, key)):
                return token
        token = onboarding_token(partner_id)
        # Compare-and-set on the old hash: two processes re-issuing at once compute the same token anyway.
        if session.execute(update(Onboarding).where(Onboarding.id == row.id, Onboarding.token_hash == row.token_hash)
                           .values(token_hash=token_hash(token))).rowcount == 1:
            audit(session, actor="system", action="onboarding.link_reissued", subject_type="partner",
                  subject_id=partner_id, details={"reason": "the key the link was made with is no longer listed"})
        return token


def onboarding_url(partner_id: int) -> str:
    return f"{get_settings().public_base_url.rstrip('/')}/onboarding/{issued_onboarding_token(partner_id)}"


def ensure_onboarding(partner_id: int) -> Onboarding:
    """The partner's onboarding row (form link, tax form kind); the tax form is marked requested."""
    with session_scope() as session:
        row = session.exec(select(Onboarding).where(Onboarding.partner_id == partner_id)).first()
        if row:
            return row
        partner = session.get(Partner, partner_id)
        kind = tax_form_kind(partner.country)
        row = Onboarding(partner_id=partner_id, token_hash=token_hash(onboarding_token(partner_id)),
                         tax_form_kind=kind,
                         expires_at=utcnow() + timedelta(days=get_settings().onboarding.onboarding_link_days))
        session.add(row)
        try:
            session.flush()
        except IntegrityError:
            session.rollback()
            return session.exec(select(Onboarding).where(Onboarding.partner_id == partner_id)).one()
        partner.tax_form_kind = kind
        if partner.tax_form_status == TaxFormStatus.MISSING:
            partner.tax_form_status = TaxFormStatus.REQUESTED
        session.add(partner)
        return row


def activate(partner_id: int, contract_id: int) -> bool:
    """Partner becomes active (from approved/contracting); False if it already was or cannot be."""
    now = utcnow()
    with session_scope() as session:
        changed = session.execute(
            update(Partner).where(Partner.id == partner_id,
                                  Partner.stage.in_((Stage.APPLIED, Stage.APPROVED, Stage.CONTRACTING)))
            .values(stage=Stage.ACTIVE, activated_at=now, updated_at=now)).rowcount == 1
        if changed:
            audit(session, actor="system", action="partner.activated", subject_type="partner", subject_id=partner_id,
                  details={"contract_id": contract_id})
    link_prospect(partner_id)  # every time, so a re-run after a crash still links a recruit
    return changed


def checklist(partner_id: int) -> list[tuple[str, bool, str]]:
    """(item, done, note) for the partner's onboarding; notes never carry secrets in clear."""
    with session_scope() as session:
        partner = session.get(Partner, partner_id)
        signed = session.exec(select(Contract).where(Contract.partner_id == partner_id,
                                                     Contract.status == ContractStatus.SIGNED)).first()
        welcome = session.exec(select(Message).where(Message.idempotency_key == f"welcome:{partner_id}")).first()
        tracking = tracking_url(partner.tracking_code) if partner.tracking_code else ""
        payout = (f"{partner.payout_method}: {partner.payout_details_masked}" if partner.payout_details_encrypted
                  else "requested")
        mailed = welcome is not None and welcome.status == MessageStatus.SENT
        return [
            ("Contract signed", signed is not None, f"contract {signed.id} v{signed.version}" if signed else ""),
            ("Partner active", partner.stage == Stage.ACTIVE, partner.stage),
            ("Tracking link", bool(partner.tracking_code), tracking),
            ("Coupon code", bool(partner.coupon_code), partner.coupon_code or ""),
            ("Tax form", partner.tax_form_status == TaxFormStatus.RECEIVED,
             f"{partner.tax_form_kind or '?'}: {partner.tax_form_status}"),
            ("Payout details", bool(partner.payout_details_encrypted), payout),
            ("Welcome mail", mailed, welcome.status if welcome else "not sent"),
        ]


def checklist_markdown(partner_id: int) -> str:
    with session_scope() as session:
        partner = session.get(Partner, partner_id)
        title = f"# Onboarding: {partner.legal_name} (partner {partner_id})\n\n"
    rows = "\n".join(f"| {'✅' if done else '⬜'} | {item} | {note} |" for item, done, note in checklist(partner_id))
    return title + "| | Item | Status |\n|---|---|---|\n" + rows + "\n"


def note_click(code: str, now: datetime | None = None) -> None:
    """A click on a tracking link is activity (noted at most once a minute per partner); unknown codes are ignored,
    attribution happens at conversion intake."""
    now = now or utcnow()
    with session_scope() as session:
        session.execute(update(Partner).where(Partner.tracking_code == code,
                                              or_(Partner.last_activity_at.is_(None),
                                                  Partner.last_activity_at < now - timedelta(minutes=1)))
                        .values(last_activity_at=now))


def landing_url(code: str) -> str:
    """Where a tracking link leads: the partner program's landing page with ?ref=code."""
    target = urlsplit(get_settings().onboarding.partner_landing_url)
    query = "&".join(q for q in (target.query, urlencode({"ref": code})) if q)
    return urlunsplit(target._replace(query=query))
