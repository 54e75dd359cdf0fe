"""Reading a sanctions list in OFAC's SDN CSV format.

The list
    SDN.CSV has no header; columns: ent_num, SDN_Name, SDN_Type, Program, Title, Call_Sign,
    Vess_type, Tonnage, GRT, Vess_flag, Vess_owner, Remarks. "-0-" means empty. Individuals are
    written "LASTNAME, Firstname". Aliases come from the optional ALT.CSV (ent_num, alt_num,
    alt_type, alt_name, alt_remarks) and from "a.k.a. 'NAME'" in the remarks; countries from the
    optional ADD.CSV (ent_num, add_num, address, city, country, remarks) and from "nationality X" /
    "citizen X" in the remarks. Vessels and aircraft are not screened (partners are people or firms).
    `load_sanctions_list(source)` reads a path or an http(s) URL; the list carries the sha256
    checksum of its bytes and its date (the server's Last-Modified, or the file's mtime).
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx

from partnerflow.settings import get_settings
from partnerflow.tasks.compliance.sanctions_match import SdnEntry, SdnList, normalize_country

SKIPPED_TYPES = {"vessel", "aircraft"}
_AKA = re.compile(r"a\.k\.a\.?\s*'([^']+)'", re.I)
_NATIONALITY = re.compile(r"(?:nationality|citizen)\s+([A-Za-z][A-Za-z .,'-]+?)(?:;|\.|$)", re.I)


class SanctionsListError(Exception):
    """The sanctions list could not be read; the message names the source and the reason."""


def _empty(value: str | None) -> str:
    value = (value or "").strip()
    return "" if value == "-0-" else value


def _decode(data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")  # OFAC's files are Windows-1252
    return text.replace("\x1a", "")  # the DOS end-of-file mark OFAC appends


def _rows(data: bytes) -> list[list[str]]:
    return [row for row in csv.reader(io.StringIO(_decode(data))) if row and any(c.strip() for c in row)]


def parse_sdn(data: bytes, alt: bytes | None = None, add: bytes | None = None) -> list[SdnEntry]:
    """Parse SDN.CSV bytes (plus optional ALT.CSV and ADD.CSV). Raises SanctionsListError on a non-SDN file."""
    entries: dict[int, SdnEntry] = {}
    bad = 0
    for row in _rows(data):
        try:
            ent_num = int(row[0].strip())
            name = _empty(row[1])
        except (ValueError, IndexError):
            bad += 1
            continue
        row = row + [""] * (12 - len(row))
        sdn_type = _empty(row[2]).lower()
        if not name or sdn_type in SKIPPED_TYPES:
            continue
        remarks = _empty(row[11])
        entry = SdnEntry(ent_num=ent_num, name=name, sdn_type=sdn_type or "entity", program=_empty(row[3]),
                         title=_empty(row[4]), remarks=remarks)
        entry.aliases = [a.strip() for a in _AKA.findall(remarks) if a.strip()]
        entry.countries = sorted({c for c in (normalize_country(m) for m in _NATIONALITY.findall(remarks)) if c})
        entries[ent_num] = entry
    if not entries and bad:
        raise SanctionsListError("the file is not in SDN CSV format (no row starts with a numeric ent_num)")
    for entry, row in _extra_rows(entries, alt):
        alias = _empty(row[3]) if len(row) > 3 else ""
        if alias and alias not in entry.aliases:
            entry.aliases.append(alias)
    for entry, row in _extra_rows(entries, add):
        country = normalize_country(row[4]) if len(row) > 4 else ""
        if country and country not in entry.countries:
            entry.countries = sorted({*entry.countries, country})
    return list(entries.values())


def _extra_rows(entries: dict[int, SdnEntry], data: bytes | None):
    """(entry, row) for each row of an ALT.CSV or ADD.CSV whose ent_num is a listed entry."""
    for row in _rows(data or b""):
        try:
            entry = entries.get(int(row[0].strip()))
        except (ValueError, IndexError):
            continue
        if entry is not None:
            yield entry, row


def _read(source: str, timeout: float = 60.0) -> tuple[bytes, str | None]:
    """(bytes, date) of a path or URL."""
    if source.startswith(("http://", "https://")):
        try:
            response = httpx.get(source, timeout=timeout, follow_redirects=True)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise SanctionsListError(f"cannot download the sanctions list {source}: {exc}") from None
        date = None
        if response.headers.get("last-modified"):
            try:
                date = parsedate_to_datetime(response.headers["last-modified"]).date().isoformat()
            except (TypeError, ValueError):
                date = None
        return response.content, date
    path = Path(source).expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SanctionsListError(f"cannot read the sanctions list {source}: {exc.strerror or exc}") from None
    return data, datetime.fromtimestamp(path.stat().st_mtime, UTC).date().isoformat()


_cache: dict[str, SdnList] = {}


def load_sanctions_list(source: str | None = None, *, alt: str | None = None, add: str | None = None) -> SdnList:
    """Load the list from `source` (default: PARTNERFLOW_SANCTIONS_LIST), cached by checksum."""
    if source is None:
        settings = get_settings().compliance
        source = settings.sanctions_list
        alt = alt or settings.sanctions_alt_list
        add = add or settings.sanctions_address_list
    if not source:
        raise SanctionsListError("no sanctions list configured: set PARTNERFLOW_SANCTIONS_LIST to a path or URL")
    data, date = _read(source)
    alt_data = _read(alt)[0] if alt else None
    add_data = _read(add)[0] if add else None
    digest = hashlib.sha256(data)
    for extra in (alt_data, add_data):
        if extra:
            digest.update(b"\0" + extra)
    checksum = digest.hexdigest()
    list_date = date or datetime.now(UTC).date().isoformat()
    cache_key = f"{checksum}|{list_date}|{source}"
    if cache_key in _cache:
        return _cache[cache_key]
    sdn = SdnList(parse_sdn(data, alt_data, add_data), checksum=checksum, list_date=list_date, source=source)
    _cache.clear()  # keep only the newest list in memory
    _cache[cache_key] = sdn
    return sdn
