"""The weekly program report: every figure against a small data set computed by hand, the exports
(formula injection neutralised, XLSX readable), the artifacts of a run, and the deployment."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from openpyxl import load_workbook
from prefect.artifacts import Artifact

from partnerflow.deployments import RETRY_ON_CRASH_TAG, all_deployments
from partnerflow.deployments.table import DEPLOYMENTS
from partnerflow.flows.reports import weekly_program_report
from partnerflow.models import AuditLog, Commission, Conversion, Partner, Stage, session_scope
from partnerflow.models.payouts import CommissionStatus, FxRate
from partnerflow.models.tracking import Click
from partnerflow.settings import ConfigError, check_settings
from partnerflow.tasks.reports.exports import neutralise
from partnerflow.tasks.reports.figures import ranked, weekly_figures
from partnerflow.tasks.reports.period import last_full_week, week_ending, week_of

WEEK = week_of(date(2026, 11, 25))  # 2026-W48: Monday 23 to Sunday 29 November
NOW = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


def build() -> dict[str, int]:
    """Hand-computed figures are in the tests below; amounts in minor units."""
    with session_scope() as s:
        def partner(name: str, stage: str = Stage.ACTIVE) -> int:
            p = Partner(email=f"{name.lower().replace(' ', '')}@example.com", legal_name=name, stage=stage)
            s.add(p)
            s.flush()
            return p.id

        ids = {"alpha": partner("Alpha"), "coupon": partner("Coupon Only"), "refunded": partner("All Refunded"),
               "quiet": partner("Quiet"), "dormant": partner("Gone Quiet", Stage.DORMANT),
               "applicant": partner("Applicant", Stage.APPLIED), "formula": partner("=HYPERLINK(\"x\")")}
        s.add_all([FxRate(day=date(2026, 11, 1), base="EUR", quote="USD", rate="1.10"),
                   FxRate(day=date(2026, 11, 25), base="EUR", quote="USD", rate="1.20"),
                   FxRate(day=date(2026, 11, 1), base="USD", quote="GBP", rate="0.8")])  # only the inverse: 1.25

        n = iter(range(10_000))

        def clicks(pid: int, when: datetime, count: int, bot: bool = False) -> None:
            s.add_all([Click(click_id=f"c{next(n)}", partner_id=pid, tracking_code="t", clicked_at=when,
                             landing_url="https://shop.example/", is_bot=bot) for _ in range(count)])

        def sale(pid: int | None, when: datetime, amount: int, cur: str = "USD", kind: str = "sale",
                 reverses: int | None = None, commission: int | None = None,
                 status: str = CommissionStatus.PENDING) -> int:
            c = Conversion(source="t", external_id=f"e{next(n)}", kind=kind, partner_id=pid, amount_minor=amount,
                           currency=cur, occurred_at=when, reverses_id=reverses)
            s.add(c)
            s.flush()
            if commission is not None:
                s.add(Commission(conversion_id=c.id, partner_id=pid, amount_minor=commission, currency=cur,
                                 status=status))
            return c.id

        a = ids["alpha"]
        clicks(a, at(24), 10)
        clicks(a, at(24), 3, bot=True)
        clicks(a, at(17), 4)
        usd = sale(a, at(24), 10000, commission=1000)
        sale(a, at(24), 5000, "EUR", commission=500)  # 1.10 -> 5500 USD, commission 550
        sale(a, at(26), 2000, "EUR", commission=200)  # 1.20 -> 2400 USD, commission 240
        sale(a, at(26), 0, kind="lead")
        sale(a, at(27), 3000, kind="refund", reverses=usd, commission=-300)  # partial refund of the USD sale
        sale(a, at(18), 4000, commission=400)  # the week before
        sale(a, at(10), 9999, commission=999)  # before both weeks: not counted

        sale(ids["coupon"], at(25), 2500, "GBP", commission=250)  # x1.25 -> 3125 USD, commission 312.5 -> 312

        r = ids["refunded"]
        clicks(r, at(25), 5)
        for _ in range(2):
            original = sale(r, at(24), 1000, commission=100, status=CommissionStatus.CANCELLED)
            sale(r, at(25), 0, kind="refund", reverses=original)  # amount 0: the whole sale

        sale(None, at(24), 7777)  # not attributed to a partner
        s.add(AuditLog(at=at(26), actor="system", action="partner.dormant", subject_type="partner",
                       subject_id=str(ids["dormant"]), details={"quiet_since": "2026-09-20T00:00:00+00:00"}))
        s.add(AuditLog(at=at(16), actor="system", action="partner.dormant", subject_type="partner",
                       subject_id=str(ids["quiet"]), details={}))  # the week before: not new
    return ids


def test_periods():
    assert (WEEK.start, WEEK.end) == (datetime(2026, 11, 23, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC))
    assert WEEK.label == "2026-W48" and WEEK.previous.label == "2026-W47"
    assert last_full_week(NOW) == WEEK
    assert week_ending("2026-11-29", NOW) == WEEK == week_ending(None, NOW)
    with pytest.raises(ValueError, match="has not ended"):
        week_ending(date(2026, 11, 30), NOW)
    with pytest.raises(ValueError, match="not a date"):
        week_ending("next week", NOW)


def test_every_figure_against_the_hand_computed_data_set():
    ids = build()
    with session_scope() as s:
        figures = weekly_figures(s, WEEK, "USD")
    rows = {r.partner_id: r for r in figures.rows}
    assert ids["applicant"] not in rows  # not yet a partner who performs
    assert set(rows) == {ids[k] for k in ("alpha", "coupon", "refunded", "quiet", "dormant", "formula")}

    alpha = rows[ids["alpha"]].week
    assert (alpha.clicks, alpha.conversions, alpha.sales) == (10, 4, 3)  # bots apart; the lead is a conversion
    assert alpha.revenue_minor == 10000 + 5500 + 2400  # each EUR sale at the rate of its own day
    assert (alpha.refunded_sales, alpha.refunded_minor, alpha.net_revenue_minor) == (1, 3000, 14900)
    assert alpha.commission_minor == 1000 + 550 + 240 - 300
    assert alpha.conversion_rate == Decimal("0.4")
    assert alpha.refund_rate == Decimal("0.3333")
    assert alpha.epc_minor == 14900  # 1490 earned over 10 clicks: 149.00 per 100 clicks
    assert alpha.aov_minor == 5967  # 17900 / 3 = 5966.67
    before = rows[ids["alpha"]].before
    assert (before.clicks, before.conversions, before.revenue_minor, before.commission_minor) == (4, 1, 4000, 400)

    coupon = rows[ids["coupon"]].week  # zero clicks: no rate, no EPC, rather than a division by zero
    assert (coupon.clicks, coupon.conversions, coupon.revenue_minor) == (0, 1, 3125)  # GBP via the inverse rate
    assert coupon.commission_minor == 312  # 312.5 rounded half to even
    assert coupon.conversion_rate is None and coupon.epc_minor is None and coupon.aov_minor == 3125

    refunded = rows[ids["refunded"]].week
    assert (refunded.sales, refunded.refunded_sales, refunded.refund_rate) == (2, 2, Decimal(1))
    assert (refunded.revenue_minor, refunded.net_revenue_minor, refunded.commission_minor) == (2000, 0, 0)
    assert refunded.epc_minor == 0 and refunded.conversion_rate == Decimal("0.4")

    quiet = rows[ids["quiet"]].week
    assert (quiet.clicks, quiet.conversions, quiet.revenue_minor, quiet.refund_rate, quiet.aov_minor) == (
        0, 0, 0, None, None)

    total = figures.totals(1)
    assert (total.clicks, total.conversions, total.sales, total.refunded_sales) == (15, 7, 6, 3)
    assert (total.revenue_minor, total.net_revenue_minor, total.commission_minor) == (23025, 18025, 1802)
    assert figures.newly_dormant == [{"partner_id": ids["dormant"], "name": "Gone Quiet",
                                      "dormant_since": at(26), "quiet_since": "2026-09-20T00:00:00+00:00"}]

    top, bottom = ranked(figures, 2)
    assert [r.partner_id for r in top] == [ids["alpha"], ids["coupon"]]
    # Active partners only (the dormant one is listed apart), the weakest first.
    assert [r.partner_id for r in bottom] == [ids["quiet"], ids["formula"]]  # a tie: by partner id


def test_bonus_lines_count_as_commission_in_the_week_they_were_granted():
    ids = build()
    with session_scope() as s:
        for day, amount in ((26, 5000), (18, 700), (10, 999)):  # this week, the week before, before both
            s.add(Commission(conversion_id=None, partner_id=ids["quiet"], amount_minor=amount, currency="EUR",
                             kind="bonus", reason="contest prize", created_at=at(day)))
    with session_scope() as s:
        figures = weekly_figures(s, WEEK, "USD")
    quiet = {r.partner_id: r for r in figures.rows}[ids["quiet"]]
    assert (quiet.week.commission_minor, quiet.week.revenue_minor) == (6000, 0)  # EUR at 1.20 on the 26th
    assert quiet.before.commission_minor == 770  # at 1.10, the rate on or before the 18th
    assert figures.totals(1).commission_minor == 1802 + 6000


def test_a_missing_exchange_rate_stops_the_report_naming_it():
    with session_scope() as s:
        p = Partner(email="x@example.com", legal_name="X", stage=Stage.ACTIVE)
        s.add(p)
        s.flush()
        s.add(Conversion(source="t", external_id="1", partner_id=p.id, amount_minor=100, currency="CHF",
                         occurred_at=at(24)))
    with session_scope() as s, pytest.raises(LookupError, match="CHF/USD on or before 2026-11-24"):
        weekly_figures(s, WEEK, "USD")


def test_reporting_currency_is_a_setting(configure):
    ids = build()
    with session_scope() as s:
        s.add(FxRate(day=date(2026, 11, 1), base="GBP", quote="EUR", rate="1.15"))
    currency = configure(reports_currency="eur").reports.reports_currency
    with session_scope() as s:
        rows = {r.partner_id: r.week for r in weekly_figures(s, WEEK, currency).rows}
    # USD sale through the inverse EUR/USD rate of its day (10000 / 1.10), EUR sales as they are; one rounding.
    assert rows[ids["alpha"]].revenue_minor == 16091
    assert rows[ids["coupon"]].revenue_minor == 2875
    with pytest.raises(ConfigError, match="PARTNERFLOW_REPORTS_CURRENCY"):
        check_settings(configure(reports_currency="euro"))


def test_formula_cells_are_neutralised():
    assert [neutralise(v) for v in ("=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx", "plain", 5, -5, None)] == [
        "'=1+1", "'+1", "'-2", "'@SUM(A1)", "'\tx", "'\rx", "plain", 5, -5, None]


def test_the_flow_writes_artifacts_and_exports(configure, tmp_path):
    ids = build()
    configure(reports_export_dir=tmp_path / "reports", reports_top_n=2)
    result = weekly_program_report(period_end=date(2026, 11, 29))
    folder = tmp_path / "reports" / "2026-W48"
    assert result["week"] == "2026-W48" and result["revenue_minor"] == 23025 and result["newly_dormant"] == 1

    with (folder / "program-report-2026-W48.csv").open(newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 6
    alpha = next(r for r in table if r["partner_id"] == str(ids["alpha"]))
    assert (alpha["revenue_USD"], alpha["commission_USD"], alpha["epc_USD"], alpha["refund_rate"]) == (
        "179.00", "14.90", "149.00", "0.3333")
    assert alpha["previous_revenue"] == "40.00"
    assert next(r for r in table if r["partner_id"] == str(ids["formula"]))["partner"] == "'=HYPERLINK(\"x\")"
    assert next(r for r in table if r["partner_id"] == str(ids["coupon"]))["conversion_rate"] == ""

    sheet = load_workbook(folder / "program-report-2026-W48.xlsx").active
    cells = {row[0]: row for row in sheet.iter_rows(min_row=2, values_only=True)}
    assert cells[ids["formula"]][1] == "'=HYPERLINK(\"x\")"
    assert Decimal(str(cells[ids["alpha"]][8])) == Decimal("179")
    assert (folder / "revenue-commission-by-week.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    markdown = Artifact.get("program-report").data
    assert "# Program report 2026-W48 (2026-11-23 to 2026-11-29)" in markdown
    assert "| net revenue | 180.25 USD | 40.00 USD | +350.6% |" in markdown
    assert "| conversion rate | 46.7% | 25.0% | +21.7 pp |" in markdown  # a rate moves in points
    assert "Gone Quiet" in markdown and "\\=HYPERLINK" not in markdown.split("## Top")[1].split("## Bottom")[0]
    assert "![Revenue and commission by week](data:image/png;base64," in markdown
    assert str(folder / "program-report-2026-W48.xlsx") in markdown
    table_artifact = Artifact.get("program-report-table")
    assert table_artifact.type == "table"
    assert "Alpha" in table_artifact.data and "Quiet" in table_artifact.data and "Coupon Only" in table_artifact.data


def test_the_weekly_deployment_is_in_the_table():
    spec = next(d for d in DEPLOYMENTS if d.name == "weekly-program-report")
    assert (spec.flow, spec.cron, spec.concurrency_limit, spec.retry_on_crash) == (
        "reports:weekly_program_report", "0 7 * * 1", 1, True)
    built = {d.name: d for d in all_deployments("reports")}["weekly-program-report"]
    assert built.entrypoint == "partnerflow.flows.reports.weekly_program_report"
    assert built.schedules[0].schedule.cron == "0 7 * * 1" and RETRY_ON_CRASH_TAG in built.tags
