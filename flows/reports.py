"""Flow `weekly_program_report` (Mondays 07:00 UTC): how the program did last week.

Per partner, for the week and the one before: clicks, conversions, conversion rate, revenue, refunds,
commission, EPC, average order value; top and bottom performers; newly dormant partners; the recruitment
funnel by source and sequence; charts. People read a table artifact (totals, top and bottom N) and a
Markdown summary (changes since the week before, charts); the full tables go to CSV and XLSX files in the
reports folder. Running a week again rewrites its files and adds a new version of the artifacts.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_image_artifact, create_markdown_artifact, create_table_artifact

from partnerflow.settings import get_settings
from partnerflow.tasks.reports.summary import markdown, table_rows
from partnerflow.tasks.reports.weekly import chart_links, funnel, money_chart, partner_figures, plan


@flow(name="weekly-program-report")
def weekly_program_report(period_end: date | None = None, top_n: int | None = None) -> dict[str, Any]:
    """Report the ISO week holding `period_end` (default: the last full week)."""
    p = plan(period_end, top_n)
    summary_future = partner_figures.submit(p)
    chart_future = money_chart.submit(p)
    funnel_rows, funnel_files = funnel(p)
    summary, money_png = summary_future.result(), chart_future.result()

    pngs = {"Revenue and commission by week": money_png}
    if "funnel chart" in funnel_files:
        pngs["Recruitment funnel"] = funnel_files["funnel chart"]
    summary.exports = {**summary.exports, "funnel CSV": funnel_files["funnel CSV"], **pngs}
    links = chart_links(pngs, p.folder)

    create_table_artifact(table_rows(summary), key="program-report-table",
                          description=f"Program report {summary.label}: totals, top and bottom {p.top_n} "
                                      f"(amounts in {p.currency}); every partner is in the CSV/XLSX export")
    create_markdown_artifact(markdown(summary, funnel_rows, links), key="program-report",
                             description=f"Program report {summary.label}: changes since the week before")
    if get_settings().reports.reports_public_url:
        for title, (url, _path) in links.items():
            create_image_artifact(url, key="program-report-" + title.lower().replace(" ", "-"), description=title)

    result = {"week": p.period.label, "partners": summary.partners, "revenue_minor": summary.week.revenue_minor,
              "commission_minor": summary.week.commission_minor, "currency": p.currency,
              "newly_dormant": len(summary.newly_dormant), "folder": str(p.folder), "files": summary.exports}
    get_run_logger().info("Program report %s: %s partners, files in %s", summary.label, summary.partners, p.folder)
    return result
