"""What a candidate's own page tells us: contacts, social profiles, title, language, affiliate signals.

`extract(html, base_url)` is a pure function over the page text (lxml's forgiving HTML parser),
so hostile markup gives partial results, never an exception.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import lxml.html
from lxml import etree

from partnerflow.tasks.shared.identity import normalise_domain, normalise_email

SOCIAL_HOSTS = {
    "twitter.com": "twitter", "x.com": "twitter", "instagram.com": "instagram", "youtube.com": "youtube",
    "youtu.be": "youtube", "tiktok.com": "tiktok", "linkedin.com": "linkedin", "facebook.com": "facebook",
    "pinterest.com": "pinterest", "twitch.tv": "twitch", "github.com": "github", "threads.net": "threads",
    "bsky.app": "bluesky", "medium.com": "medium", "substack.com": "substack",
}
# Links that share the current page rather than point at the owner's profile.
_SHARE_PATHS = ("/intent", "/share", "/sharer", "/sharing", "/shareArticle", "/pin/create", "/hashtag",
                "/search", "/home")

# Affiliate networks and shorteners whose presence in a link means the site already does affiliate deals.
AFFILIATE_HOSTS = (
    "amzn.to", "shareasale.com", "awin1.com", "awin.com", "sjv.io", "impact.com", "pxf.io", "partnerstack.com",
    "rstyle.me", "go.skimresources.com", "click.linksynergy.com", "linksynergy.com", "anrdoezrs.net",
    "jdoqocy.com", "tkqlhce.com", "dpbolvw.net", "kqzyfj.com", "pntra.com", "hop.clickbank.net",
    "avantlink.com", "refersion.com", "prf.hn", "tradedoubler.com", "webgains.com", "shopstyle.it",
    "howl.me", "geni.us", "fmtc.co", "financeads.net", "partnerize.com",
)
_AFFILIATE_PARAMS = {"tag", "aff", "affid", "aff_id", "affiliate", "affiliate_id", "ref", "ref_id", "via",
                     "irclickid", "clickref", "fpr", "partner", "partner_id"}
_AFFILIATE_PATH = re.compile(r"/(go|recommends|out|refer|aff|affiliate)/[\w\-]+", re.I)
DISCLOSURE_PATTERNS = [re.compile(p, re.I) for p in (
    r"affiliate links?", r"affiliate commissions?", r"(may|might|will) (earn|receive) (a )?(small )?commission",
    r"earn from qualifying purchases", r"as an amazon associate", r"(contains?|includes?) affiliate",
    r"paid partnerships?", r"sponsored (post|content|by)", r"(^|\s)#ad(\s|$)", r"affiliate disclosure",
    r"affiliate[- ]links?", r"werbung|anzeige", r"liens? affili[ée]s?", r"enlaces? de afiliad[oa]s?",
)]
_CONTACT_WORDS = ("contact", "kontakt", "contacto", "contatti", "contato", "impressum", "get in touch",
                  "write to us", "work with me", "work with us", "advertise", "partnerships", "collaborate")
_EMAIL_TEXT = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,24}")
_OBFUSCATED = re.compile(
    r"([A-Za-z0-9._%+\-]+)\s*[\[\(\{]\s*at\s*[\]\)\}]\s*([A-Za-z0-9\-]+(?:\s*[\[\(\{]\s*dot\s*[\]\)\}]\s*"
    r"[A-Za-z0-9\-]+)+)", re.I)
_LOCAL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-")  # as _EMAIL_TEXT
_AT_IN_BRACKETS = re.compile(r"[\[\(\{]\s*at\s*[\]\)\}]", re.I)  # what every _OBFUSCATED match holds
_NOT_EMAIL_TLDS = {"png", "jpg", "jpeg", "gif", "webp", "svg", "css", "js", "avif", "ico"}
# A few very common words per language: a fallback when the page does not declare its language.
_STOPWORDS = {
    "en": {"the", "and", "with", "for", "this", "that", "you", "are", "our", "from"},
    "de": {"und", "der", "die", "das", "mit", "für", "nicht", "ist", "wir", "sie"},
    "fr": {"le", "la", "les", "et", "des", "pour", "avec", "est", "nous", "une"},
    "es": {"el", "la", "los", "las", "y", "para", "con", "es", "una", "por"},
    "it": {"il", "di", "che", "per", "con", "una", "sono", "gli", "della", "non"},
    "nl": {"de", "het", "een", "en", "van", "voor", "met", "niet", "wij", "zijn"},
    "pt": {"o", "os", "as", "e", "para", "com", "uma", "não", "do", "da"},
}
TEXT_KEEP = 5000  # characters of visible text kept for re-scoring without a re-fetch


def _plain_emails(text: str) -> list[str]:
    """`_EMAIL_TEXT.findall(text)`, looking only around each "@": the regex alone tries every position
    of the page, and pages are long and have few addresses."""
    found, end = [], 0
    at = text.find("@")
    while at >= 0:
        start = at
        while start > end and text[start - 1] in _LOCAL_CHARS:
            start -= 1
        match = _EMAIL_TEXT.match(text, start) if start < at else None
        if match:
            found.append(match.group(0))
            end = match.end()
            at = text.find("@", end)
        else:
            at = text.find("@", at + 1)
    return found


def _emails_in(text: str) -> list[str]:
    found = []
    for raw in _plain_emails(text):
        if raw.rsplit(".", 1)[-1].lower() in _NOT_EMAIL_TLDS:
            continue  # logo@2x.png and friends
        if (email := normalise_email(raw)):
            found.append(email)
    obfuscated = _OBFUSCATED.findall(text) if _AT_IN_BRACKETS.search(text) else []  # cheap test first
    for local, domain in obfuscated:
        domain = re.sub(r"\s*[\[\(\{]\s*dot\s*[\]\)\}]\s*", ".", domain, flags=re.I)
        if (email := normalise_email(f"{local}@{domain}")):
            found.append(email)
    return found


def _social(url: str) -> tuple[str, str] | None:
    parts = urlsplit(url)
    host = normalise_domain(url)
    host = host[2:] if host.startswith("m.") else host
    platform = SOCIAL_HOSTS.get(host) or (SOCIAL_HOSTS.get(host.split(".", 1)[-1]) if host.endswith(
        ("substack.com", "medium.com")) else None)
    if not platform:
        return None
    path = parts.path.rstrip("/")
    if not path and not host.endswith(("substack.com",)) and platform != "medium":
        return None  # the platform's home page, not a profile
    if any(path.lower().startswith(p.lower()) for p in _SHARE_PATHS) or "share" in parts.query.lower():
        return None
    return platform, f"https://{host}{path}"


def _affiliate(url: str, own_domain: str) -> str | None:
    """Why this link looks like an affiliate link, or None."""
    parts = urlsplit(url)
    host = normalise_domain(url)
    if not host:
        return None
    for network in AFFILIATE_HOSTS:
        if host == network or host.endswith("." + network):
            return network
    if host == own_domain:
        if _AFFILIATE_PATH.search(parts.path):
            return "redirect path " + _AFFILIATE_PATH.search(parts.path).group(0)
        return None
    params = {k.lower() for k in parse_qs(parts.query)}
    hit = params & _AFFILIATE_PARAMS
    if "amazon." in host and "tag" in params:
        return "amazon associates tag"
    if hit:
        return f"{host} ?{sorted(hit)[0]}="
    if "utm_medium" in params and any("affiliate" in v.lower() for v in parse_qs(parts.query).get("utm_medium", [])):
        return f"{host} utm_medium=affiliate"
    return None


def guess_language(text: str) -> str | None:
    words = re.findall(r"[a-zàâäéèêëïîôöùûüçñßãõ]+", text.lower()[:20000])
    if len(words) < 20:
        return None
    scores = {lang: sum(1 for w in words if w in stop) for lang, stop in _STOPWORDS.items()}
    lang, best = max(scores.items(), key=lambda kv: kv[1])
    return lang if best >= 3 and best / len(words) > 0.03 else None


def extract(html: str, base_url: str) -> dict[str, Any]:
    """Signals from one page; every key is always present."""
    info: dict[str, Any] = {
        "title": "", "description": "", "language": None, "emails": [], "contact_links": [],
        "social": {}, "affiliate_links": [], "has_affiliate_links": False, "has_disclosure": False,
        "disclosure_text": None, "text": "",
    }
    if not html or not html.strip():
        return info
    try:
        doc = lxml.html.document_fromstring(html.encode("utf-8", "replace"),
                                            parser=lxml.html.HTMLParser(encoding="utf-8", recover=True))
    except (etree.ParserError, ValueError):
        return info
    for bad in doc.xpath("//script|//style|//noscript|//template"):
        bad.drop_tree()
    own = normalise_domain(base_url)

    title = doc.findtext(".//title") or ""
    info["title"] = " ".join(title.split())[:300]
    for meta in doc.xpath("//meta[@name or @property or @http-equiv]"):
        key = (meta.get("name") or meta.get("property") or meta.get("http-equiv") or "").lower()
        content = " ".join((meta.get("content") or "").split())
        if key in ("description", "og:description") and content and not info["description"]:
            info["description"] = content[:500]
        elif key == "og:title" and content and not info["title"]:
            info["title"] = content[:300]
        elif key in ("content-language", "og:locale", "language") and content and not info["language"]:
            info["language"] = content
    html_lang = doc.get("lang") or doc.get("{http://www.w3.org/XML/1998/namespace}lang")
    if html_lang:
        info["language"] = html_lang
    text = " ".join(doc.text_content().split())
    if info["language"]:
        info["language"] = re.split(r"[-_,;\s]", info["language"].strip().lower())[0] or None
    else:
        info["language"] = guess_language(text)

    emails: list[str] = []
    contacts: list[str] = []
    affiliate: list[str] = []
    for anchor in doc.xpath("//a[@href]"):
        href = (anchor.get("href") or "").strip()
        if href.lower().startswith("mailto:"):
            if (email := normalise_email(href)):
                emails.append(email)
            continue
        if href.startswith(("javascript:", "tel:", "#")):
            continue
        url = urljoin(base_url, href)
        if not url.startswith(("http://", "https://")):
            continue
        label = " ".join(anchor.text_content().split()).lower()
        if normalise_domain(url) == own and any(w in label or w in urlsplit(url).path.lower()
                                               for w in _CONTACT_WORDS):
            contacts.append(url.split("#", 1)[0])
        if (social := _social(url)):
            info["social"].setdefault(social[0], social[1])
        if (why := _affiliate(url, own)):
            affiliate.append(why)
    emails += _emails_in(text)
    info["emails"] = list(dict.fromkeys(emails))[:20]
    info["contact_links"] = list(dict.fromkeys(contacts))[:10]
    info["affiliate_links"] = list(dict.fromkeys(affiliate))[:20]
    info["has_affiliate_links"] = bool(affiliate)
    for pattern in DISCLOSURE_PATTERNS:
        match = pattern.search(text)
        if match:
            start = max(0, match.start() - 60)
            info["has_disclosure"] = True
            info["disclosure_text"] = text[start:match.end() + 60].strip()
            break
    info["text"] = text[:TEXT_KEEP]
    return info
