"""Contracting wiring: deployments and their event triggers, the reviewer's description, the policy rules."""

from __future__ import annotations

from pathlib import Path

from factories import application

from partnerflow.models import Application, session_scope
from partnerflow.tasks.contracting.applications import submit_application
from partnerflow.tasks.contracting.policy import decide_by_policy, describe_for_reviewer, load_policy
from partnerflow.tasks.contracting.screening import screen_application

SDN = Path(__file__).parents[1] / "data" / "sdn_sample.csv"


def test_deployments_are_triggered_by_the_stage_events():
    from partnerflow.deployments import all_deployments

    by_name = {d.name: d for d in all_deployments("contracting") + all_deployments("onboarding")}
    assert set(by_name) == {"contract-application", "signature-sweeps", "onboard-partner", "monitor-activation"}
    applied = by_name["contract-application"].triggers[0]
    assert applied.expect == {"partner.applied"}
    assert applied.parameters == {"application_id": "{{ event.payload.application_id }}"}
    signed = by_name["onboard-partner"].triggers[0]
    assert signed.expect == {"contract.signed"}
    assert signed.parameters == {"contract_id": "{{ event.payload.contract_id }}"}
    assert by_name["monitor-activation"].schedules  # daily cron


def test_policy_rules():
    policy = load_policy()
    block = [{"code": "sanctions_match", "severity": "block", "detail": ""}]
    info = [{"code": "free_mail", "severity": "info", "detail": ""}]
    warn = [{"code": "duplicate", "severity": "warning", "detail": ""}]
    assert decide_by_policy(policy, "referral", []) == "approve"
    assert decide_by_policy(policy, "referral", info) == "approve"
    assert decide_by_policy(policy, "referral", warn) == "ask"
    assert decide_by_policy(policy, "referral", block) == "reject"
    assert decide_by_policy(policy, "affiliate", []) == "ask"


def test_custom_policy_file(configure, tmp_path):
    path = tmp_path / "approval.yaml"
    path.write_text("rules:\n  - decision: approve\n    partner_types: [affiliate]\n    max_severity: none\n")
    configure(approval_policy_path=str(path))
    assert decide_by_policy(load_policy(), "affiliate", []) == "approve"
    assert decide_by_policy(load_policy(), "reseller", []) == "ask"


def test_findings_and_default_terms_appear_in_the_reviewers_description(configure):
    configure(sanctions_list=str(SDN))
    app, _ = submit_application(application(legal_name="Jose Maria Garcia Lopez", contact_name="Jose Garcia",
                                            country="MX", email="jm@gmail.com", website=""))
    findings = screen_application(app.id)
    assert {f["code"] for f in findings} >= {"sanctions_match", "free_mail"}
    with session_scope() as session:
        stored = session.get(Application, app.id)
        assert stored.screening["findings"] == findings
    text = describe_for_reviewer(stored, findings, load_policy())
    assert "sanctions_match" in text and "GARCÍA LÓPEZ" in text and "jm@gmail.com" in text
    assert "10% of the net amount" in text  # the affiliate default terms
