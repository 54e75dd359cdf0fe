"""A customer's email as the system keeps it: keyed hashes of the address and of its domain, never the
address. Conversion intake stores them; the self-referral fraud check compares them with the partner's own."""

from __future__ import annotations

from prefect import task
from sqlmodel import select

from partnerflow.models import session_scope
from partnerflow.models.payouts import Conversion
from partnerflow.secrets import pseudonym, pseudonyms

EMAIL_PURPOSE = "customer-email"
DOMAIN_PURPOSE = "customer-domain"


def email_domain(email: str) -> str:
    return email.rsplit("@", 1)[1] if "@" in email else ""


def customer_hashes(email: str | None) -> tuple[str | None, str | None]:
    """(hash of the address, hash of its domain) under the newest key."""
    if not email:
        return None, None
    email = email.strip().lower()
    return pseudonym(email, EMAIL_PURPOSE), pseudonym(email_domain(email), DOMAIN_PURPOSE)


def email_hashes(email: str) -> set[str]:
    """The address's hash under every listed key: rows hashed before a key rotation still match."""
    return set(pseudonyms(email.strip().lower(), EMAIL_PURPOSE))


def domain_hashes(domain: str) -> set[str]:
    return set(pseudonyms(domain.strip().lower(), DOMAIN_PURPOSE))


@task(name="hash-clear-customer-emails")
def hash_clear_customer_emails(chunk: int = 1000) -> int:
    """Replace customer emails stored in clear (conversions recorded before intake hashed them) with their
    keyed hashes; returns how many rows changed. Cheap once done: the query finds nothing."""
    changed = 0
    while True:
        with session_scope() as session:
            rows = session.exec(select(Conversion).where(Conversion.customer_email.is_not(None)).limit(chunk)).all()
            for row in rows:
                email = row.customer_email.strip().lower()
                row.customer_email_hash, row.customer_domain_hash = customer_hashes(email) if "@" in email \
                    else (row.customer_email_hash, row.customer_domain_hash)
                row.customer_email = None
        changed += len(rows)
        if len(rows) < chunk:
            return changed
