"""Which partners a broadcast goes to: a segment by type, tier, country, stage and recent activity.

A segment arrives as a flow parameter typed in the Prefect UI, so every field is checked and a
mistake is one sentence naming the field. The audience is chosen in SQL (one INSERT ... SELECT),
never by looping over partners.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import ColumnElement, and_, exists, func, insert, literal, or_, select
from sqlmodel import Session

from partnerflow.models import Conversion, Partner
from partnerflow.models.news import BroadcastRecipient, NewsPreference

PartnerTypeName = Literal["affiliate", "influencer", "reseller", "referral"]
StageName = Literal["applied", "approved", "contracting", "active", "dormant", "suspended", "rejected"]
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_TIER = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


class SegmentError(ValueError):
    """A segment field is wrong; the message is one sentence naming it."""


class Segment(BaseModel):
    """Partners matching every filter given; an empty list means any."""

    model_config = ConfigDict(extra="forbid")

    partner_types: list[PartnerTypeName] = Field([], description="Any of these partner types (empty: all).")
    tiers: list[str] = Field([], description="Any of these tiers, e.g. standard, gold (empty: all).")
    countries: list[str] = Field([], description="ISO country codes, e.g. DE, US (empty: all).")
    stages: list[StageName] = Field(["active"], description="Lifecycle stages (default: active partners).")
    active_within_days: int = Field(0, ge=0, le=3650,
                                    description="Only partners with a click or conversion in the last N days "
                                                "(0: no activity filter).")

    @field_validator("countries", mode="before")
    @classmethod
    def _countries(cls, value):
        if not isinstance(value, list):
            return value
        for code in value:
            if not _COUNTRY.match(str(code).strip().upper()):
                raise ValueError(f"{str(code)[:40]!r} is not a two-letter ISO country code")
        return [str(code).strip().upper() for code in value]

    @field_validator("tiers", mode="before")
    @classmethod
    def _tiers(cls, value):
        if not isinstance(value, list):
            return value
        for tier in value:
            if not _TIER.match(str(tier).strip().lower()):
                raise ValueError(f"{str(tier)[:40]!r} is not a tier name (letters, digits, - and _)")
        return [str(tier).strip().lower() for tier in value]

    def describe(self) -> list[tuple[str, str]]:
        """(filter, value) pairs a person reads in the approval form and the report."""
        rows = [("stages", ", ".join(self.stages) or "any"), ("partner types", ", ".join(self.partner_types) or "any"),
                ("tiers", ", ".join(self.tiers) or "any"), ("countries", ", ".join(self.countries) or "any")]
        days = self.active_within_days
        activity = f"click or conversion in the last {days} days" if days else "any"
        return [*rows, ("activity", activity)]


ACTIVE_PARTNERS = Segment()  # the default: every active partner (never changed: parse_segment copies)


def parse_segment(value: Segment | dict | None) -> Segment:
    """The segment from a flow parameter; SegmentError naming the first wrong field."""
    if isinstance(value, Segment):
        return value.model_copy(deep=True)
    try:
        return Segment.model_validate(value or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "segment"
        message = str(first.get("msg", "")).removeprefix("Value error, ")
        raise SegmentError(f"segment field {where} is invalid: {message}.") from None


def matches(segment: Segment, now: datetime) -> ColumnElement[bool]:
    """The segment as a WHERE clause over `partner`."""
    clauses: list[ColumnElement[bool]] = []
    for column, wanted in ((Partner.partner_type, segment.partner_types), (Partner.tier, segment.tiers),
                           (Partner.country, segment.countries), (Partner.stage, segment.stages)):
        if wanted:
            clauses.append(column.in_(list(wanted)))
    if segment.active_within_days:
        since = now - timedelta(days=segment.active_within_days)
        converted = exists().where(Conversion.partner_id == Partner.id, Conversion.occurred_at >= since)
        clauses.append(or_(Partner.last_activity_at >= since, converted))
    return and_(literal(True), *clauses)


def _opted_out() -> ColumnElement[bool]:
    return exists().where(NewsPreference.partner_id == Partner.id, NewsPreference.news_opted_out_at.is_not(None))


def fix_audience(session: Session, broadcast_id: int, segment: Segment, now: datetime) -> tuple[int, int]:
    """Write the broadcast's recipients: the segment minus partners who left program news.

    Returns (audience size, partners of the segment who opted out).
    """
    chosen = select(literal(broadcast_id), Partner.id).where(matches(segment, now), ~_opted_out())
    session.execute(insert(BroadcastRecipient).from_select(["broadcast_id", "partner_id"], chosen))
    size = session.scalar(select(func.count()).select_from(BroadcastRecipient)
                          .where(BroadcastRecipient.broadcast_id == broadcast_id))
    opted_out = session.scalar(select(func.count()).select_from(Partner).where(matches(segment, now), _opted_out()))
    return size or 0, opted_out or 0
