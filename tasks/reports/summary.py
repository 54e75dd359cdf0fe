"""What people read in the Prefect UI: the table artifact (totals, top and bottom partners) and the Markdown
summary (changes since the week before, top and bottom, newly dormant partners, the funnel, charts, exports).

Partner names, sources and sequence names come from outside: every such text is escaped (md_text).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from partnerflow.tasks.reports.figures import Figures, PartnerRow
from partnerflow.tasks.reports.funnel import STAGES, FunnelRow
from partnerflow.tasks.shared.markdown import md_text
from partnerflow.tasks.shared.money import format_money

MAX_FUNNEL_ROWS = 20


@dataclass
class WeeklySummary:
    """The small part of a weekly report the artifacts show (the full table is in the exports)."""

    label: str  # "2026-W48 (2026-11-23 to 2026-11-29)"
    currency: str
    week: Figures
    before: Figures
    partners: int
    top: list[PartnerRow]
    bottom: list[PartnerRow]
    newly_dormant: list[dict[str, Any]]
    exports: dict[str, str] = field(default_factory=dict)  # kind -> file path


def _pct(value: Decimal | None) -> str:
    return "—" if value is None else f"{(value * 100).quantize(Decimal('0.1'))}%"


def _change(now: int | Decimal | None, before: int | Decimal | None, points: bool = False) -> str:
    """Relative change of an amount or count; a rate's change in percentage points."""
    if now is None or before is None:
        return "—"
    if points:
        return f"{((now - before) * 100).quantize(Decimal('0.1')):+} pp"
    if before == 0:
        return "new" if now else "0"
    return f"{((Decimal(now) - Decimal(before)) * 100 / abs(Decimal(before))).quantize(Decimal('0.1')):+}%"


def _money(amount: int | None, currency: str) -> str:
    return "—" if amount is None else format_money(amount, currency)


def _metrics(currency: str) -> list[tuple[str, Callable[[Figures], Any], Callable[[Any], str]]]:
    count, money = str, (lambda v: _money(v, currency))
    return [("clicks", lambda f: f.clicks, count), ("conversions", lambda f: f.conversions, count),
            ("conversion rate", lambda f: f.conversion_rate, _pct), ("revenue", lambda f: f.revenue_minor, money),
            ("refund rate", lambda f: f.refund_rate, _pct), ("net revenue", lambda f: f.net_revenue_minor, money),
            ("commission", lambda f: f.commission_minor, money), ("EPC (per 100 clicks)", lambda f: f.epc_minor, money),
            ("average order value", lambda f: f.aov_minor, money)]


def table_rows(summary: WeeklySummary) -> list[dict[str, str]]:
    """The table artifact: program totals, then the top and bottom partners."""
    cur = summary.currency

    def row(group: str, name: str, f: Figures, before: Figures) -> dict[str, str]:
        return {"group": group, "partner": name, "clicks": str(f.clicks), "conversions": str(f.conversions),
                "conversion rate": _pct(f.conversion_rate), "revenue": _money(f.revenue_minor, cur),
                "net revenue": _money(f.net_revenue_minor, cur),
                "change": _change(f.net_revenue_minor, before.net_revenue_minor),
                "commission": _money(f.commission_minor, cur), "EPC": _money(f.epc_minor, cur),
                "AOV": _money(f.aov_minor, cur), "refund rate": _pct(f.refund_rate)}

    return [row("total", f"{summary.partners} partners", summary.week, summary.before),
            *(row(f"top {i}", r.name, r.week, r.before) for i, r in enumerate(summary.top, 1)),
            *(row(f"bottom {i}", r.name, r.week, r.before) for i, r in enumerate(summary.bottom, 1))]


def _partner_table(rows: list[PartnerRow], currency: str) -> list[str]:
    if not rows:
        return ["(none)", ""]
    lines = ["| # | partner | net revenue | change | conversions | clicks | commission |",
             "|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rows, 1):
        lines.append(f"| {i} | {md_text(r.name, 80)} (#{r.partner_id}) | "
                     f"{_money(r.week.net_revenue_minor, currency)} | "
                     f"{_change(r.week.net_revenue_minor, r.before.net_revenue_minor)} | {r.week.conversions} | "
                     f"{r.week.clicks} | {_money(r.week.commission_minor, currency)} |")
    return [*lines, ""]


def _hours(value: timedelta | None) -> str:
    if value is None:
        return "—"
    hours = Decimal(int(value.total_seconds())) / 3600
    return f"{hours.quantize(Decimal('0.1'))} h" if hours < 48 else f"{(hours / 24).quantize(Decimal('0.1'))} d"


def funnel_lines(rows: list[FunnelRow]) -> list[str]:
    if not rows:
        return ["No prospects yet.", ""]
    total = rows[-1]
    lines = ["| stage | reached | of the stage before | median time from the stage before |", "|---|---|---|---|"]
    lines += [f"| {stage.replace('_', ' ')} | {total.counts[k]} | {_pct(total.rate(k))} | {_hours(total.median(k))} |"
              for k, stage in enumerate(STAGES)]
    lines += ["", "By source and sequence (prospects → first conversion):", "",
              "| source | sequence | " + " | ".join(s.replace("_", " ") for s in STAGES) + " |",
              "|---|---|" + "---|" * len(STAGES)]
    for r in rows[:-1][:MAX_FUNNEL_ROWS]:
        lines.append(f"| {md_text(r.source or '(unknown)', 60)} | {md_text(r.sequence, 60)} | "
                     + " | ".join(str(n) for n in r.counts) + " |")
    if len(rows) - 1 > MAX_FUNNEL_ROWS:
        lines.append(f"\n… {len(rows) - 1 - MAX_FUNNEL_ROWS} more in the funnel export.")
    return [*lines, ""]


def markdown(summary: WeeklySummary, funnel: list[FunnelRow], charts: dict[str, tuple[str, str]]) -> str:
    """`charts`: title -> (image URL or data: URL, or "" when not shown; file path)."""
    cur = summary.currency
    lines = [f"# Program report {summary.label}", "",
             f"All amounts in {cur}, converted with the exchange rate of each conversion's day.", "",
             "## Changes since the week before", "", "| | this week | week before | change |", "|---|---|---|---|"]
    for name, get, shown in _metrics(cur):
        now, before = get(summary.week), get(summary.before)
        lines.append(f"| {name} | {shown(now)} | {shown(before)} | {_change(now, before, shown is _pct)} |")
    lines += ["", f"## Top {len(summary.top)} partners (net revenue)", "", *_partner_table(summary.top, cur),
              f"## Bottom {len(summary.bottom)} active partners", "", *_partner_table(summary.bottom, cur),
              "## Newly dormant partners", ""]
    lines += [f"- {md_text(d['name'], 80)} (#{d['partner_id']}), quiet since {md_text(d['quiet_since'][:10])}"
              for d in summary.newly_dormant] or ["(none)"]
    lines += ["", "## Recruitment funnel", "", *funnel_lines(funnel), "## Charts", ""]
    for title, (url, path) in charts.items():
        if url:
            lines += [f"![{title}]({url})", ""]
        lines += [f"{title}: `{path}`", ""]
    lines += ["## Exports", ""] + [f"- {kind}: `{path}`" for kind, path in summary.exports.items()]
    return "\n".join(lines) + "\n"
