"""Choosing a broadcast's audience: type, tier, country, stage and recent activity, minus program-news opt-outs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from factories import add_conversions, make_partner
from sqlmodel import select

from partnerflow.models import Partner, session_scope, utcnow
from partnerflow.models.news import Broadcast, BroadcastRecipient, BroadcastStatus
from partnerflow.tasks.news import broadcasts
from partnerflow.tasks.news.preferences import set_choice
from partnerflow.tasks.news.segments import SegmentError, parse_segment

OFFER = {"headline": "H", "details": "D"}


def _partner(n: int, **columns) -> int:
    pid = make_partner(n)
    with session_scope() as session:
        partner = session.get(Partner, pid)
        for name, value in columns.items():
            setattr(partner, name, value)
        session.add(partner)
    return pid


def _audience(key: str, segment: dict) -> list[int]:
    broadcast_id, _ = broadcasts.prepare(key, "new_offer", "Hi", OFFER, segment)
    with session_scope() as session:
        return sorted(session.exec(select(BroadcastRecipient.partner_id)
                                   .where(BroadcastRecipient.broadcast_id == broadcast_id)).all())


def test_type_stage_and_activity_filters_combine():
    now = utcnow()
    clicked = _partner(1, partner_type="affiliate", last_activity_at=now - timedelta(days=3))
    influencer = _partner(2, partner_type="influencer", last_activity_at=now - timedelta(days=3))
    converted = _partner(3, partner_type="affiliate", stage="dormant")
    add_conversions([{"partner_id": converted, "occurred_at": now - timedelta(days=10), "external_id": "recent"}])
    quiet = _partner(4, partner_type="affiliate", last_activity_at=now - timedelta(days=90))
    add_conversions([{"partner_id": quiet, "occurred_at": now - timedelta(days=60), "external_id": "old"}])
    applied = _partner(5, partner_type="affiliate", stage="applied", last_activity_at=now)

    assert _audience("all-active", {}) == [clicked, influencer, quiet]  # the default: active partners
    assert _audience("recent-affiliates", {"partner_types": ["affiliate"], "stages": ["active", "dormant"],
                                           "active_within_days": 30}) == [clicked, converted]
    assert _audience("any-stage", {"stages": [], "active_within_days": 1}) == [applied]


def test_opted_out_partners_are_never_in_the_audience_and_an_empty_one_asks_nobody():
    first, second = _partner(1), _partner(2)
    set_choice(first, "news", False, source="one-click")
    set_choice(second, "weekly", False, source="portal")  # the weekly email is a different list
    assert _audience("k", {}) == [second]
    set_choice(second, "news", False, source="portal")
    broadcast_id, status = broadcasts.prepare("nobody", "new_offer", "Hi", OFFER, {})
    assert status == BroadcastStatus.CANCELLED
    with session_scope() as session:
        row = session.get(Broadcast, broadcast_id)
        assert (row.audience_size, row.decided_by) == (0, "policy")
    set_choice(first, "news", True, source="portal")  # joining again puts them back in later broadcasts
    assert _audience("later", {}) == [first]


def test_the_same_key_finds_the_same_broadcast_and_keeps_its_audience():
    first = _partner(1)
    one = broadcasts.prepare("same", "new_offer", "Hi", OFFER, {})
    _partner(2)  # joins after the audience was fixed
    assert broadcasts.prepare("same", "new_offer", "Hi", OFFER, {}) == one
    assert broadcasts.pending_batches(one[0]) == [[first]]


@pytest.mark.parametrize(("segment", "message"), [
    ({"countries": ["DEU"]}, "countries is invalid: 'DEU' is not a two-letter ISO country code"),
    ({"tiers": ["gold; drop table"]}, "tiers is invalid: 'gold; drop table' is not a tier name"),
    ({"stages": ["archived"]}, "stages.0 is invalid"),
    ({"partner_types": ["spammer"]}, "partner_types.0 is invalid"),
    ({"active_within_days": -1}, "active_within_days is invalid"),
    ({"active_within_days": "soon"}, "active_within_days is invalid"),
    ({"country": ["DE"]}, "segment field country is invalid"),
])
def test_a_wrong_segment_is_one_sentence_naming_the_field(segment, message):
    with pytest.raises(SegmentError, match=message.replace("(", r"\(")):
        parse_segment(segment)


def test_codes_and_tiers_are_normalised():
    segment = parse_segment({"countries": [" de", "Us"], "tiers": ["Gold "]})
    assert (segment.countries, segment.tiers, segment.stages) == (["DE", "US"], ["gold"], ["active"])
