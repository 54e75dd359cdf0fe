"""The weekly program report's tasks: partner figures and their exports, the weekly chart, the funnel.

Each is one Prefect task over SQL aggregates (a handful of queries, whatever the number of partners);
what they return is small (totals, top and bottom rows, file paths), the full tables go to the files.
"""

from __future__ import annotations

import base64
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from prefect import task

from partnerflow.models import session_scope, utcnow
from partnerflow.settings import get_settings
from partnerflow.tasks.reports import aggregates, charts, exports
from partnerflow.tasks.reports.figures import ranked, weekly_figures
from partnerflow.tasks.reports.funnel import FunnelRow, recruitment_funnel
from partnerflow.tasks.reports.fx import RateBook
from partnerflow.tasks.reports.period import Period, week_ending, weeks_back
from partnerflow.tasks.reports.summary import WeeklySummary
from partnerflow.tasks.shared.money import round_minor


@dataclass(frozen=True)
class ReportPlan:
    period: Period
    currency: str
    top_n: int
    folder: Path


def plan(period_end: date | datetime | str | None = None, top_n: int | None = None,
         now: datetime | None = None) -> ReportPlan:
    """Which week, in which currency, into which folder (var/reports/<week> unless configured)."""
    settings = get_settings()
    config = settings.reports
    period = week_ending(period_end, now or utcnow())
    if top_n is not None and not 1 <= top_n <= 100:
        raise ValueError(f"top_n must be between 1 and 100, not {top_n}")
    root = config.reports_export_dir or settings.var_dir / "reports"
    return ReportPlan(period, config.reports_currency, top_n or config.reports_top_n, Path(root) / period.label)


@task(name="weekly-partner-figures")
def partner_figures(p: ReportPlan) -> WeeklySummary:
    """Every partner's figures for the week and the one before; the full table to CSV and XLSX."""
    with session_scope() as session:
        figures = weekly_figures(session, p.period, p.currency)
    top, bottom = ranked(figures, p.top_n)
    header, rows = exports.weekly_table(figures)
    name = f"program-report-{p.period.label}"
    csv_path = exports.write_csv(p.folder / f"{name}.csv", header, rows)
    xlsx_path = exports.write_xlsx(p.folder / f"{name}.xlsx", {p.period.label: (header, rows)})
    return WeeklySummary(label=str(p.period), currency=p.currency, week=figures.totals(1), before=figures.totals(0),
                         partners=len(figures.rows), top=top, bottom=bottom, newly_dormant=figures.newly_dormant,
                         exports={"CSV": str(csv_path), "XLSX": str(xlsx_path)})


def weekly_money(p: ReportPlan, weeks: int) -> tuple[list[str], list[int], list[int]]:
    """Program revenue and commission per week for `weeks` weeks up to the reported one."""
    periods = weeks_back(p.period, weeks)
    with session_scope() as session:
        revenue, earned = aggregates.program_by_day(session, periods[0], periods[-1])
        rates = RateBook(session, p.currency, {cur for cur, _, _ in (*revenue, *earned)}, p.period.end.date())
    starts = [q.start.date() for q in periods]

    def by_week(groups: list[tuple]) -> list[int]:
        sums: dict[int, Decimal] = defaultdict(Decimal)
        for cur, day, amount in groups:
            index = max(i for i, start in enumerate(starts) if start <= day)
            sums[index] += rates.convert(amount, cur, day)
        return [round_minor(sums[i]) for i in range(len(periods))]

    return [q.label for q in periods], by_week(revenue), by_week(earned)


@task(name="weekly-money-chart")
def money_chart(p: ReportPlan) -> str:
    labels, revenue, commission = weekly_money(p, get_settings().reports.reports_chart_weeks)
    return str(charts.weekly_money_chart(p.folder / "revenue-commission-by-week.png", labels, revenue,
                                         commission, p.currency))


@task(name="recruitment-funnel")
def funnel(p: ReportPlan) -> tuple[list[FunnelRow], dict[str, str]]:
    """The funnel by source and sequence, its CSV and its chart."""
    with session_scope() as session:
        rows = recruitment_funnel(session)
    header, body = exports.funnel_table(rows)
    files = {"funnel CSV": str(exports.write_csv(p.folder / f"recruitment-funnel-{p.period.label}.csv", header, body))}
    if rows:
        files["funnel chart"] = str(charts.funnel_chart(p.folder / "recruitment-funnel.png", rows[-1]))
    return rows, files


def chart_links(paths: dict[str, str], folder: Path) -> dict[str, tuple[str, str]]:
    """title -> (what the Markdown shows: a URL under reports_public_url, else a data: URL when embedding
    is on, else nothing; the file path)."""
    config = get_settings().reports
    links = {}
    for title, path in paths.items():
        url = ""
        if config.reports_public_url:
            url = f"{config.reports_public_url.rstrip('/')}/{folder.name}/{Path(path).name}"
        elif config.reports_embed_charts:
            url = "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")
        links[title] = (url, path)
    return links
