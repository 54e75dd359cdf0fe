"""Benchmark: the weekly program report over N conversions, P partners and C clicks.

Prints, per database: the report's wall time (every partner's figures for the week and the one before,
converted into the reporting currency with dated rates; the CSV and XLSX exports; the weekly revenue and
commission chart; the recruitment funnel with its medians; the Markdown summary), its peak memory, and
the ratio to the floor measured in the same run: the same aggregates as bare SQL, one query each, fetched
and nothing else. The report runs its tasks' functions in this process (a served run adds three task runs).

    .venv/bin/python bench/reports.py                      # 0.1x (100k conversions, 1k partners, 500k clicks)
    .venv/bin/python bench/reports.py --smoke              # tiny, SQLite: does it still run?
    .venv/bin/python bench/reports.py --scales 1 --db sqlite,postgres   # 1M conversions, 10k partners, 5M clicks

Data: four weeks of conversions (80 % USD, 15 % EUR, 5 % GBP with daily rates, GBP only as USD/GBP),
3 % of sales refunded, one commission per conversion, 5 % bot clicks, and a recruitment history (5 prospects
per partner, enrollments, sent and opened mail, applications, contracts). Bulk-loaded with executemany on
SQLite and COPY on PostgreSQL. Each database runs in its own process (its own peak memory) on a fresh
database whose schema the migrations build (partnerflow.testing.sandbox).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta

from partnerflow.testing.sandbox import sandbox

# Function-local imports: our modules read their settings once, so they are imported inside the sandbox.

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
WEEK_START = datetime(2026, 11, 23, tzinfo=UTC)  # the reported week: 2026-W48
FIRST = WEEK_START - timedelta(days=21)  # data covers four weeks
NOW = datetime(2026, 11, 30, 7, tzinfo=UTC)


def one(db: str, conversions: int, partners: int, clicks: int) -> dict:
    """Load the data here, then measure in a child process on the same database: its peak memory is the
    report's, not the bulk load's."""
    with sandbox("bench-reports", database_url=PG_URL if db == "postgres" else None):
        load(db, conversions, partners, clicks)
        from partnerflow.models import get_engine

        get_engine().dispose()
        out = subprocess.run([sys.executable, __file__, "--measure", db], capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(out.stderr[-3000:])
        result = json.loads(out.stdout.strip().splitlines()[-1])
        return result | {"conversions": conversions, "partners": partners, "clicks": clicks}


def _stamp(db: str, when: datetime):
    """A timestamp as each database stores it (SQLite: naive UTC text, as SQLAlchemy writes it)."""
    return when.strftime("%Y-%m-%d %H:%M:%S.%f") if db == "sqlite" else when


def bulk(db: str, table: str, columns: tuple[str, ...], rows) -> None:
    from partnerflow.models import get_engine

    raw = get_engine().raw_connection()
    try:
        cur = raw.cursor()
        if db == "postgres":
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" for _ in columns)
            batch = []
            for row in rows:
                batch.append(row)
                if len(batch) >= 50_000:
                    cur.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", batch)
                    batch.clear()
            if batch:
                cur.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", batch)
        raw.commit()
    finally:
        raw.close()


def load(db: str, conversions: int, partners: int, clicks: int) -> None:
    from sqlalchemy import text

    from partnerflow.models import get_engine

    rnd = random.Random(13)
    span = int((NOW - FIRST).total_seconds()) - 7 * 3600 - 1
    ts = lambda: _stamp(db, FIRST + timedelta(seconds=rnd.randint(0, span)))  # noqa: E731
    t0 = _stamp(db, FIRST - timedelta(days=30))
    prospects = partners * 5
    bulk(db, "prospect", ("id", "email", "name", "company", "website", "domain", "country", "topics", "source",
                          "status", "score", "score_reasons", "enrichment", "extra", "created_at", "updated_at"),
         ((i, f"x{i}@bench.example", "", "", "", "", "", "[]", f"list-{i % 4}.csv", "new", 0, "[]", "{}", "{}",
           t0, t0) for i in range(1, prospects + 1)))
    bulk(db, "sequence", ("id", "name", "version", "definition_hash", "definition", "created_at"),
         [(1, "intro", 1, "h1", "{}", t0), (2, "creators", 1, "h2", "{}", t0)])
    enrolled = int(prospects * 0.8)
    stops = ["reply", "signup", None, None, "bounce"]
    bulk(db, "enrollment", ("id", "prospect_id", "sequence_id", "sequence_name", "email", "current_step", "status",
                            "stop_reason", "created_at", "updated_at"),
         ((i, i, 1 + i % 2, ("intro", "creators")[i % 2], f"x{i}@bench.example", 1, "stopped",
           stops[i % 5], t0, _stamp(db, FIRST - timedelta(days=20, hours=i % 50))) for i in range(1, enrolled + 1)))
    bulk(db, "message", ("id", "idempotency_key", "kind", "to_email", "subject", "prospect_id", "status", "attempts",
                         "created_at", "sent_at", "enrollment_id", "step", "opened_at"),
         ((i, f"outreach:{i}:0", "outreach", f"x{i}@bench.example", "", i, "sent", 1, t0,
           _stamp(db, FIRST - timedelta(days=29, hours=i % 24)), i, 0,
           _stamp(db, FIRST - timedelta(days=28, hours=i % 30)) if i % 3 else None) for i in range(1, enrolled + 1)))
    bulk(db, "partner", ("id", "email", "legal_name", "contact_name", "country", "website", "domain", "partner_type",
                         "stage", "tier", "commission_terms", "payout_currency", "payout_threshold_minor",
                         "tax_form_status", "prospect_id", "created_at", "updated_at"),
         ((i, f"p{i}@bench.example", f"Partner {i}", "", "", "", "", "affiliate", "active", "standard", "{}", "USD",
           1000, "received", i * 5, t0, t0) for i in range(1, partners + 1)))
    bulk(db, "application", ("partner_id", "email", "legal_name", "contact_name", "country", "website", "domain",
                             "channels", "partner_type", "promotional_methods", "tax_status", "agreed_to_terms",
                             "status", "screening", "created_at", "decided_at"),
         ((i, f"p{i}@bench.example", f"Partner {i}", "", "", "", "", "[]", "affiliate", "[]", "", True, "approved",
           "{}", _stamp(db, FIRST - timedelta(days=15)), _stamp(db, FIRST - timedelta(days=14, hours=i % 40)))
          for i in range(1, partners + 1)))
    bulk(db, "contract", ("partner_id", "version", "template_name", "template_sha256", "document_path",
                          "document_sha256", "commission_terms", "status", "created_at", "signed_at"),
         ((i, 1, "t", "x", "d", "y", "{}", "signed", t0, _stamp(db, FIRST - timedelta(days=10, hours=i % 60)))
          for i in range(1, partners + 1)))
    day, rates = FIRST.date() - timedelta(days=7), []
    while day <= NOW.date():
        rates += [(day, "EUR", "USD", str(1 + rnd.randint(500, 1500) / 10000)),  # text from an int: exact
                  (day, "USD", "GBP", str(rnd.randint(7000, 8500) / 10000))]
        day += timedelta(days=1)
    bulk(db, "fx_rate", ("day", "base", "quote", "rate"),
         [(d.isoformat() if db == "sqlite" else d, b, q, r) for d, b, q, r in rates])
    bulk(db, "click", ("click_id", "partner_id", "tracking_code", "clicked_at", "landing_url", "is_bot"),
         ((f"k{i}", rnd.randint(1, partners), "t", ts(), "u", rnd.random() < 0.05) for i in range(clicks)))
    refunds = conversions * 3 // 100
    sales = conversions - refunds
    cur_of = ["USD"] * 16 + ["EUR"] * 3 + ["GBP"]
    sale_rows = [(i, "bench", f"o{i}", "sale", rnd.randint(1, partners), rnd.randint(100, 100_000),
                  cur_of[i % 20], ts()) for i in range(1, sales + 1)]
    refund_rows = []
    for n, original in enumerate(rnd.sample(sale_rows, refunds)):
        amount = 0 if n % 2 else original[5] // 3
        refund_rows.append((sales + n + 1, "bench", f"r{n}", "refund", original[4], amount, original[6], original[7],
                            original[0]))
    columns = ("id", "source", "external_id", "kind", "partner_id", "amount_minor", "currency", "occurred_at")
    bulk(db, "conversion", (*columns, "created_at"), (r + (t0,) for r in sale_rows))
    bulk(db, "conversion", (*columns, "reverses_id", "created_at"), (r + (t0,) for r in refund_rows))
    bulk(db, "commission", ("conversion_id", "partner_id", "amount_minor", "currency", "rule", "period", "status",
                            "created_at"),
         [(r[0], r[4], r[5] // 10, r[6], "", "", "pending", t0) for r in sale_rows]
         + [(r[0], r[4], -(r[5] // 10), r[6], "", "", "pending", t0) for r in refund_rows if r[5]])
    if db == "postgres":
        with get_engine().connect() as conn:
            for table in ("prospect", "enrollment", "message", "partner", "click", "conversion", "commission",
                          "fx_rate", "application", "contract"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                  f"(SELECT COALESCE(MAX(id), 1) FROM {table}))"))
            conn.commit()
        with get_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    else:
        with get_engine().connect() as conn:
            conn.exec_driver_sql("ANALYZE")


def floor_queries(db: str) -> list[tuple[str, dict]]:
    """The report's aggregates as bare SQL, one query each."""
    from partnerflow.tasks.reports import funnel

    day = "date(timezone('UTC', {c}))" if db == "postgres" else "date({c})"
    p = {"prev": _stamp(db, WEEK_START - timedelta(days=7)), "start": _stamp(db, WEEK_START),
         "end": _stamp(db, WEEK_START + timedelta(days=7)), "first": _stamp(db, WEEK_START - timedelta(weeks=11)),
         "usd": "USD"}
    window = "{c} >= :prev AND {c} < :end"
    week = "CASE WHEN {c} >= :start THEN 1 ELSE 0 END"
    foreign_day = "CASE WHEN {cur} = :usd THEN NULL ELSE " + day + " END"
    v = {"c": "occurred_at", "cur": "currency"}
    bot = "is_bot = false" if db == "postgres" else "is_bot = 0"
    s = {"c": "s.occurred_at", "cur": "s.currency"}
    return [
        (f"SELECT partner_id, {week.format(c='clicked_at')} AS w, COUNT(*) FROM click "
         f"WHERE {window.format(c='clicked_at')} AND {bot} GROUP BY partner_id, w", p),
        (f"SELECT partner_id, {week.format(**v)} AS w, currency, {foreign_day.format(**v)} AS d, COUNT(*), "
         "SUM(CASE WHEN kind IN ('sale', 'recurring') THEN 1 ELSE 0 END), "
         "SUM(CASE WHEN kind IN ('sale', 'recurring') THEN amount_minor ELSE 0 END) FROM conversion "
         f"WHERE {window.format(**v)} AND partner_id IS NOT NULL AND kind IN ('sale', 'recurring', 'lead', 'signup') "
         "GROUP BY partner_id, w, currency, d", p),
        (f"SELECT partner_id, {week.format(c='occurred_at')} AS w, currency, {foreign_day.format(**v)} AS d, "
         "COUNT(*), SUM(CASE WHEN smallest = 0 OR total >= amount_minor THEN amount_minor ELSE total END) FROM ("
         "SELECT s.id, s.partner_id, s.occurred_at, s.currency, s.amount_minor, MIN(r.amount_minor) AS smallest, "
         "SUM(r.amount_minor) AS total FROM conversion r JOIN conversion s ON s.id = r.reverses_id "
         "WHERE r.kind IN ('refund', 'chargeback', 'reversal') AND s.kind IN ('sale', 'recurring') "
         f"AND {window.format(**s)} AND s.partner_id IS NOT NULL "
         "GROUP BY s.id, s.partner_id, s.occurred_at, s.currency, s.amount_minor) x "
         "GROUP BY partner_id, w, currency, d", p),
        (f"SELECT c.partner_id, {week.format(c='v.occurred_at')} AS w, c.currency, "
         f"{foreign_day.format(c='v.occurred_at', cur='c.currency')} AS d, COUNT(*), SUM(c.amount_minor) "
         "FROM commission c JOIN conversion v ON v.id = c.conversion_id "
         f"WHERE {window.format(c='v.occurred_at')} AND c.status != 'cancelled' "
         "GROUP BY c.partner_id, w, c.currency, d", p),
        (f"SELECT currency, {day.format(c='occurred_at')} AS d, SUM(amount_minor) FROM conversion "
         "WHERE occurred_at >= :first AND occurred_at < :end AND partner_id IS NOT NULL "
         "AND kind IN ('sale', 'recurring') GROUP BY currency, d", p),
        (f"SELECT c.currency, {day.format(c='v.occurred_at')} AS d, SUM(c.amount_minor) FROM commission c "
         "JOIN conversion v ON v.id = c.conversion_id WHERE v.occurred_at >= :first AND v.occurred_at < :end "
         "AND c.status != 'cancelled' GROUP BY c.currency, d", p),
        (funnel.counts_sql(), funnel.params()),
        (funnel.medians_sql("postgresql" if db == "postgres" else "sqlite", True), funnel.params()),
        (funnel.medians_sql("postgresql" if db == "postgres" else "sqlite", False), funnel.params()),
    ]


def measure(db: str) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import text

    from partnerflow.models import get_engine
    from partnerflow.tasks.reports.summary import markdown, table_rows
    from partnerflow.tasks.reports.weekly import chart_links, funnel, money_chart, partner_figures, plan

    def floor() -> float:
        f0 = time.perf_counter()
        with get_engine().connect() as conn:
            for sql, params in floor_queries(db):
                conn.execute(text(sql), params).all()
        return time.perf_counter() - f0

    def timed(fn, *args):
        c0 = time.perf_counter()
        return fn(*args), time.perf_counter() - c0

    def report() -> tuple[float, dict, object, str]:
        # As the flow runs them: its three tasks at once (Prefect's default thread pool task runner).
        w0 = time.perf_counter()
        p = plan(date(2026, 11, 29), now=NOW)
        with ThreadPoolExecutor(3) as pool:
            parts = [pool.submit(timed, fn, p) for fn in (partner_figures.fn, money_chart.fn, funnel.fn)]
            (summary, t1), (chart, t2), ((funnel_rows, files), t3) = [f.result() for f in parts]
        links = chart_links({"Revenue and commission by week": chart, "Recruitment funnel": files["funnel chart"]},
                            p.folder)
        text_md, rows = markdown(summary, funnel_rows, links), table_rows(summary)
        assert summary.partners > 0 and summary.week.revenue_minor > 0 and len(rows) > 1 and "## Charts" in text_md
        steps = {"partners+exports": round(t1, 2), "weekly chart": round(t2, 2), "funnel": round(t3, 2)}
        return time.perf_counter() - w0, steps, summary, text_md

    floor()  # warm the caches for both sides alike
    floors, reports = [], []
    for _ in range(2):  # the machine is shared: the better of two runs of each side
        floors.append(floor())
        reports.append(report())
    floor_s = min(floors)
    wall, steps, summary, _ = min(reports, key=lambda r: r[0])
    return {"db": db, "wall_s": round(wall, 2), "steps_s": steps, "floor_s": round(floor_s, 3),
            "ratio_to_floor": round(wall / floor_s, 1), "report_partners": summary.partners,
            "week_revenue_minor": summary.week.revenue_minor,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}  # report only


def spawn(db: str, conversions: int, partners: int, clicks: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", db, "--conversions", str(conversions),
                          "--partners", str(partners), "--clicks", str(clicks)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversions", type=int, default=1_000_000, help="conversions at scale 1")
    parser.add_argument("--partners", type=int, default=10_000, help="partners at scale 1")
    parser.add_argument("--clicks", type=int, default=5_000_000, help="clicks at scale 1")
    parser.add_argument("--scales", default="0.1", help="comma-separated multiples of the sizes, e.g. 0.1,1")
    parser.add_argument("--db", default="sqlite", help="sqlite, postgres, or both: sqlite,postgres")
    parser.add_argument("--smoke", action="store_true", help="small sizes, SQLite: a quick check that it runs")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:  # the environment (database, folders) is the parent's sandbox
        print(json.dumps(measure(args.measure)))
        return
    if args.smoke:
        args.conversions, args.partners, args.clicks, args.scales, args.db = 5_000, 50, 20_000, "1", "sqlite"
    if args.one:
        print(json.dumps(one(args.one, args.conversions, args.partners, args.clicks)))
        return
    for db in args.db.split(","):
        for scale in args.scales.split(","):
            factor = float(scale)  # a CLI size multiplier, not money
            r = spawn(db.strip(), int(args.conversions * factor), max(1, int(args.partners * factor)),
                      int(args.clicks * factor))
            print(f"{r['db']:8} x{scale:<4} {r['conversions']:>9} conversions {r['partners']:>6} partners "
                  f"{r['clicks']:>9} clicks | report {r['wall_s']:>6.2f} s  floor {r['floor_s']:>6.3f} s  "
                  f"ratio {r['ratio_to_floor']:.1f}x  peak {r['peak_rss_mb']:>7.1f} MB | {r['steps_s']}", flush=True)


if __name__ == "__main__":
    main()
