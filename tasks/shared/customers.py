"""A customer's email as the system keeps it: keyed hashes of the address and of its domain, never the
address. Conversion intake stores them; the self-referral fraud check compares them with the partner's own."""

from __future__ import annotations

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
