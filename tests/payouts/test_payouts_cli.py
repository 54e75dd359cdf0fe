"""The payouts area's command line and deployments."""

from __future__ import annotations

from typer.testing import CliRunner

from partnerflow.cli import _register, app
from partnerflow.tasks.payouts.conversions import source_for_key

_register()


def test_sources_add_prints_a_key_that_works_once_shown():
    result = CliRunner().invoke(app, ["sources", "add", "shop"])
    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]
    assert source_for_key(key) == "shop"
    assert CliRunner().invoke(app, ["sources", "add", "shop"]).exit_code == 1


def test_import_and_compute_from_the_command_line(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("external_id,amount,currency,occurred_at\nx1,1.00,USD,2026-01-01\nx2,oops,USD,2026-01-01\n")
    result = CliRunner().invoke(app, ["conversions", "import", str(path)])
    assert result.exit_code == 1 and '"created": 1' in result.output and '"line": 3' in result.output
    assert CliRunner().invoke(app, ["commissions", "compute"]).exit_code == 0
    assert CliRunner().invoke(app, ["fx", "add", "2026-01-01", "usd", "eur", "0.9"]).exit_code == 0
    assert CliRunner().invoke(app, ["fx", "add", "2026-01-01", "usd", "eur", "0"]).exit_code == 1


def test_deployments_are_named_and_scheduled():
    from partnerflow.deployments import all_deployments

    found = {d.name: d for d in all_deployments("payouts")}
    assert set(found) == {"payout-batch-monthly", "payout-batch", "compute-commissions-daily",
                          "compute-commissions", "import-conversions", "dry-run-rules",
                          "reconcile-payout-rails-hourly", "reconcile-payout-rails", "recover-payout-batches-hourly"}
    assert found["payout-batch-monthly"].schedules
