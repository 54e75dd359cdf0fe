"""Outreach sequences: loading versions, enrolling, sending due steps and every stop condition."""

from __future__ import annotations

import email
import email.policy
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from partnerflow.models import (
    Application,
    Message,
    MessageStatus,
    Partner,
    Prospect,
    session_scope,
    utcnow,
)
from partnerflow.models.mail import Suppression
from partnerflow.models.outreach import Enrollment, Sequence
from partnerflow.tasks.outreach import batch, claims
from partnerflow.tasks.outreach.batch import send_due
from partnerflow.tasks.outreach.enrollment import enroll, stop_enrollment
from partnerflow.tasks.outreach.sequences import (
    SequenceError,
    default_root,
    load_sequence_files,
)
from partnerflow.tasks.shared.mail import TemplateError
from partnerflow.tasks.shared.suppression import suppress

MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def add_prospects(n: int, **fields) -> list[int]:
    with session_scope() as session:
        rows = [Prospect(email=f"p{i}@example.com", name=f"Pat {i}", company=f"Co {i}", **fields) for i in range(n)]
        session.add_all(rows)
        session.flush()
        return [r.id for r in rows]


def eml_files(outbox: Path) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in sorted(outbox.glob("*.eml"))]


def enrollments() -> list[Enrollment]:
    with session_scope() as session:
        return list(session.exec(select(Enrollment).order_by(Enrollment.id)).all())


@pytest.fixture
def seq_root(tmp_path) -> Path:
    root = tmp_path / "sequences"
    shutil.copytree(default_root(), root)
    return root


def test_shipped_sequence_sends_first_step_with_unsubscribe_headers_and_footer(outbox):
    assert load_sequence_files() == {"partner-recruitment": {"version": 1, "changed": True}}
    add_prospects(2)
    assert enroll("partner-recruitment", now=MONDAY_NOON)["enrolled"] == 2
    result = send_due(now=MONDAY_NOON)
    assert result["sent"] == 2
    mails = eml_files(outbox)
    assert len(mails) == 2
    mail = mails[0]
    unsub = mail["List-Unsubscribe"]
    assert unsub.startswith("<http://127.0.0.1:8765/u/") and unsub.endswith(">")
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    for body in (text, html):
        assert "1 Market Street" in body and unsub[1:-1] in body
    assert "Hi Pat," in text
    # Step 2 is due three days later, not before.
    assert send_due(now=MONDAY_NOON + timedelta(days=2))["claimed"] == 0
    result = send_due(now=MONDAY_NOON + timedelta(days=3, minutes=1))
    assert result["sent"] == 2 and len(eml_files(outbox)) == 4
    send_due(now=MONDAY_NOON + timedelta(days=8))
    assert {e.status for e in enrollments()} == {"completed"}
    assert len(eml_files(outbox)) == 6


def test_edited_file_is_a_new_version_and_running_enrollments_keep_theirs(seq_root, outbox):
    load_sequence_files(seq_root)
    first = add_prospects(1)
    enroll(prospect_ids=first, now=MONDAY_NOON)
    intro = seq_root / "partner-recruitment" / "intro" / "subject.txt"
    intro.write_text("NEW SUBJECT {{ prospect.name }}\n")
    assert load_sequence_files(seq_root)["partner-recruitment"] == {"version": 2, "changed": True}
    assert load_sequence_files(seq_root)["partner-recruitment"] == {"version": 2, "changed": False}
    with session_scope() as session:
        second = Prospect(email="new@example.com", name="Nia")
        session.add(second)
        session.flush()
        second_id = second.id
    enroll(prospect_ids=[second_id], now=MONDAY_NOON)
    send_due(now=MONDAY_NOON)
    subjects = {m["To"]: m["Subject"] for m in eml_files(outbox)}
    assert subjects["new@example.com"] == "NEW SUBJECT Nia"
    assert "NEW SUBJECT" not in subjects["p0@example.com"]


def test_missing_merge_field_is_refused_at_load_naming_template_and_field(seq_root):
    (seq_root / "partner-recruitment" / "follow-up" / "body.txt").write_text(
        "Hi {{ prospect.nickname }} {{ unsubscribe_url }} {{ postal_address }}")
    with pytest.raises(TemplateError, match=r"follow-up/body.txt.*nickname"):
        load_sequence_files(seq_root)
    with session_scope() as session:
        assert session.exec(select(Sequence)).all() == []


def test_step_without_unsubscribe_link_is_refused(seq_root):
    (seq_root / "partner-recruitment" / "intro" / "body.html").write_text("<p>Hi {{ prospect.name }}</p>")
    with pytest.raises(SequenceError, match="unsubscribe_url"):
        load_sequence_files(seq_root)


def test_template_error_at_send_time_sends_nothing(outbox, monkeypatch):
    load_sequence_files()
    add_prospects(3)
    enroll(now=MONDAY_NOON)
    with session_scope() as session:  # a stored version that references a field prospects lack
        row = session.exec(select(Sequence)).one()
        definition = dict(row.definition)
        steps = [dict(s) for s in definition["steps"]]
        steps[0]["sources"] = {**steps[0]["sources"], "subject.txt": "{{ prospect.nickname }}"}
        row.definition = {**definition, "steps": steps}
        row.definition_hash = "edited"
        session.add(row)
    with pytest.raises(TemplateError, match="intro/subject.txt.*nickname"):
        send_due(now=MONDAY_NOON)
    assert not outbox.exists() or list(outbox.glob("*.eml")) == []
    with session_scope() as session:
        assert session.exec(select(Message)).all() == []
    assert all(e.claim_token is None and e.current_step == 0 for e in enrollments())


@pytest.mark.parametrize("how", ["reply", "signup_application", "signup_partner", "unsubscribe", "bounce",
                                 "spam_report", "manual"])
def test_each_stop_condition_stops_the_sequence(how, outbox):
    load_sequence_files()
    add_prospects(2)
    enroll(now=MONDAY_NOON)
    send_due(now=MONDAY_NOON)
    assert len(eml_files(outbox)) == 2
    target = "p0@example.com"
    with session_scope() as session:
        if how == "signup_application":  # checked at send time, no event needed
            session.add(Application(email="P0@Example.com", legal_name="Pat"))
        elif how == "signup_partner":
            session.add(Partner(email=target, legal_name="Pat"))
        elif how in ("unsubscribe", "bounce", "spam_report"):
            suppress(session, target, how, source="test")
        elif how == "reply":
            from partnerflow.tasks.shared.suppression import stop_enrollments_for
            stop_enrollments_for(session, target, "reply")
    if how == "manual":
        assert stop_enrollment(enrollment_id=enrollments()[0].id) == 1
    send_due(now=MONDAY_NOON + timedelta(days=10))
    send_due(now=MONDAY_NOON + timedelta(days=20))
    sent_to = [m["To"] for m in eml_files(outbox)]
    assert sent_to.count(target) == 1  # only the first step, before the stop
    assert sent_to.count("p1@example.com") == 3
    first = enrollments()[0]
    assert first.status == "stopped"
    expected = {"signup_application": "signup", "signup_partner": "signup"}.get(how, how)
    assert first.stop_reason == expected


def test_suppression_applies_across_sequences_and_to_commercial_one_off_mail(seq_root, outbox):
    other = seq_root / "partner-recruitment"
    other.rename(seq_root / "reseller-invite")
    shutil.copytree(default_root() / "partner-recruitment", seq_root / "partner-recruitment")
    load_sequence_files(seq_root)
    add_prospects(2)
    enroll("partner-recruitment", now=MONDAY_NOON)
    with session_scope() as session:
        suppress(session, "P1@example.com ", "unsubscribe", source="test")
    # Enrolling into another sequence later skips the suppressed address...
    assert enroll("reseller-invite", now=MONDAY_NOON)["suppressed"] == 1
    send_due(now=MONDAY_NOON)
    assert [m["To"] for m in eml_files(outbox)] == ["p0@example.com", "p0@example.com"]
    # ...a commercial mail from any other flow is refused too...
    from partnerflow.tasks.shared.mail import deliver

    ctx = {"name": "x", "partner_name": "x", "body": "x"}
    nudge = deliver("nudge:1", kind="activation_nudge", to_email="p1@example.com", template="shared/test_notice",
                    context=ctx)
    assert nudge.status == MessageStatus.FAILED and "suppressed" in nudge.error
    assert len(eml_files(outbox)) == 2
    # ...while mail the person asked for (a signing link, a remittance) still reaches them,
    notice = deliver("notice:1", kind="notice", to_email="p1@example.com", template="shared/test_notice", context=ctx)
    assert notice.status == MessageStatus.SENT and len(eml_files(outbox)) == 3
    # and an address that hard-bounced gets nothing at all.
    with session_scope() as session:
        suppress(session, "p0@example.com", "bounce", source="test")
    bounced = deliver("notice:2", kind="notice", to_email="p0@example.com", template="shared/test_notice", context=ctx)
    assert bounced.status == MessageStatus.FAILED and "bounce" in bounced.error
    assert len(eml_files(outbox)) == 3


def test_business_hours_in_recipient_timezone(outbox):
    load_sequence_files()
    with session_scope() as session:
        session.add(Prospect(email="tokyo@example.com", timezone="Asia/Tokyo"))  # 21:00 there
        session.add(Prospect(email="london@example.com", timezone="Europe/London"))  # 12:00 there
        session.add(Prospect(email="unknown@example.com"))
    enroll(now=MONDAY_NOON)
    result = send_due(now=MONDAY_NOON)
    assert result["sent"] == 2 and result["deferred_business_hours"] == 1
    assert sorted(m["To"] for m in eml_files(outbox)) == ["london@example.com", "unknown@example.com"]
    tokyo = [e for e in enrollments() if e.email == "tokyo@example.com"][0]
    assert tokyo.next_due_at == datetime(2026, 11, 24, 0, 0, tzinfo=UTC)  # 09:00 Tokyo
    send_due(now=tokyo.next_due_at)
    assert "tokyo@example.com" in [m["To"] for m in eml_files(outbox)]


def test_daily_cap_per_sender_defers_to_tomorrow(outbox, configure):
    configure(daily_send_cap=3)
    load_sequence_files()
    add_prospects(5)
    enroll(now=MONDAY_NOON)
    result = send_due(now=MONDAY_NOON)
    assert result["sent"] == 3 and result["deferred_daily_cap"] == 2
    assert send_due(now=MONDAY_NOON + timedelta(hours=1))["claimed"] == 0
    assert send_due(now=MONDAY_NOON + timedelta(hours=12, minutes=1))["sent"] == 2
    assert len(eml_files(outbox)) == 5


def test_crash_between_sending_and_recording_does_not_duplicate(outbox, monkeypatch):
    load_sequence_files()
    add_prospects(3)
    enroll(now=MONDAY_NOON)
    real = batch.record_outcomes

    def crash(*args, **kwargs):
        raise SystemExit("worker killed")

    monkeypatch.setattr(batch, "record_outcomes", crash)
    with pytest.raises(SystemExit):
        send_due(now=MONDAY_NOON)
    assert len(eml_files(outbox)) == 3  # sent, but nothing recorded
    monkeypatch.setattr(batch, "record_outcomes", real)
    # Claims are leased: the re-run after the lease finds `sending` rows and the idempotent outbox.
    assert send_due(now=MONDAY_NOON + timedelta(minutes=5))["claimed"] == 0
    later = utcnow() + timedelta(minutes=31)  # leases run on the wall clock
    monkeypatch.setattr(claims, "utcnow", lambda: later)
    result = send_due(now=MONDAY_NOON + timedelta(minutes=31))
    assert result["sent"] == 3
    assert len(eml_files(outbox)) == 3  # one file per key: no duplicate
    with session_scope() as session:
        assert {m.status for m in session.exec(select(Message)).all()} == {"sent"}
    assert {e.current_step for e in enrollments()} == {1}


def test_send_due_outreach_flow_uses_one_task_per_batch(outbox, configure):
    from partnerflow.flows.outreach import (
        enroll_prospects,
        load_sequences,
        send_due_outreach,
    )

    configure(outreach_batch_size=4)
    load_sequences()
    add_prospects(10)
    assert enroll_prospects()["enrolled"] == 10
    result = send_due_outreach()
    assert result["sent"] == 10 and result["batches"] == 3
    assert len(eml_files(outbox)) == 10


def test_cli_load_enroll_stop(outbox):
    from typer.testing import CliRunner

    from partnerflow.cli import _register, app

    _register()
    runner = CliRunner()
    assert runner.invoke(app, ["outreach", "load"]).exit_code == 0
    add_prospects(2)
    result = runner.invoke(app, ["outreach", "enroll", "--min-score", "0"])
    assert result.exit_code == 0 and '"enrolled": 2' in result.output
    result = runner.invoke(app, ["outreach", "stop", "--email", "P0@example.com", "--suppress"])
    assert result.exit_code == 0 and "stopped 1" in result.output
    with session_scope() as session:
        assert session.exec(select(Suppression.email)).all() == ["p0@example.com"]
    assert runner.invoke(app, ["outreach", "enroll", "--sequence", "nope"]).exit_code == 1


def test_deployments_include_hourly_sender():
    from partnerflow.deployments import all_deployments

    found = {d.name: d for d in all_deployments("outreach")}
    assert set(found) == {"send-due-outreach", "load-sequences", "enroll-prospects"}
    assert found["send-due-outreach"].schedules[0].schedule.cron == "5 * * * *"


def test_html_is_autoescaped_and_text_part_always_present(outbox):
    load_sequence_files()
    with session_scope() as session:
        session.add(Prospect(email="x@example.com", name="<script>alert(1)</script>", company="A&B"))
    enroll(now=MONDAY_NOON)
    send_due(now=MONDAY_NOON)
    [mail] = eml_files(outbox)
    html = mail.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<script>alert(1)</script>" in mail.get_body(("plain",)).get_content()


def test_step_condition_false_skips_the_step(seq_root, outbox):
    spec = seq_root / "partner-recruitment" / "sequence.yaml"
    spec.write_text(spec.read_text().replace('condition: "prospect.score >= 0"', 'condition: "prospect.score >= 50"'))
    load_sequence_files(seq_root)
    with session_scope() as session:
        session.add(Prospect(email="low@example.com", score=10))
        session.add(Prospect(email="high@example.com", score=80))
    enroll(now=MONDAY_NOON)
    for days in (0, 3.01, 7.02, 8):
        send_due(now=MONDAY_NOON + timedelta(days=days))
    sent = [m["To"] for m in eml_files(outbox)]
    assert sent.count("high@example.com") == 3 and sent.count("low@example.com") == 2
    assert {e.status for e in enrollments()} == {"completed"}
