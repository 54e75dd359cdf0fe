"""The Alembic chain, and the data migration that re-normalises suppressed addresses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic import command
from alembic.script import ScriptDirectory
from sqlmodel import select

from partnerflow import dbtools
from partnerflow.models import MessageStatus, Suppression, session_scope
from partnerflow.tasks.shared.mail import deliver
from partnerflow.tasks.shared.suppression import blocks, suppressed_among

EARLY = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
CONTEXT = {"name": "x", "partner_name": "x", "body": "x"}


def test_the_chain_has_exactly_one_head():
    assert len(ScriptDirectory.from_config(dbtools.alembic_config()).get_heads()) == 1


def _stored_before_the_merge(rows: list[tuple[str, str, datetime]]) -> None:
    """Store rows as the old lowercase-only rule wrote them, under the schema before 0002."""
    config = dbtools.alembic_config()
    command.downgrade(config, "0001")
    try:
        with session_scope() as session:
            session.add_all([Suppression(email=email, reason=reason, source="old", at=at)
                             for email, reason, at in rows])
    finally:
        command.upgrade(config, "head")


def test_unicode_domain_suppressed_before_the_merge_still_blocks_mail(outbox):
    _stored_before_the_merge([
        ("jane@bücher.de", "unsubscribe", EARLY),
        ("  Joe@Example.COM ", "bounce", EARLY),
    ])
    with session_scope() as session:
        assert sorted(session.exec(select(Suppression.email)).all()) == ["jane@xn--bcher-kva.de",
                                                                         "joe@example.com"]
        assert blocks(session, "Jane@Bücher.DE", "outreach") == "unsubscribe"
        assert suppressed_among(session, ["JANE@xn--bcher-kva.de"]) == {"jane@xn--bcher-kva.de"}
    nudge = deliver("nudge:jane", kind="activation_nudge", to_email="Jane@BÜCHER.de",
                    template="shared/test_notice", context=CONTEXT)
    assert nudge.status == MessageStatus.FAILED and "suppressed" in nudge.error
    notice = deliver("notice:joe", kind="notice", to_email="joe@example.com",
                     template="shared/test_notice", context=CONTEXT)
    assert notice.status == MessageStatus.FAILED and "bounce" in notice.error
    assert not outbox.exists() or list(outbox.glob("*.eml")) == []


def test_two_spellings_of_one_address_become_the_earliest_row_and_keep_a_bounce():
    _stored_before_the_merge([
        ("ana@xn--caf-dma.fr", "unsubscribe", EARLY + timedelta(days=3)),
        ("ana@café.fr", "unsubscribe", EARLY),
        ("ana@CAFÉ.fr", "bounce", EARLY + timedelta(days=9)),
        ("solo@example.com", "manual", EARLY),
    ])
    with session_scope() as session:
        rows = session.exec(select(Suppression).order_by(Suppression.email)).all()
        assert [(r.email, r.reason, r.at) for r in rows] == [
            ("ana@xn--caf-dma.fr", "bounce", EARLY),
            ("solo@example.com", "manual", EARLY),
        ]
