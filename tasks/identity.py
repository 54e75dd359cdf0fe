"""Normalised identities for de-duplication: one email or one domain, however it was written.

`normalise_email("  Jane.Doe@Example.COM ")` -> "jane.doe@example.com"
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
