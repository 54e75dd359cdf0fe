"""Broadcasts: the approval form shows the audience and a preview, send or cancel, opt-outs honoured,
RFC 8058 headers, exactly once on a re-run, and the report of sent, opened and clicked."""

from __future__ import annotations

from datetime import timedelta

import pytest
from factories import make_partner
from prefect.input import keyset_from_paused_state, read_flow_run_input
from prefect.states import Suspended
from sqlmodel import func, select
from support import WaitingForPerson, mail_text, mails, run_deployed

from partnerflow.flows.news import send_broadcast
from partnerflow.models import Message, MessageStatus, Partner, session_scope, utcnow
from partnerflow.models.news import Broadcast, BroadcastStatus
from partnerflow.providers.email import OutgoingEmail, SendOutcome
from partnerflow.providers.email.outbox import OutboxProvider
from partnerflow.providers.errors import RetryableError
from partnerflow.settings import get_settings
from partnerflow.tasks.news import broadcasts, reports
from partnerflow.tasks.news.preferences import read_token, set_choice
from partnerflow.tasks.shared.approvals import expire_overdue
from partnerflow.tasks.shared.mail import TemplateError
from partnerflow.web.outreach import apply_sendgrid_events

OFFER = {"headline": "Summer sale: 20% off annual plans", "details": "Runs for two weeks.\n# not a heading"}
SEND = {"decision": "send", "note": "", "approver": "Dana"}


def _partners(count: int, **columns) -> list[int]:
    ids = [make_partner(n) for n in range(1, count + 1)]
    if columns:
        with session_scope() as session:
            for pid in ids:
                partner = session.get(Partner, pid)
                for name, value in columns.items():
                    setattr(partner, name, value)
                session.add(partner)
    return ids


def _description(flow_run_id, broadcast_id: int) -> str:
    keys = keyset_from_paused_state(Suspended(pause_key=f"broadcast-{broadcast_id}-1"))
    return read_flow_run_input(keys["description"], flow_run_id=flow_run_id)


def _only_broadcast() -> Broadcast:
    with session_scope() as session:
        row = session.exec(select(Broadcast)).one()
        session.expunge(row)
        return row


def _messages(**where) -> list[Message]:
    with session_scope() as session:
        query = select(Message).order_by(Message.id)
        for column, value in where.items():
            query = query.where(getattr(Message, column) == value)
        rows = session.exec(query).all()
        session.expunge_all()
        return rows


def test_the_approval_form_shows_audience_and_an_escaped_preview_and_send_mails_each_partner_once(outbox, configure):
    configure(public_base_url="https://partners.acme.example")
    a, b, c = _partners(3)
    with session_scope() as session:  # a hostile name must stay text in the Markdown form
        partner = session.get(Partner, a)
        partner.contact_name = "Eve](http://evil.example) <img src=x>"
        session.add(partner)
    set_choice(c, "news", False, source="test")
    waiting = run_deployed(send_broadcast, {"template": "new_offer", "subject": "New: summer sale", "offer": OFFER})
    assert isinstance(waiting, WaitingForPerson)
    row = _only_broadcast()
    assert row.status == BroadcastStatus.AWAITING_APPROVAL and row.audience_size == 2
    text = _description(waiting.flow_run_id, row.id)
    assert "send to 2 partners?" in text and "1 more in the segment opted out" in text
    assert "Summer sale" in text and "Runs for two weeks" in text
    assert "\\# not a heading" in text  # a line of the mail cannot become a Markdown heading
    assert "Eve\\]\\(http\\://evil.example\\) \\<img src=x\\>" in text  # every special escaped
    assert not outbox.exists() or mails(outbox) == []  # nothing goes before the decision

    result = run_deployed(send_broadcast, flow_run_id=waiting.flow_run_id, answers=[SEND])
    assert result["status"] == "sent" and result["sent"] == 2 and result["audience"] == 2
    sent = mails(outbox)
    assert sorted(m["To"] for m in sent) == ["p1@example.com", "p2@example.com"]
    for message in sent:
        assert message["Subject"] == "New: summer sale"
        unsubscribe = str(message["List-Unsubscribe"]).strip()
        assert unsubscribe.startswith("<https://partners.acme.example/news/u/news-")
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert "Summer sale: 20% off annual plans" in mail_text(message)
        token = unsubscribe.strip("<>").rsplit("/", 1)[1]
        assert read_token(token)[1] in (a, b)
    assert _only_broadcast().decided_by == "Dana"

    # The deployment run again for the same broadcast (its key): nobody gets a second mail.
    again = run_deployed(send_broadcast, {"template": "new_offer", "subject": "New: summer sale", "offer": OFFER,
                                          "key": row.key})
    assert again["broadcast_id"] == row.id and again["sent"] == 2 and again["this_run"] == {}
    assert len(mails(outbox)) == 2 and len(_messages(kind="news_broadcast")) == 2


def test_a_cancelled_broadcast_sends_nothing(outbox):
    _partners(2)
    result = run_deployed(send_broadcast, {"template": "new_offer", "subject": "Hello", "offer": OFFER},
                          answers=[{"decision": "cancel", "note": "wrong week", "approver": "Dana"}])
    assert result["status"] == "cancelled" and result["sent"] == 0
    assert _messages() == [] and (not outbox.exists() or mails(outbox) == [])
    row = _only_broadcast()
    assert (row.decided_by, row.decision_note) == ("Dana", "wrong week")
    assert broadcasts.send_batch(row.id, [1, 2]) == {"not_approved": 2}  # a late batch cannot send it either


def test_nobody_answering_in_time_drops_the_broadcast_and_sends_nothing(outbox):
    _partners(1)
    waiting = run_deployed(send_broadcast, {"template": "new_offer", "subject": "Hi", "offer": OFFER})
    assert isinstance(waiting, WaitingForPerson)
    later = utcnow() + timedelta(seconds=get_settings().news.news_approval_timeout_seconds + 1)
    assert expire_overdue({"broadcast": broadcasts.expire}, now=later) == [f"broadcast-{_only_broadcast().id}"]
    row = _only_broadcast()
    assert (row.status, row.decided_by) == (BroadcastStatus.EXPIRED, "policy")
    assert broadcasts.record_decision(row.id, broadcasts.BroadcastDecision(**SEND)) == "expired"  # too late
    assert _messages() == [] and (not outbox.exists() or mails(outbox) == [])


def test_segment_and_opt_out_at_send_time(outbox):
    de_gold, de_std, us_gold = _partners(3)
    with session_scope() as session:
        for pid, country, tier in ((de_gold, "DE", "gold"), (de_std, "DE", "standard"), (us_gold, "US", "gold")):
            partner = session.get(Partner, pid)
            partner.country, partner.tier = country, tier
            session.add(partner)
    broadcast_id, _ = broadcasts.prepare("k1", "coupon", "A coupon", {"code": "SUMMER20", "discount": "20% off"},
                                         {"countries": ["de"], "tiers": ["GOLD", "standard"]})
    assert _only_broadcast().audience_size == 2
    broadcasts.record_decision(broadcast_id, broadcasts.BroadcastDecision(**SEND))
    set_choice(de_std, "news", False, source="portal")  # opted out after the approval
    result = broadcasts.send_batch(broadcast_id, [de_gold, de_std])
    assert result == {"sent": 1, "opted_out": 1}
    assert broadcasts.send_batch(broadcast_id, [de_gold, de_std]) == {"already_sent": 1}  # run again: nothing new
    assert [m["To"] for m in mails(outbox)] == ["p1@example.com"]
    assert "SUMMER20" in mail_text(mails(outbox)[0])
    assert broadcasts.finish(broadcast_id) == BroadcastStatus.SENT


def test_wrong_requests_are_refused_before_anything_is_recorded():
    _partners(1)
    with pytest.raises(TemplateError, match="choose one of: coupon, new_offer, policy_change"):
        broadcasts.prepare("k", "../../contracting", "Hi", {}, None)
    with pytest.raises(TemplateError, match="offer.headline|headline"):
        broadcasts.prepare("k", "new_offer", "Hi", {"details": "no headline"}, None)
    with pytest.raises(ValueError, match="countries.*'Germany' is not a two-letter ISO country code"):
        broadcasts.prepare("k", "new_offer", "Hi", OFFER, {"countries": ["Germany"]})
    with pytest.raises(ValueError, match="segment field colour"):
        broadcasts.prepare("k", "new_offer", "Hi", OFFER, {"colour": "red"})
    with session_scope() as session:
        assert session.exec(select(func.count()).select_from(Broadcast)).one() == 0


class _Refusing(OutboxProvider):
    """The outbox, but the provider refuses (429) every batch after the first `accepts` mails."""

    def __init__(self, accepts: int):
        super().__init__(get_settings().mail)
        self.accepts = accepts

    def send_batch(self, emails: list[OutgoingEmail]) -> list[SendOutcome]:
        if self.accepts <= 0:
            raise RetryableError("429 too many requests")
        self.accepts -= len(emails)
        return super().send_batch(emails)


def test_a_refusing_provider_leaves_the_rest_for_a_rerun_and_nobody_gets_two(outbox, configure):
    configure(news_batch_size=2)
    ids = _partners(4)
    broadcast_id, _ = broadcasts.prepare("k2", "new_offer", "Hi", OFFER, None)
    broadcasts.record_decision(broadcast_id, broadcasts.BroadcastDecision(**SEND))
    first, second = broadcasts.pending_batches(broadcast_id)
    assert first == ids[:2] and second == ids[2:]
    assert broadcasts.send_batch(broadcast_id, first, provider=_Refusing(2))["sent"] == 2
    refused = broadcasts.send_batch(broadcast_id, second, provider=_Refusing(0))
    assert refused["provider_error"] == "429 too many requests" and refused["retry_later"] == 2
    assert broadcasts.finish(broadcast_id) == BroadcastStatus.APPROVED
    assert "2 mails are still to send" in reports.report_markdown(reports.broadcast_figures(broadcast_id))
    assert broadcasts.pending_batches(broadcast_id) == [second]
    assert broadcasts.send_batch(broadcast_id, second)["sent"] == 2
    assert broadcasts.finish(broadcast_id) == BroadcastStatus.SENT
    assert sorted(m["To"] for m in mails(outbox)) == [f"p{n}@example.com" for n in range(1, 5)]


def test_opens_and_clicks_reported_by_the_provider_are_counted_per_broadcast(outbox):
    _partners(3)
    broadcast_id, _ = broadcasts.prepare("k3", "policy_change", "Terms update",
                                         {"summary": "Payouts move to the 5th.", "effective_on": "1 March"}, None)
    broadcasts.record_decision(broadcast_id, broadcasts.BroadcastDecision(**SEND))
    broadcasts.send_batch(broadcast_id, broadcasts.pending_batches(broadcast_id)[0])
    first, second, _ = _messages(kind="news_broadcast")
    events = [{"sg_event_id": "e1", "event": "open", "pf_message_id": str(first.id)},
              {"sg_event_id": "e2", "event": "open", "pf_message_id": str(second.id)},
              {"sg_event_id": "e3", "event": "click", "pf_message_id": str(second.id)}]
    apply_sendgrid_events([{**e, "email": "x@example.com", "timestamp": int(utcnow().timestamp())} for e in events])
    figures = reports.broadcast_figures(broadcast_id)
    assert {k: figures[k] for k in ("audience", "sent", "opened", "clicked", "failed")} == {
        "audience": 3, "sent": 3, "opened": 2, "clicked": 1, "failed": 0}
    assert "| 3 | 3 | 2 (66%) | 1 (33%) |" in reports.report_markdown(figures)


def test_a_hard_bounced_address_is_not_mailed(outbox):
    from partnerflow.tasks.shared.suppression import suppress  # the recruitment list's bounce applies to all mail

    a, b = _partners(2)
    with session_scope() as session:
        suppress(session, "p2@example.com", "bounce", source="test")
        suppress(session, "p1@example.com", "unsubscribe", source="test")  # recruitment only: news still goes
    broadcast_id, _ = broadcasts.prepare("k4", "new_offer", "Hi", OFFER, None)
    broadcasts.record_decision(broadcast_id, broadcasts.BroadcastDecision(**SEND))
    assert broadcasts.send_batch(broadcast_id, [a, b]) == {"sent": 1, "suppressed": 1}
    assert [m["To"] for m in mails(outbox)] == ["p1@example.com"]
    assert _messages(partner_id=b)[0].status == MessageStatus.FAILED


class _Recording(OutboxProvider):
    """A provider that cannot tell a repeat from a new mail (like SendGrid or SMTP): remembers what it got."""

    idempotent = False

    def __init__(self):
        super().__init__(get_settings().mail)
        self.got: list[str] = []

    def send_batch(self, emails: list[OutgoingEmail]) -> list[SendOutcome]:
        self.got += [e.to for e in emails]
        return super().send_batch(emails)


def test_a_mail_whose_send_was_cut_off_is_never_sent_blindly_again(outbox):
    a, b = _partners(2)
    broadcast_id, _ = broadcasts.prepare("k5", "new_offer", "Hi", OFFER, None)
    broadcasts.record_decision(broadcast_id, broadcasts.BroadcastDecision(**SEND))
    provider = _Recording()
    assert broadcasts.send_batch(broadcast_id, [a], provider=provider) == {"sent": 1}
    with session_scope() as session:  # a worker died after handing b's mail over, before writing the answer
        key = broadcasts.message_key(broadcast_id, b)
        session.add(Message(idempotency_key=key, kind="news_broadcast", to_email="p2@example.com", subject="Hi",
                            partner_id=b, status=MessageStatus.SENDING, attempts=1))
    again = broadcasts.send_batch(broadcast_id, [a, b], provider=provider)
    assert again == {"already_sent": 1, "awaiting_confirmation": 1}
    assert provider.got == ["p1@example.com"]  # b waits for the provider's events or the unconfirmed-mail sweep
    assert broadcasts.finish(broadcast_id) == BroadcastStatus.APPROVED
