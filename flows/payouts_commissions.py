"""Conversions in, commissions out, and the dry run of a rule change (a read-only table)."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from partnerflow.tasks.payouts import commissions, reports, steps


@flow(name="import-conversions")
def import_conversions(csv_path: str, source: str = "csv") -> dict[str, Any]:
    """Import a CSV of conversions: good rows kept, bad rows reported by line, unattributed reported."""
    report = steps.import_conversions_file(csv_path, source)
    create_markdown_artifact(reports.conversions_report(csv_path, report), key="conversions-import")
    return report


@flow(name="compute-commissions")
def compute_commissions() -> dict[str, Any]:
    """Compute commissions for new conversions, refresh those in their lock period, apply reversals."""
    stats = steps.compute_commissions()
    get_run_logger().info("commissions: %s", {k: v for k, v in stats.items() if k != "problems"})
    return stats


@flow(name="dry-run-rules")
def dry_run_rules(rules_path_or_json: str, period_start: str, period_end: str) -> list[dict[str, Any]]:
    """Side by side, per partner: what was computed for [period_start, period_end) and what the proposed
    rules would give. Changes nothing."""
    rows = commissions.dry_run(rules_path_or_json, steps.parse_time(period_start), steps.parse_time(period_end))
    create_table_artifact(reports.dry_run_table(rows), key="commission-dry-run",
                          description=reports.dry_run_description(period_start, period_end))
    return rows
