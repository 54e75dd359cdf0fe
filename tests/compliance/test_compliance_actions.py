"""Sanctions screening in the flows, each action path of a person's review, and the payout hold + release."""

from __future__ import annotations

import shutil
import time
from datetime import timedelta
from pathlib import Path

import pytest
from factories import findings
from sqlmodel import select
from support import WaitingForPerson, run_deployed

from partnerflow.flows.approvals import expire_unanswered_approvals
from partnerflow.flows.compliance import (
    check_compliance,
    rescreen_sanctions,
    review_findings,
)
from partnerflow.models import (
    AuditLog,
    Conversion,
    Message,
    Partner,
    Stage,
    session_scope,
    utcnow,
)
from partnerflow.models.compliance import (
    Finding,
    FindingStatus,
    SanctionsListVersion,
    SanctionsScreening,
)
from partnerflow.tasks.compliance.actions import apply_action
from partnerflow.tasks.compliance.blockers import payout_blockers
from partnerflow.tasks.compliance.findings import Detected, record
from partnerflow.tasks.compliance.policy import load_policy

DATA = Path(__file__).parents[1] / "data"


@pytest.fixture
def sdn_file(tmp_path, configure):
    path = tmp_path / "sdn.csv"
    shutil.copy(DATA / "sdn_sample.csv", path)
    configure(sanctions_list=str(path))
    return path


def make_partner(name="Ann Blogger", email="ann@blog.example", country="US", **kw) -> int:
    with session_scope() as session:
        p = Partner(email=email, legal_name=name, country=country, stage=Stage.ACTIVE, **kw)
        session.add(p)
        session.flush()
        return p.id


def blockers(*ids):
    with session_scope() as session:
        return payout_blockers(session, list(ids))


def test_sanctions_hit_holds_payout_until_dismissed_with_reason(sdn_file):
    listed = make_partner("Jurgen Muller-Ludenscheidt", "j@firm.example", "DE")
    clean = make_partner("Ann Blogger", "ann@blog.example", "US")
    result = check_compliance()
    assert "screened 2 partner(s), 1 possible match" in result["sanctions"]
    (hit,) = findings(kind="sanctions")
    assert hit.partner_id == listed and hit.severity == "critical" and hit.blocking
    assert hit.evidence["matches"][0]["ent_num"] == 1002 and hit.evidence["list_checksum"]
    assert hit.id in result["auto"]["withhold_payouts"]  # policy auto-acts on critical
    assert result["review"] == [listed]
    with session_scope() as session:
        screenings = session.exec(select(SanctionsScreening)).all()
        assert {(s.partner_id, s.result) for s in screenings} == {(listed, "match"), (clean, "clear")}
        assert all(s.list_date and len(s.list_checksum) == 64 for s in screenings)
        assert session.exec(select(SanctionsListVersion)).one().entries == 9

    held = blockers(listed, clean)
    assert list(held) == [listed] and "sanctions" in held[listed][0]

    out = run_deployed(review_findings, {"partner_id": listed},
                        [{"action": "dismiss", "reason": "different person: DOB 1988", "approver": "Dana"}])
    assert out["action"] == "dismiss" and out["by"] == "Dana"
    (hit,) = findings(kind="sanctions")
    assert hit.status == FindingStatus.DISMISSED and hit.status_reason == "different person: DOB 1988"
    assert blockers(listed) == {}  # released

    check_compliance()  # same list, same match: stays dismissed, no duplicate
    rescreen_sanctions(force=True)
    assert len(findings(kind="sanctions")) == 1
    with session_scope() as session:
        actions = [a.action for a in session.exec(select(AuditLog).order_by(AuditLog.id)).all()]
    assert "finding.opened" in actions and "finding.withhold_payouts" in actions and "finding.dismissed" in actions


def test_rescreen_only_when_the_list_changes_and_resolves_delisted(sdn_file):
    listed = make_partner("Vladimir Putin", "v@kremlin.example", "RU")
    make_partner("Ann Blogger")
    first = rescreen_sanctions()
    assert first["screened"] == 2 and first["matched"] == 1
    again = rescreen_sanctions()
    assert again["screened"] == 0 and again["unchanged"] == 2  # same checksum: nothing to do
    (hit,) = findings(kind="sanctions")
    assert hit.status == FindingStatus.OPEN

    lines = sdn_file.read_text(encoding="utf-8").splitlines(keepends=True)
    sdn_file.write_text("".join(line for line in lines if not line.startswith("1001,")), encoding="utf-8")  # delisted
    changed = rescreen_sanctions()
    assert changed["screened"] == 2 and changed["list_checksum"] != first["list_checksum"]
    (hit,) = findings(kind="sanctions")
    assert hit.status == FindingStatus.RESOLVED and "no match on the sanctions list" in hit.status_reason
    assert blockers(listed) == {}
    with session_scope() as session:
        assert len(session.exec(select(SanctionsListVersion)).all()) == 2


def test_a_bad_sanctions_list_does_not_stop_the_other_checks(configure, tmp_path):
    configure(sanctions_list=str(tmp_path / "missing.csv"))
    make_partner()
    result = check_compliance()
    assert result["sanctions"].startswith("could not load the list")


def self_referring_partner() -> int:
    pid = make_partner("Ann Blogger", "ann@annblog.example", domain="annblog.example")
    with session_scope() as session:
        session.add(Conversion(source="shop", external_id="x1", partner_id=pid, amount_minor=5000,
                               customer_email="ann@annblog.example", occurred_at=utcnow() - timedelta(days=1)))
    return pid


def test_fraud_finding_from_the_flow_blocks_and_suspend_action(configure):
    pid = self_referring_partner()
    result = check_compliance()
    (f,) = findings(rule="fraud.self_referral")
    assert f.blocking and f.severity == "high" and result["review"] == [pid]
    assert pid in blockers(pid)
    out = run_deployed(review_findings, {"partner_id": pid},
                        [{"action": "suspend_partner", "reason": "buys through own link", "approver": "Dana"}])
    assert out["action"] == "suspend_partner"
    with session_scope() as session:
        assert session.get(Partner, pid).stage == Stage.SUSPENDED
    (f,) = findings(rule="fraud.self_referral")
    assert f.status == FindingStatus.ACKNOWLEDGED and f.decided_by == "Dana"
    assert any("suspended" in r for r in blockers(pid)[pid])
    # Decided findings are not asked again.
    assert review_findings(partner_id=pid) == {"partner_id": pid, "asked": False}


def disclosure_finding(pid: int) -> int:
    with session_scope() as session:
        out = record(session, [Detected(pid, "disclosure", "disclosure.missing", "high",
                                        "Tracking link without any disclosure",
                                        {"reason": "no disclosure phrase anywhere on the page",
                                         "first_link_excerpt": "…try Acme…"},
                                        url="https://blog.example/post")], load_policy())
    return out.opened[0]


def test_withhold_then_resolve_releases_the_hold():
    pid = make_partner()
    fid = disclosure_finding(pid)
    assert blockers(pid) == {}  # disclosure findings do not block by default
    out = run_deployed(review_findings, {"partner_id": pid},
                        [{"action": "withhold_payouts", "reason": "until fixed", "approver": "Dana"}])
    assert out["action"] == "withhold_payouts"
    assert f"#{fid}" in blockers(pid)[pid][0]
    with pytest.raises(ValueError, match="needs a reason"):
        apply_action("resolve", [fid], actor="Dana")
    apply_action("resolve", [fid], actor="Dana", reason="page fixed, checked by hand")
    assert blockers(pid) == {}


def test_notify_partner_sends_the_templated_mail_once(outbox):
    pid = make_partner()
    fid = disclosure_finding(pid)
    run_deployed(review_findings, {"partner_id": pid},
                  [{"action": "notify_partner", "reason": "", "approver": "Dana"}])
    apply_action("notify_partner", [fid], actor="Dana")  # again: same key, no second mail
    mails = list(outbox.glob("*.eml"))
    assert len(mails) == 1
    text = mails[0].read_text()
    assert "Tracking link without any disclosure" in text and "https://blog.example/post" in text
    with session_scope() as session:
        msg = session.exec(select(Message)).one()
        assert msg.kind == "compliance_notice" and msg.status == "sent"
        f = session.get(Finding, fid)
        assert f.notified_message_id == msg.id and f.status == FindingStatus.ACKNOWLEDGED


def test_dismiss_without_reason_withholds_instead():
    pid = make_partner()
    fid = disclosure_finding(pid)
    out = run_deployed(review_findings, {"partner_id": pid},
                        [{"action": "dismiss", "reason": " ", "approver": "Dana"}])
    assert out["action"] == "withhold_payouts"
    assert findings(id=fid)[0].status == FindingStatus.ACKNOWLEDGED and pid in blockers(pid)


def test_nobody_answering_applies_the_safe_default(configure):
    configure(compliance_approval_timeout_seconds=1)
    pid = make_partner()
    fid = disclosure_finding(pid)
    assert isinstance(run_deployed(review_findings, {"partner_id": pid}), WaitingForPerson)
    assert not findings(id=fid)[0].blocking
    time.sleep(1.2)
    assert expire_unanswered_approvals()["expired"] == [f"compliance-{pid}-{fid}"]
    assert findings(id=fid)[0].blocking and pid in blockers(pid)


def test_report_artifact_counts_changes_since_last_run():
    from prefect import get_client

    pid = self_referring_partner()
    check_compliance()
    second = check_compliance()
    assert second["opened"] == []  # still open, not duplicated
    with get_client(sync_client=True) as client:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["compliance-report"])))
    latest = max(arts, key=lambda a: a.created)
    assert "partners checked: **1**" in latest.data and "Changes since the last run" in latest.data
    assert "| fraud | high | 1 | 0 |" in latest.data
    assert "had 1 open finding(s); now 1 (+0)" in latest.data
    assert pid
