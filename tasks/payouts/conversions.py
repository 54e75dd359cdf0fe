"""Conversion intake: the JSON endpoint and the CSV import share `ingest()`.

- Unique by (source, external_id): re-sending a conversion changes nothing (counted as duplicate).
- Attributed by click id, else tracking code, else coupon code, within the attribution window
  (tasks/payouts/attribution.py); a conversion with no partner is kept and reported.
- The customer's email (`customer_email`) is stored only as keyed hashes, for the self-referral check.
- Refunds, chargebacks and reversals name the earlier conversion (`reverses`, its external id in
  the same source).
- Amounts are decimal strings in major units ("12.34") or integer `amount_minor`; never floats, NaN,
  Infinity or exponents, never negative, at most MAX_AMOUNT_MINOR. Dates from 2000 to a day ahead of now.
- Bad records are reported by line (CSV) or index (JSON); good ones are kept.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from partnerflow.models import Conversion, session_scope, utcnow
from partnerflow.models.payouts import ConversionKind, ConversionSource
from partnerflow.secrets import new_token, token_hash, token_hashes
from partnerflow.tasks.payouts.attribution import CLOCK_SKEW, Attributor
from partnerflow.tasks.shared.customers import customer_hashes
from partnerflow.tasks.shared.money import check_currency, to_minor

KINDS = tuple(ConversionKind)
REVERSALS = (ConversionKind.REFUND, ConversionKind.CHARGEBACK, ConversionKind.REVERSAL)
COLUMNS = ("external_id", "kind", "amount", "amount_minor", "currency", "occurred_at", "tracking_code",
           "coupon_code", "customer_ref", "product", "category", "reverses", "click_id", "clicked_at", "customer_email")
CHUNK = 1000
_THOUSANDS = re.compile(r"\d{1,3}(,\d{3})+(\.\d+)?", re.ASCII)
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)", re.ASCII)
_INTEGER = re.compile(r"[+-]?\d+", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CLICK_ID = re.compile(r"[A-Za-z0-9_-]{8,64}", re.ASCII)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# Bounds no real conversion comes near: ten billion dollars in cents, sums stay far inside a 64-bit column.
MAX_AMOUNT_MINOR = 10**12
MAX_TEXT = 500
MAX_AHEAD = timedelta(days=1)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)


class ConversionError(ValueError):
    """One record is not acceptable; the message says why."""


@dataclass
class IngestReport:
    created: int = 0
    duplicates: int = 0
    unattributed: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)  # {"line": n, "error": "..."}
    unattributed_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"created": self.created, "duplicates": self.duplicates, "unattributed": self.unattributed,
                "unattributed_external_ids": self.unattributed_ids[:100], "errors": self.errors}


# --- sources and their API keys -----------------------------------------------------------------

def add_source(name: str) -> str:
    """Register a conversion source; returns its API key (shown once, only its hash is stored)."""
    name = name.strip()
    if not name:
        raise ValueError("a source needs a name")
    key = "pfk_" + new_token(24)
    with session_scope() as session:
        if session.execute(select(ConversionSource).where(ConversionSource.name == name)).scalars().first():
            raise ValueError(f"source {name!r} exists already")
        session.add(ConversionSource(name=name, api_key_hash=token_hash(key)))
    return key


def source_for_key(api_key: str | None) -> str | None:
    if not api_key:
        return None
    hashes = token_hashes(api_key.strip())
    with session_scope() as session:
        row = session.execute(select(ConversionSource).where(
            ConversionSource.api_key_hash.in_(hashes), ConversionSource.active.is_(True))
        ).scalars().first()
        if row is not None and row.api_key_hash != hashes[0]:
            row.api_key_hash = hashes[0]  # matched under an older key: keep working once that key is retired
        return row.name if row else None


# --- parsing ----------------------------------------------------------------------------------

def _text(value: Any, name: str = "value") -> str | None:
    if value is None:
        return None
    if isinstance(value, float):
        raise ConversionError("numbers with a decimal point must be sent as strings (\"12.34\"), not floats")
    if isinstance(value, dict | list):
        raise ConversionError(f"{name} must be text, not a JSON {type(value).__name__}")
    value = str(value).strip()
    if len(value) > MAX_TEXT:
        raise ConversionError(f"{name} is longer than {MAX_TEXT} characters")
    if _CONTROL.search(value):  # PostgreSQL refuses NUL in text; the rest only hides what a value says
        raise ConversionError(f"{name} contains control characters")
    return value or None


def _when(value: Any, name: str = "occurred_at") -> datetime:
    raw = _text(value, name)
    if not raw:
        raise ConversionError(f"{name} is required (ISO 8601, e.g. 2026-01-31T12:00:00Z)")
    try:
        at = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
        if at.tzinfo is None:  # a bare date or time without offset is taken as UTC
            at = at.replace(tzinfo=UTC)
        at = at.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ConversionError(f"{name} {raw!r} is not an ISO 8601 date-time") from None
    # A conversion from the future would sit in its lock period for ever; one from before the web would
    # overflow date arithmetic (lock periods, months). A day's leeway allows for the source's clock.
    if at > utcnow() + MAX_AHEAD:
        raise ConversionError(f"{name} {raw!r} is in the future")
    if at < EARLIEST:
        raise ConversionError(f"{name} {raw!r} is before {EARLIEST.year}")
    return at


def _amount_minor(record: dict[str, Any], kind: str, currency: str) -> int:
    """The amount in minor units from `amount` ("12.34", major units) or `amount_minor` (an integer)."""
    amount, amount_minor = record.get("amount"), record.get("amount_minor")
    if amount_minor not in (None, "") and amount not in (None, ""):
        raise ConversionError("give amount or amount_minor, not both")
    if amount_minor not in (None, ""):
        if isinstance(amount_minor, float | bool):
            raise ConversionError("amount_minor must be an integer")
        text = _text(amount_minor, "amount_minor") or ""
        if not _INTEGER.fullmatch(text):
            raise ConversionError(f"amount_minor {text[:40]!r} is not a whole number of minor units (e.g. 1234)")
        if len(text.lstrip("+-0")) > len(str(MAX_AMOUNT_MINOR)):  # never turn a thousand digits into an int
            raise ConversionError(f"amount_minor is larger than {MAX_AMOUNT_MINOR}")
        minor = int(text)
    elif amount not in (None, ""):
        if isinstance(amount, float):
            raise ConversionError("amount must be a string like \"12.34\", not a float")
        text = _text(amount, "amount") or ""
        # "12,50" would read as 1250: a comma is allowed only as a thousands separator ("1,234.50").
        if "," in text and not _THOUSANDS.fullmatch(text):
            raise ConversionError(f"amount {text!r} is ambiguous: use a dot for decimals (12.50)")
        plain = text.replace(",", "")
        # Plain decimals only: no NaN, Infinity or exponents ("1e30"), whose digits nobody wrote.
        if not _DECIMAL.fullmatch(plain):
            raise ConversionError(f"amount {text[:40]!r} is not a decimal number like 12.34")
        if len(plain.lstrip("+-0").split(".")[0]) > len(str(MAX_AMOUNT_MINOR)):
            raise ConversionError(f"amount {text[:40]!r} is too large")
        try:
            minor = to_minor(plain, currency)
        except ValueError as exc:
            raise ConversionError(f"amount: {exc}") from None
    elif kind in (ConversionKind.LEAD, ConversionKind.SIGNUP, *REVERSALS):
        minor = 0
    else:
        raise ConversionError(f"amount is required for a {kind}")
    if minor < 0:
        raise ConversionError("amount must not be negative (send a refund pointing at the sale instead)")
    if minor > MAX_AMOUNT_MINOR:
        raise ConversionError(f"amount is larger than {MAX_AMOUNT_MINOR} minor units of {currency}; "
                              "split it or check the source")
    return minor


def parse_record(record: dict[str, Any]) -> dict[str, Any]:
    """Validate one conversion; returns the values to store (reverses still an external id)."""
    unknown = set(record) - set(COLUMNS)
    if unknown:
        raise ConversionError(f"unknown field(s): {', '.join(sorted(str(k)[:40] for k in unknown))}")
    external_id = _text(record.get("external_id"), "external_id")
    if not external_id:
        raise ConversionError("external_id is required")
    if len(external_id) > 200:
        raise ConversionError("external_id is longer than 200 characters")
    kind = (_text(record.get("kind"), "kind") or ConversionKind.SALE).lower()
    if kind not in KINDS:
        raise ConversionError(f"kind {kind[:40]!r} is not one of {', '.join(KINDS)}")
    currency_text = _text(record.get("currency"), "currency") or ""
    try:
        if not currency_text.isascii():
            raise ValueError(f"not an ISO 4217 currency code: {currency_text[:40]!r}")
        currency = check_currency(currency_text)
    except ValueError as exc:
        raise ConversionError(str(exc)) from None
    minor = _amount_minor(record, kind, currency)
    reverses = _text(record.get("reverses"), "reverses")
    if kind in REVERSALS and not reverses:
        raise ConversionError(f"a {kind} must name the conversion it reverses (reverses=<external_id>)")
    if reverses and kind not in REVERSALS:
        raise ConversionError(f"only {', '.join(REVERSALS)} may reverse a conversion")
    occurred_at = _when(record.get("occurred_at"))
    return {
        "external_id": external_id, "kind": kind, "amount_minor": minor, "currency": currency,
        "occurred_at": occurred_at, **_click_and_customer(record, occurred_at),
        **{name: _text(record.get(name), name)
           for name in ("tracking_code", "coupon_code", "customer_ref", "product", "category")},
        "reverses": reverses,
    }


def _click_and_customer(record: dict[str, Any], occurred_at: datetime) -> dict[str, Any]:
    click_id = _text(record.get("click_id"), "click_id")
    if click_id and not _CLICK_ID.fullmatch(click_id):
        raise ConversionError("click_id must be the pf_click value from the landing URL (letters, digits, - and _)")
    clicked_at = _when(record["clicked_at"], "clicked_at") if record.get("clicked_at") not in (None, "") else None
    if clicked_at and clicked_at > occurred_at + CLOCK_SKEW:
        raise ConversionError("clicked_at is after occurred_at: a click comes before the conversion")
    email = _text(record.get("customer_email"), "customer_email")
    if email and not _EMAIL.fullmatch(email):
        raise ConversionError("customer_email is not an email address")
    email_hash, domain_hash = customer_hashes(email)
    return {"click_id": click_id, "clicked_at": clicked_at, "customer_email_hash": email_hash,
            "customer_domain_hash": domain_hash}


# --- storing ----------------------------------------------------------------------------------

def ingest(records: Iterable[tuple[int, dict[str, Any]]], source: str) -> IngestReport:
    """Store (line, record) pairs; each chunk in one transaction. Good records are kept, bad ones reported."""
    report = IngestReport()
    chunk: list[tuple[int, dict[str, Any]]] = []
    for line, record in records:
        try:
            if "__error__" in record:
                raise ConversionError(record["__error__"])
            chunk.append((line, parse_record(record)))
        except ConversionError as exc:
            report.errors.append({"line": line, "error": str(exc)})
        if len(chunk) >= CHUNK:
            _store(chunk, source, report)
            chunk = []
    if chunk:
        _store(chunk, source, report)
    return report


def _store(chunk: list[tuple[int, dict[str, Any]]], source: str, report: IngestReport) -> None:
    with session_scope() as session:
        ext_ids = {v["external_id"] for _, v in chunk} | {v["reverses"] for _, v in chunk if v["reverses"]}
        existing = dict(session.execute(select(Conversion.external_id, Conversion.id).where(
            Conversion.source == source, Conversion.external_id.in_(ext_ids))).all())
        attributor = Attributor(session, (v for _, v in chunk))
        seen: set[str] = set()
        now = utcnow()
        for line, v in chunk:
            ext = v["external_id"]
            if ext in existing or ext in seen:
                report.duplicates += 1
                continue
            reverses_id = None
            credit = attributor.credit(v)
            partner_id, attribution = credit.partner_id, credit.attribution
            if v["reverses"]:
                reverses_id = existing.get(v["reverses"])
                if reverses_id is None:
                    report.errors.append({"line": line, "error": f"reverses unknown conversion {v['reverses']!r} "
                                                                 f"of source {source!r}"})
                    continue
                original = session.get(Conversion, reverses_id)
                if original.kind in REVERSALS:  # reversing a refund would pay its deduction back as earnings
                    report.errors.append({"line": line, "error": f"a {v['kind']} must reverse what earned, not the "
                                                                 f"{original.kind} {v['reverses']!r}"})
                    continue
                if original.currency != v["currency"]:  # its deduction would be booked in the wrong currency
                    report.errors.append({"line": line, "error": f"a {v['kind']} must be in the currency of the "
                                          f"conversion it reverses ({original.currency}), not {v['currency']}"})
                    continue
                # a reversal belongs to whoever earned the original
                partner_id, attribution = original.partner_id, original.attribution
            row = {k: v[k] for k in ("external_id", "kind", "amount_minor", "currency", "occurred_at",
                                     "tracking_code", "coupon_code", "customer_ref", "product", "category",
                                     "click_id", "customer_email_hash", "customer_domain_hash")}
            row.update(source=source, partner_id=partner_id, reverses_id=reverses_id, created_at=now,
                       clicked_at=credit.clicked_at, attribution=attribution)
            # Insert one at a time within the chunk so a later reversal can point at an earlier sale.
            try:
                with session.begin_nested():
                    new_id = session.execute(insert(Conversion).values(**row).returning(Conversion.id)).scalar_one()
            except IntegrityError:  # another request stored it meanwhile
                report.duplicates += 1
                continue
            existing[ext] = new_id
            seen.add(ext)
            report.created += 1
            if partner_id is None:
                report.unattributed += 1
                report.unattributed_ids.append(ext)


def read_csv(text: str) -> Iterable[tuple[int, dict[str, Any]]]:
    """(line number, record) for each data row; the header names the columns (see COLUMNS)."""
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    if reader.fieldnames is None:
        return
    header = [(name or "").strip().lower() for name in reader.fieldnames]
    reader.fieldnames = header
    rows = iter(reader)
    while True:
        try:
            record = next(rows)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. a cell over the csv module's size limit: that row only is lost
            yield reader.line_num + 1, {"__error__": f"unreadable row: {exc}"}
            continue
        line = reader.line_num
        if None in record:  # more cells than the header has columns
            record.pop(None)
            yield line, {"__error__": "more cells than the header has columns"}
            continue
        cleaned = {k: v for k, v in record.items() if k and v not in (None, "")}
        if not cleaned:
            continue
        yield line, cleaned


def import_csv(path: str, source: str = "csv") -> IngestReport:
    from charset_normalizer import from_bytes

    data = open(path, "rb").read()
    best = from_bytes(data).best()
    text = str(best) if best is not None else data.decode("utf-8", errors="replace")
    return ingest(read_csv(text.lstrip("\ufeff")), source)
