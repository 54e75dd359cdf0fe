"""Normalised identities for de-duplication: one email or one domain, however it was written.

`normalise_email("  Jane.Doe@Example.COM ")` -> "jane.doe@example.com"
`normalise_email("Jane@Bücher.DE")` -> "jane@xn--bcher-kva.de"
`normalise_domain("https://www.Bücher.de:443/shop?x=1")` -> "xn--bcher-kva.de"
`normalise_domain("jane@WWW.example.com")` -> "example.com"
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# Deliberately loose: one @, no spaces, a dot in the domain. Deliverability is the provider's job.
_EMAIL_RE = re.compile(r"^[^@\s<>(),;:\"\[\]]+@[^@\s<>(),;:\"\[\]]+\.[^@\s<>(),;:\"\[\]]+$")


def _idna(host: str) -> str:
    """Unicode host -> ASCII (punycode) form; ASCII hosts pass through unchanged."""
    host = host.strip().strip(".").lower()
    if not host or host.isascii():
        return host
    labels = []
    for label in host.split("."):
        if label.isascii():
            labels.append(label)
            continue
        try:
            labels.append(label.encode("idna").decode("ascii"))
        except UnicodeError:
            # Labels the 2003 IDNA codec refuses (e.g. too long) stay as given; still comparable.
            labels.append(label)
    return ".".join(labels)


def normalise_email(value: str | None) -> str | None:
    """Lowercased address with an IDNA domain, or None when `value` is not an email address.

    Accepts "Name <addr>" and "mailto:addr" forms, as spreadsheets and web pages write them.
    """
    if not value:
        return None
    text = str(value).strip()
    match = re.search(r"<([^<>]+)>", text)
    if match:
        text = match.group(1).strip()
    if text.lower().startswith("mailto:"):
        text = text[7:].split("?", 1)[0]
    text = text.strip().strip(".")
    if not _EMAIL_RE.match(text):
        return None
    local, _, domain = text.rpartition("@")
    domain = _idna(domain)
    if not domain or "." not in domain:
        return None
    return f"{local.lower()}@{domain}"


def email_key(value: str | None) -> str:
    """The form an address is stored and compared in (suppression list, enrollments).

    normalise_email's result; a value it refuses is still kept, stripped and lowercased, so that
    even an odd address someone asked us to stop mailing can be suppressed.
    """
    return normalise_email(value) or (value or "").strip().lower()


def normalise_domain(value: str | None) -> str:
    """The bare registrable host of a URL, host or email address; "" when there is none.

    Lowercase, no scheme, no leading "www.", no port, path, query or credentials; IDNA-encoded.
    """
    if not value:
        return ""
    text = str(value).strip()
    if not text:
        return ""
    if "@" in text and "/" not in text.split("@", 1)[0] and "://" not in text:
        # An email address (or mailto:): its domain.
        text = text.rsplit("@", 1)[1]
    if text.lower().startswith("mailto:"):
        text = text[7:]
    if "://" not in text:
        text = "//" + text.lstrip("/")
    try:
        host = urlsplit(text).hostname or ""
    except ValueError:
        return ""
    host = _idna(host)
    while host.startswith("www."):
        host = host[4:]
    # A host needs at least one dot or is "localhost"-like; both are kept as given.
    if not re.fullmatch(r"[a-z0-9._\-]+|\[?[0-9a-f:.]+\]?", host):
        return ""
    return host


# Domains many unrelated people share: never evidence that two records are the same candidate.
FREE_MAIL_DOMAINS = frozenset({
    "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "yahoo.fr", "yahoo.de", "ymail.com",
    "hotmail.com", "hotmail.co.uk", "hotmail.fr", "hotmail.de", "outlook.com", "live.com", "msn.com",
    "icloud.com", "me.com", "mac.com", "aol.com", "proton.me", "protonmail.com", "pm.me", "gmx.com",
    "gmx.de", "gmx.net", "web.de", "t-online.de", "yandex.com", "yandex.ru", "mail.ru", "qq.com",
    "163.com", "126.com", "zoho.com", "fastmail.com", "hey.com", "tutanota.com", "orange.fr", "free.fr",
    "libero.it", "btinternet.com", "comcast.net", "att.net", "verizon.net",
})
SHARED_PLATFORM_DOMAINS = frozenset({
    "youtube.com", "youtu.be", "instagram.com", "tiktok.com", "twitter.com", "x.com", "facebook.com",
    "linkedin.com", "pinterest.com", "twitch.tv", "medium.com", "github.com", "linktr.ee", "threads.net",
    "reddit.com", "snapchat.com", "etsy.com", "amazon.com", "patreon.com", "beacons.ai", "bsky.app",
    "sites.google.com", "notion.site",
})


def dedup_domain(website: str | None = None, email: str | None = None) -> str:
    """The domain that identifies a candidate's organisation, or "" when there is none to trust.

    The website's domain, unless it is a shared platform (instagram.com/someone); else the email's
    domain, unless it is a free mailbox (gmail.com).
    """
    domain = normalise_domain(website)
    if domain and domain not in SHARED_PLATFORM_DOMAINS:
        return domain
    mail = normalise_email(email)
    if mail:
        domain = mail.rsplit("@", 1)[1]
        if domain not in FREE_MAIL_DOMAINS and domain not in SHARED_PLATFORM_DOMAINS:
            return domain
    return ""
