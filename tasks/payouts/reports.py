"""What people read in the Prefect UI about payouts: artifact tables, Markdown reports, the approval text."""

from __future__ import annotations

from typing import Any

from partnerflow.models import Payout, PayoutBatch
from partnerflow.models.payouts import PayoutStatus
from partnerflow.tasks.shared.markdown import md_text
from partnerflow.tasks.shared.money import format_money

MAX_TABLE_ROWS = 1000


def batch_summary(batch: PayoutBatch, payouts: list[Payout]) -> str:
    """The batch in Markdown: what is paid, what is held and why; also the approval form's description."""
    s = batch.summary
    totals = ", ".join(format_money(v, k) for k, v in sorted(s.get("totals", {}).items())) or "nothing"
    lines = [f"# Payout batch {batch.id} (period end {s.get('period_end', '')[:10]})", "",
             f"**{len(payouts)} payouts, total {totals}** through {_rails(s)}.", ""]
    if payouts:  # the ids a person types into hold_partner_ids, largest first
        lines += ["In this batch (partner id: amount, rail):", ""]
        lines += [f"- partner {p.partner_id}: {format_money(p.amount_minor, p.currency)}, `{p.rail}`"
                  for p in sorted(payouts, key=lambda p: (-p.amount_minor, p.partner_id))[:50]]
        if len(payouts) > 50:
            lines.append(f"- … and {len(payouts) - 50} more (see the batch table artifact)")
        lines.append("")
    if s.get("held"):  # partner names come from the partners: escaped
        lines += ["Held (not in this batch):", ""]
        lines += [f"- partner {h['partner_id']} {md_text(h['partner'])}: "
                  f"{format_money(h['amount_minor'], h['currency'])} — {md_text(', '.join(h['held']), 500)}"
                  for h in s["held"][:50]]
        lines.append("")
    if s.get("below_threshold"):
        lines.append(f"{s['below_threshold']} partners are below their payout threshold.")
    review = [p for p in payouts if p.status == PayoutStatus.NEEDS_REVIEW]
    if review:
        lines += ["", f"**{len(review)} payouts need review** (the money may have moved, not as asked; their "
                  "commissions stay attached): `partnerflow payouts resolve ID --paid|--failed --by NAME`", ""]
        lines += [f"- payout {p.id}, partner {p.partner_id}: {format_money(p.amount_minor, p.currency)} — {p.error}"
                  for p in review[:50]]
    lines += ["", "Approve all, or list partner ids to hold; reject stops the batch (balances stay)."]
    return "\n".join(lines)


def _rails(summary: dict[str, Any]) -> str:
    """"the `ledger` rail", or "the `sepa` (3), `stripe` (2) rails" for a batch that spans rails."""
    rails = summary.get("rails") or {summary.get("rail"): 0}
    if len(rails) == 1:
        return f"the `{next(iter(rails))}` rail"
    return "the " + ", ".join(f"`{r}` ({n})" for r, n in sorted(rails.items())) + " rails"


def batch_table(batch: PayoutBatch, payouts: list[Payout]) -> list[dict[str, Any]]:
    """One row per payout, then one per held partner."""
    table = [{"partner_id": p.partner_id, "amount": format_money(p.amount_minor, p.currency),
              "status": f"{p.status}: {p.error}" if p.status == PayoutStatus.NEEDS_REVIEW else p.status,
              "fx_rates": ", ".join(f"{k} {v}" for k, v in p.fx_rates.items())} for p in payouts[:MAX_TABLE_ROWS]]
    table += [{"partner_id": h["partner_id"], "amount": format_money(h["amount_minor"], h["currency"]),
               "status": "held: " + ", ".join(h["held"]), "fx_rates": ""} for h in batch.summary.get("held", [])]
    return table


def conversions_report(csv_path: str, report: dict[str, Any]) -> str:
    lines = [f"# Conversions imported from `{csv_path}`", "",
             f"- created: {report['created']}", f"- already there (unchanged): {report['duplicates']}",
             f"- with no partner (kept): {report['unattributed']}", f"- rejected rows: {len(report['errors'])}"]
    if report["errors"]:
        lines += ["", "| line | problem |", "|---|---|"]
        lines += [f"| {e['line']} | {e['error']} |" for e in report["errors"][:200]]
    if report["unattributed_external_ids"]:
        lines += ["", "Unattributed: " + ", ".join(report["unattributed_external_ids"][:50])]
    return "\n".join(lines)


def dry_run_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Current vs proposed commissions per partner and currency, as money."""

    def money(r: dict[str, Any], field: str) -> str:
        return format_money(r[field], r["currency"]) if r["currency"] else ""

    return [{"partner_id": r["partner_id"], "partner": r["partner"], "current": money(r, "current_minor"),
             "proposed": money(r, "proposed_minor"), "difference": money(r, "difference_minor"), "note": r["note"]}
            for r in rows]


def dry_run_description(period_start: str, period_end: str) -> str:
    return f"Proposed rules vs computed commissions, {period_start} to {period_end}. Nothing was changed."


def reconciliation_report(result: dict[str, dict[str, int]]) -> str:
    lines = ["# Payout reconciliation", ""]
    for rail, counts in result.items():
        shown = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "nothing to do"
        lines.append(f"- **{rail}**: {shown}")
    return "\n".join(lines)


def recovery_report(result: dict[str, Any]) -> str:
    """What the recovery sweep did, per batch."""
    lines = ["# Payout recovery", ""]
    for b in result["resumed"]:
        lines.append(f"- batch {b['batch_id']}: {b['status']}; paid now "
                     f"{', '.join(f'{k}: {v}' for k, v in sorted(b['executed'].items())) or 'nothing'}; "
                     f"reconciled {', '.join(f'{k}: {v}' for k, v in sorted(b['reconciled'].items())) or 'nothing'}")
    lines += [f"- batch {batch_id}: could not be resumed: {error}" for batch_id, error in result["errors"].items()]
    if not result["resumed"] and not result["errors"]:
        lines.append("No open payout batch.")
    if result["unclear"]:
        lines += ["", f"Payouts with no clear answer for too long (the team was mailed): {result['unclear']}"]
    lines += ["", f"Payouts still open: {result['still_open']}"]
    return "\n".join(lines)
