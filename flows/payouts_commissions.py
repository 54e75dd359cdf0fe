"""Conversions in, commissions out, and the dry run of a rule change (a read-only table)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from partnerflow.tasks.payouts import commissions as commission_rules
from partnerflow.tasks.payouts import conversions
from partnerflow.tasks.shared.money import format_money


@task(name="import-conversions-file")
def _import(csv_path: str, source: str) -> dict[str, Any]:
    return conversions.import_csv(csv_path, source).as_dict()


@task(name="compute-commissions")
def _compute() -> dict[str, Any]:
    return commission_rules.compute_commissions()


@flow(name="import-conversions")
def import_conversions(csv_path: str, source: str = "csv") -> dict[str, Any]:
    """Import a CSV of conversions: good rows kept, bad rows reported by line, unattributed reported."""
    report = _import(csv_path, source)
    lines = [f"# Conversions imported from `{csv_path}`", "",
             f"- created: {report['created']}", f"- already there (unchanged): {report['duplicates']}",
             f"- with no partner (kept): {report['unattributed']}", f"- rejected rows: {len(report['errors'])}"]
    if report["errors"]:
        lines += ["", "| line | problem |", "|---|---|"]
        lines += [f"| {e['line']} | {e['error']} |" for e in report["errors"][:200]]
    if report["unattributed_external_ids"]:
        lines += ["", "Unattributed: " + ", ".join(report["unattributed_external_ids"][:50])]
    create_markdown_artifact("\n".join(lines), key="conversions-import")
    return report


@flow(name="compute-commissions")
def compute_commissions() -> dict[str, Any]:
    """Compute commissions for new conversions, refresh those in their lock period, apply reversals."""
    stats = _compute()
    get_run_logger().info("commissions: %s", {k: v for k, v in stats.items() if k != "problems"})
    return stats


def _when(value: str) -> datetime:
    at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@flow(name="dry-run-rules")
def dry_run_rules(rules_path_or_json: str, period_start: str, period_end: str) -> list[dict[str, Any]]:
    """Side by side, per partner: what was computed for [period_start, period_end) and what the proposed
    rules would give. Changes nothing."""
    rows = commission_rules.dry_run(rules_path_or_json, _when(period_start), _when(period_end))
    table = [{"partner_id": r["partner_id"], "partner": r["partner"],
              "current": format_money(r["current_minor"], r["currency"]) if r["currency"] else "",
              "proposed": format_money(r["proposed_minor"], r["currency"]) if r["currency"] else "",
              "difference": format_money(r["difference_minor"], r["currency"]) if r["currency"] else "",
              "note": r["note"]} for r in rows]
    create_table_artifact(table, key="commission-dry-run",
                          description=f"Proposed rules vs computed commissions, {period_start} to {period_end}. "
                                      "Nothing was changed.")
    return rows
