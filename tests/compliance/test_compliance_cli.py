"""The compliance CLI, the policy's error messages, and no duplicate findings under concurrent runs."""

from __future__ import annotations

import threading

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from partnerflow.cli import _register, app
from partnerflow.models import Partner, Stage, session_scope
from partnerflow.models.compliance import Finding, FindingStatus, PartnerPage
from partnerflow.settings import ConfigError
from partnerflow.tasks.compliance.findings import Detected, record
from partnerflow.tasks.compliance.policy import load_policy

_register()
runner = CliRunner()


def make_partner() -> int:
    with session_scope() as session:
        p = Partner(email="ann@blog.example", legal_name="Ann Blogger", stage=Stage.ACTIVE, tracking_code="PF1")
        session.add(p)
        session.flush()
        return p.id


def detected(pid: int) -> Detected:
    return Detected(pid, "disclosure", "disclosure.missing", "high", "Tracking link without any disclosure",
                    {"reason": "none"}, url="https://blog.example/a")


def test_cli_add_page_list_and_dismiss():
    pid = make_partner()
    result = runner.invoke(app, ["compliance", "add-page", "--partner", str(pid), "https://blog.example/a"])
    assert result.exit_code == 0 and "added" in result.output
    with session_scope() as session:
        assert session.exec(select(PartnerPage)).one().url == "https://blog.example/a"
    assert "no findings" in runner.invoke(app, ["findings", "list"]).output

    with session_scope() as session:
        fid = record(session, [detected(pid)], load_policy()).opened[0]
    listed = runner.invoke(app, ["findings", "list"]).output
    assert f"#{fid} partner {pid}" in listed and "disclosure.missing" in listed

    refused = runner.invoke(app, ["findings", "set", str(fid), "dismiss", "--by", "Dana"])
    assert refused.exit_code != 0 and "needs a reason" in refused.output
    ok = runner.invoke(app, ["findings", "set", str(fid), "dismiss", "--by", "Dana", "--reason", "old page, removed"])
    assert ok.exit_code == 0
    assert "no findings" in runner.invoke(app, ["findings", "list"]).output
    assert "dismissed" in runner.invoke(app, ["findings", "list", "--status", "all"]).output


def test_cli_check_one_partner():
    pid = make_partner()
    result = runner.invoke(app, ["compliance", "check", "--partner", str(pid)])
    assert result.exit_code == 0, result.output
    assert '"partners": 1' in result.output


def test_concurrent_runs_open_one_finding():
    pid = make_partner()
    policy = load_policy()
    barrier = threading.Barrier(4)
    errors = []

    def run():
        try:
            barrier.wait()
            with session_scope() as session:
                record(session, [detected(pid)], policy)
        except Exception as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with session_scope() as session:
        rows = session.exec(select(Finding)).all()
    assert len(rows) == 1 and rows[0].status == FindingStatus.OPEN


def test_policy_mistakes_name_the_key(tmp_path, configure):
    bad = tmp_path / "policy.yaml"
    bad.write_text("disclosure: {severity: {missing: urgent}}\nfraud: {}\nactions: {}\n")
    configure(compliance_policy=str(bad))
    with pytest.raises(ConfigError, match="disclosure.severity.missing='urgent'"):
        load_policy()
    bad.write_text("disclosure: {}\nfraud: {}\nactions: {auto: {high: [delete_partner]}}\n")
    with pytest.raises(ConfigError, match="unknown action 'delete_partner'"):
        load_policy()
