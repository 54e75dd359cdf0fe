"""What a person reads about a broadcast: the approval form's description (audience and preview) and
the report of what was sent, opened and clicked (from SQL aggregates over its messages).

Everything typed by a person or taken from a partner's record is escaped (tasks/shared/markdown.py):
the description is rendered as Markdown in the Prefect UI.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func
from sqlmodel import select

from partnerflow.models import Message, MessageStatus, Partner, session_scope, utcnow
from partnerflow.models.news import Broadcast, BroadcastRecipient, NewsPreference
from partnerflow.tasks.news.broadcasts import first_recipient
from partnerflow.tasks.news.preferences import opt_out_url
from partnerflow.tasks.news.rendering import md_block, render_broadcast
from partnerflow.tasks.news.segments import Segment, matches
from partnerflow.tasks.shared.markdown import md_text


def _opted_out_of_segment(segment: Segment) -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(Partner).join(
            NewsPreference, NewsPreference.partner_id == Partner.id).where(
            matches(segment, utcnow()), NewsPreference.news_opted_out_at.is_not(None))) or 0


def approval_description(broadcast_id: int) -> str:
    """Markdown for the approval form: what is sent, to how many partners, and the first one's mail."""
    with session_scope() as session:
        row = session.get(Broadcast, broadcast_id)
        first = first_recipient(session, broadcast_id)
        preview = render_broadcast(row.template, row.subject, row.fields, first, opt_out_url("news", first.id))
        name = first.contact_name or first.legal_name
        first_email = first.email
    segment = Segment.model_validate(row.segment)
    lines = [f"# Broadcast {row.id}: send to {row.audience_size} partners?", "",
             f"**Audience: {row.audience_size} partners.** "
             f"{_opted_out_of_segment(segment)} more in the segment opted out of program news and get nothing.", "",
             "| | |", "|---|---|", f"| template | {md_text(row.template)} |", f"| subject | {md_text(row.subject)} |"]
    lines += [f"| {label} | {md_text(value)} |" for label, value in segment.describe()]
    lines += [f"| offer field {md_text(k)} | {md_text(v, 120)} |" for k, v in row.fields.items()]
    lines += ["", f"## Preview: the mail to {md_text(name, 80)} ({md_text(first_email, 120)})", "",
              f"**Subject:** {md_text(preview.subject)}", "", md_block(preview.text), "",
              "Each partner gets their own copy (name, tracking link, coupon) with a one-click opt-out "
              "link to program news. Choose **send** or **cancel**, and give your name."]
    return "\n".join(lines)


def broadcast_figures(broadcast_id: int) -> dict[str, Any]:
    """Audience, sent, opened, clicked, failed, unconfirmed, not yet sent and skipped (one query)."""
    R, M = BroadcastRecipient, Message

    def count(condition) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    with session_scope() as session:
        row = session.get(Broadcast, broadcast_id)
        figures = session.execute(
            select(func.count(R.id).label("audience"),
                   count(M.status == MessageStatus.SENT).label("sent"),
                   count(M.opened_at.is_not(None)).label("opened"),
                   count(M.clicked_at.is_not(None)).label("clicked"),
                   count(M.status.in_([MessageStatus.FAILED, MessageStatus.BOUNCED])).label("failed"),
                   count(M.status == MessageStatus.SENDING).label("unconfirmed"),
                   count(R.skipped.is_not(None)).label("skipped"))
            .select_from(R).outerjoin(M, M.id == R.message_id).where(R.broadcast_id == broadcast_id)).one()
        result = {"broadcast_id": row.id, "status": row.status, "key": row.key, "template": row.template,
                  "subject": row.subject, "decided_by": row.decided_by, **{k: int(v) for k, v in
                                                                           figures._mapping.items()}}
    handled = result["sent"] + result["failed"] + result["unconfirmed"] + result["skipped"]
    result["not_sent_yet"] = max(result["audience"] - handled, 0)
    return result


def _rate(part: int, whole: int) -> str:
    return f"{part * 100 // whole}%" if whole else "-"


def report_markdown(figures: dict[str, Any]) -> str:
    f = figures
    lines = [f"# Broadcast {f['broadcast_id']}: {md_text(f['subject'])}", "",
             f"Status **{f['status']}**" + (f", decided by {md_text(f['decided_by'])}" if f["decided_by"] else "")
             + f"; template `{md_text(f['template'])}`; key `{md_text(f['key'])}` (run the deployment again "
               "with this key to continue it).", "",
             "| audience | sent | opened | clicked | failed | unconfirmed | skipped | not sent yet |",
             "|---|---|---|---|---|---|---|---|",
             f"| {f['audience']} | {f['sent']} | {f['opened']} ({_rate(f['opened'], f['sent'])}) | "
             f"{f['clicked']} ({_rate(f['clicked'], f['sent'])}) | {f['failed']} | {f['unconfirmed']} | "
             f"{f['skipped']} | {f['not_sent_yet']} |", "",
             "Opens and clicks are counted where the mail provider reports them (SendGrid's event webhook); "
             "unconfirmed mails are settled by the provider's events or the unconfirmed-mail sweep, never re-sent."]
    if f["not_sent_yet"] and f["status"] == "approved":
        lines += ["", f"**{f['not_sent_yet']} mails are still to send** (the provider refused for now): run "
                      f"`send-broadcast` again with key `{md_text(f['key'])}`; nobody is mailed twice."]
    return "\n".join(lines)
