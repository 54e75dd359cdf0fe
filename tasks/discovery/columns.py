"""The columns of a prospects file: which header feeds which field, and one row as a Candidate.

Headers are matched loosely (aliases, words they contain, small typos). A row is validated into
a Candidate; a bad value is the row's error, an odd optional value a warning.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rapidfuzz import fuzz, process

from partnerflow.tasks.shared.identity import dedup_domain, normalise_domain, normalise_email

# Header aliases, compared after lowercasing and dropping everything but letters and digits.
FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "email": ("email", "emailaddress", "mail", "contactemail", "primaryemail", "workemail", "emails",
              "courriel", "correo"),
    "website": ("website", "websiteurl", "url", "site", "web", "homepage", "homepageurl", "domain",
                "blog", "blogurl", "siteurl", "weburl", "link", "websitelink", "webseite"),
    "name": ("name", "fullname", "contactname", "contact", "person", "partnername", "creator",
             "creatorname", "influencer", "publishername"),
    "first_name": ("firstname", "givenname", "first", "vorname", "prenom"),
    "last_name": ("lastname", "surname", "familyname", "last", "nachname", "nom"),
    "company": ("company", "companyname", "organisation", "organization", "org", "business", "brand",
                "publisher", "account", "accountname", "firma"),
    "country": ("country", "countrycode", "nation", "land", "pays"),
    "timezone": ("timezone", "tz", "tzname"),
    "topics": ("topics", "topic", "tags", "tag", "categories", "category", "niche", "niches", "keywords",
               "interests", "vertical", "verticals"),
    "audience_size": ("audience", "audiencesize", "followers", "followercount", "subscribers",
                      "monthlyvisitors", "visitors", "traffic", "monthlytraffic", "reach", "pageviews",
                      "monthlypageviews"),
}
# When no alias matches exactly, a header containing one of these words maps to the field.
_CONTAINS = (
    ("email", ("email", "mail")),
    ("website", ("website", "url", "site", "homepage")),
    ("audience_size", ("follower", "subscriber", "visitor", "audience", "traffic")),
    ("company", ("company", "organi")),
    ("first_name", ("firstname",)),
    ("last_name", ("lastname",)),
    ("topics", ("topic", "tag", "categor", "niche")),
    ("name", ("name",)),
)
_ALIAS_TO_FIELD = {alias: name for name, aliases in FIELD_ALIASES.items() for alias in aliases}


@dataclass
class Candidate:
    line: int
    email: str | None = None
    name: str = ""
    company: str = ""
    website: str = ""
    country: str = ""
    timezone: str | None = None
    topics: list[str] = field(default_factory=list)
    audience_size: int | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def domain(self) -> str:
        return _dedup_domain(self.website, self.email)


# Read several times per row while a file is de-duplicated and matched (URL parsing and IDNA each time);
# a pure function of the two values, so the recent ones are remembered.
_dedup_domain = functools.lru_cache(maxsize=20_000)(dedup_domain)



def _key(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", header.lower())


def map_headers(headers: list[str]) -> dict[int, str]:
    """Column index -> field name for the headers we recognise; each field is fed by one column."""
    mapping: dict[int, str] = {}
    used: set[str] = set()
    keys = [_key(h) for h in headers]
    # Exact aliases first, so "Email" wins over a later "Secondary email".
    for index, key in enumerate(keys):
        name = _ALIAS_TO_FIELD.get(key)
        if name and name not in used:
            mapping[index], used = name, used | {name}
    for index, key in enumerate(keys):
        if index in mapping or not key:
            continue
        name = next((f for f, words in _CONTAINS if f not in used and any(w in key for w in words)), None)
        if name is None:
            # Typos such as "Webiste" or "Emial".
            best = process.extractOne(key, list(_ALIAS_TO_FIELD), scorer=fuzz.ratio, score_cutoff=80)
            if best and _ALIAS_TO_FIELD[best[0]] not in used and len(key) >= 4:
                name = _ALIAS_TO_FIELD[best[0]]
        if name:
            mapping[index], used = name, used | {name}
    return mapping



def parse_audience(value: str) -> int:
    """'12,500' / '12.5k' / '1.2M' / '12 500' -> int; ValueError otherwise."""
    text = value.strip().lower().replace("\u00a0", "").replace(" ", "").replace("_", "")
    multiplier = 1
    if text and text[-1] in "km":
        multiplier = 1000 if text[-1] == "k" else 1_000_000
        text = text[:-1]
    if multiplier == 1:
        text = text.replace(",", "").replace(".", "") if re.fullmatch(r"\d{1,3}([.,]\d{3})+", text) else text
    text = text.replace(",", ".")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(value) from None
    if number < 0 or not number.is_finite():
        raise ValueError(value)
    return int(number * multiplier)


def _split_topics(value: str) -> list[str]:
    return [t.strip().lower() for t in re.split(r"[;,|/]", value) if t.strip()]



def fill_candidate(c: Candidate, values: dict[str, str], warnings: list[dict[str, Any]]) -> str | None:
    """Validate one row into `c`; return the reason it is bad, or None."""
    raw_email, raw_site = values.get("email", ""), values.get("website", "")
    if not raw_email and not raw_site:
        return "no email and no website"
    if raw_email:
        c.email = normalise_email(raw_email)
        if c.email is None:
            return f"invalid email {raw_email!r}"
    if raw_site:
        if not normalise_domain(raw_site) or " " in raw_site.strip():
            return f"invalid website {raw_site!r}"
        c.website = raw_site if "://" in raw_site else "https://" + raw_site
    name = values.get("name", "")
    if not name:
        name = " ".join(p for p in (values.get("first_name", ""), values.get("last_name", "")) if p)
    c.name = name
    c.company = values.get("company", "")
    country = values.get("country", "")
    c.country = country.upper() if len(country) == 2 else country
    tz = values.get("timezone", "")
    if tz:
        try:
            ZoneInfo(tz)
            c.timezone = tz
        except (ZoneInfoNotFoundError, ValueError):
            warnings.append({"line": c.line, "reason": f"unknown timezone {tz!r} ignored"})
    c.topics = _split_topics(values.get("topics", ""))
    audience = values.get("audience_size", "")
    if audience:
        try:
            c.audience_size = parse_audience(audience)
        except ValueError:
            warnings.append({"line": c.line, "reason": f"audience {audience!r} is not a number; ignored"})
    return None

