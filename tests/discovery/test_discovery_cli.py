"""`partnerflow prospects import|enrich` and the discovery deployments."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from partnerflow.cli import _register, app

SAMPLE = Path(__file__).parents[2] / "templates" / "demo" / "prospects.csv"


def test_import_reports_bad_lines_and_exits_3(tmp_path):
    _register()
    runner = CliRunner()
    result = runner.invoke(app, ["prospects", "import", str(SAMPLE), "--source", "fair"])
    assert result.exit_code == 3, result.output
    assert "14 rows: 12 new, 0 updated, 0 unchanged, 0 already partners, 2 rejected" in result.output
    assert "line 11: rejected: invalid email 'oliver@spreadsheetpro'" in result.output
    again = runner.invoke(app, ["prospects", "import", str(SAMPLE), "--json"])
    report = json.loads(again.output)
    assert report["unchanged"] == 12 and report["created"] == 0
    missing = runner.invoke(app, ["prospects", "import", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 1


def test_enrich_without_websites_scores_from_the_import(tmp_path, configure):
    _register()
    csv_file = tmp_path / "list.csv"
    csv_file.write_text("email,topics,followers\nann@ann.example,saas; analytics,30k\n", encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(app, ["prospects", "import", str(csv_file)]).exit_code == 0
    result = runner.invoke(app, ["prospects", "enrich", "--json"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert row["error"] == "no website"
    assert row["reasons"] == ["+15 topic analytics (analytics)", "+10 topic saas (saas)",
                              "+14 audience 30,000 (at least 25,000)", "+8 contact email known"]
    assert row["score"] == 47
    rescored = runner.invoke(app, ["prospects", "rescore"])
    assert rescored.exit_code == 0 and "1 prospects scored, 0 changed" in rescored.output


def test_deployments_are_manual_module_path_entrypoints():
    from partnerflow.deployments import all_deployments

    found = {d.name: d for d in all_deployments("discovery")}
    assert set(found) == {"import-prospects", "enrich-prospects", "rescore-prospects"}
    assert found["import-prospects"].entrypoint == "partnerflow.flows.discovery.import_prospects"
    assert all(not d.schedules and not d.triggers for d in found.values())
