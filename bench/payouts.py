"""Benchmark: N conversions across P partners -> commissions -> one payout batch (ledger rail).

Prints, per database and scale: wall time of the pipeline (compute commissions, build the batch,
approve by policy, pay every partner through the ledger rail; remittance mail measured apart with
--remit), peak memory of the process, and the ratio to the floor measured in the same run on the same
data: the same writes in bare SQL (one INSERT ... SELECT for the commission rows, one aggregate INSERT
for the payouts, one bulk INSERT for the ledger transfers, rolled back). A second reference line gives
the ratio to one GROUP BY over the conversions, and growth between scales is printed as ratios too.
Targets: pipeline <= 3x the floor; 1M conversions / 10k partners < 60 s on PostgreSQL; peak < 1 GB;
wall(1x) <= 12 x wall(0.1x) and wall(3x) <= 3.6 x wall(1x).

    .venv/bin/python bench/payouts.py                      # quick: 0.1x (100k conversions, 1k partners), SQLite
    .venv/bin/python bench/payouts.py --smoke              # 10k conversions, 100 partners: does it still run?
    .venv/bin/python bench/payouts.py --scales 0.1,1 --db sqlite,postgres
    .venv/bin/python bench/payouts.py --conversions 1000000 --partners 10000 --scales 0.1,1,3 --db postgres

Each (database, scale) runs in its own process (so peak memory is its own) on a fresh database whose
schema the migrations build (partnerflow.testing.sandbox).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from partnerflow.testing.sandbox import sandbox

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def one(db: str, conversions: int, partners: int, remit: bool) -> dict:
    """Runs in its own process, in a sandbox with a fresh database."""
    with sandbox("bench-payouts", database_url=PG_URL if db == "postgres" else None,
                 PARTNERFLOW_PAYOUT_APPROVAL_ABOVE_MINOR=str(10**15)):  # policy approves: nobody to wait for
        return measure(db, conversions, partners, remit)


def measure(db: str, conversions: int, partners: int, remit: bool) -> dict:
    # Function-local imports: the sandbox sets the environment Prefect and our settings read at import.
    from sqlalchemy import func, insert, select, text

    from partnerflow.models import Commission, Contract, Conversion, Partner, Payout, get_engine, session_scope
    from partnerflow.models.contracting import ContractStatus
    from partnerflow.models.onboarding import TaxFormStatus
    from partnerflow.models.partners import PartnerType, Stage
    from partnerflow.models.payouts import ConversionKind, LedgerTransfer
    from partnerflow.tasks.payouts.approval import approve_by_policy
    from partnerflow.tasks.payouts.batches import build_batch
    from partnerflow.tasks.payouts.commissions import compute_commissions
    from partnerflow.tasks.payouts.execution import execute_batch
    from partnerflow.tasks.payouts.remittance import send_remittances

    rnd = random.Random(42)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    with session_scope() as s:
        s.execute(insert(Partner), [{
            "email": f"p{i}@bench.example", "legal_name": f"Partner {i}", "tracking_code": f"B{i}",
            "commission_terms": {"kind": "percentage", "rate": str(rnd.choice(["0.05", "0.10", "0.125", "0.2"])),
                                 "lock_days": 30},
            "tax_form_status": TaxFormStatus.RECEIVED, "stage": Stage.ACTIVE, "payout_currency": "USD",
            "payout_threshold_minor": 1000, "partner_type": PartnerType.AFFILIATE, "tier": "standard",
            "created_at": t0, "updated_at": t0} for i in range(1, partners + 1)])
        s.execute(insert(Contract), [{"partner_id": i, "template_name": "b", "template_sha256": "b",
                                      "document_path": "b", "document_sha256": "b", "status": ContractStatus.SIGNED,
                                      "commission_terms": {}, "version": 1, "created_at": t0}
                                     for i in range(1, partners + 1)])
    chunk = 50_000
    for start in range(0, conversions, chunk):
        with session_scope() as s:
            s.execute(insert(Conversion), [{
                "source": "bench", "external_id": f"o{n}", "kind": ConversionKind.SALE,
                "partner_id": rnd.randint(1, partners),
                "amount_minor": rnd.randint(100, 100_000), "currency": "USD",
                "occurred_at": t0 + timedelta(seconds=rnd.randint(0, 28 * 86400)), "created_at": t0,
            } for n in range(start, min(start + chunk, conversions))])
    if db == "postgres":
        with get_engine().begin() as conn:
            conn.execute(text("ANALYZE"))

    # The references, on the same data in the same run: one GROUP BY, and the floor (the same writes in bare SQL).
    f0 = time.perf_counter()
    with session_scope() as s:
        rows = s.execute(select(Conversion.partner_id, func.sum(Conversion.amount_minor))
                         .group_by(Conversion.partner_id)).all()
    group_by = time.perf_counter() - f0
    assert len(rows) <= partners
    floor = bare_sql_floor(get_engine(), db)

    period_end = t0 + timedelta(days=70)
    steps = {}
    w0 = time.perf_counter()
    c0 = time.perf_counter()
    stats = compute_commissions(now=period_end)
    steps["compute"] = time.perf_counter() - c0
    c0 = time.perf_counter()
    batch_id = build_batch(period_end)
    with session_scope() as s:
        payouts = s.execute(select(func.count()).select_from(Payout).where(Payout.batch_id == batch_id)).scalar_one()
    assert approve_by_policy(batch_id, payouts), "the bench's policy limit should approve the batch"
    steps["build+approve"] = time.perf_counter() - c0
    c0 = time.perf_counter()
    paid = execute_batch(batch_id)
    steps["pay"] = time.perf_counter() - c0
    wall = time.perf_counter() - w0
    if remit:  # measured apart: mail is not part of the pipeline's target
        c0 = time.perf_counter()
        send_remittances(batch_id)
        steps["remit (apart)"] = time.perf_counter() - c0

    with session_scope() as s:
        ledger = s.execute(select(func.count(), func.sum(LedgerTransfer.amount_minor))).one()
        payout_total = s.execute(select(func.sum(Payout.amount_minor))).scalar()
        commission_total = s.execute(select(func.sum(Commission.amount_minor))).scalar()
    assert ledger[1] == payout_total == commission_total, (ledger, payout_total, commission_total)
    return {"db": db, "conversions": conversions, "partners": partners, "commissions": stats.get("created"),
            "payouts_paid": paid.get("paid", 0), "ledger_transfers": ledger[0], "wall_s": round(wall, 2),
            "steps_s": {k: round(v, 2) for k, v in steps.items()}, "floor_s": round(floor, 3),
            "group_by_s": round(group_by, 3), "ratio_to_floor": round(wall / floor, 1),
            "ratio_to_group_by": round(wall / group_by, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def bare_sql_floor(engine, db: str) -> float:
    """The same writes as the pipeline in bare SQL, timed, then rolled back: one INSERT ... SELECT for the
    commission rows, one aggregate INSERT for the payouts, one bulk INSERT for the ledger transfers."""
    from sqlalchemy import text

    from partnerflow.tasks.payouts.commissions_sql import period_sql

    payable = "strftime('%Y-%m-%d %H:%M:%f', occurred_at, '+30 days')" if db == "sqlite" \
        else "occurred_at + interval '30 days'"
    now = "CURRENT_TIMESTAMP"
    with engine.connect() as conn:
        transaction = conn.begin()
        f0 = time.perf_counter()
        conn.execute(text(
            "INSERT INTO commission (conversion_id, partner_id, amount_minor, currency, rule, period, status, "
            f"payable_at, created_at, kind) SELECT id, partner_id, amount_minor / 10, currency, '0.1 of sale', "
            f"{period_sql(db, 'occurred_at')}, 'payable', {payable}, {now}, 'conversion' FROM conversion"))
        batch_id = conn.execute(text(
            f"INSERT INTO payout_batch (status, key, period_end, summary, created_at) VALUES ('approved', 'floor', "
            f"{now}, '{{}}', {now}) RETURNING id")).scalar_one()
        conn.execute(text(
            "INSERT INTO payout (batch_id, partner_id, amount_minor, currency, rail, idempotency_key, status, "
            f"attempts, fx_rates, created_at) SELECT {batch_id}, partner_id, SUM(amount_minor), 'USD', 'ledger', "
            f"'floor:' || partner_id, 'paid', 0, '{{}}', {now} FROM commission GROUP BY partner_id"))
        conn.execute(text(
            "INSERT INTO ledger_transfer (idempotency_key, payout_id, partner_id, amount_minor, currency, "
            f"created_at) SELECT idempotency_key, id, partner_id, amount_minor, currency, {now} FROM payout "
            f"WHERE batch_id = {batch_id}"))
        floor = time.perf_counter() - f0
        transaction.rollback()
    if db == "postgres":  # the rolled-back rows leave dead tuples the pipeline should not have to step over
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    return floor


def spawn(db: str, conversions: int, partners: int, remit: bool) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", db, "--conversions", str(conversions),
                          "--partners", str(partners)] + (["--remit"] if remit else []),
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversions", type=int, default=1_000_000, help="conversions at scale 1")
    parser.add_argument("--partners", type=int, default=10_000, help="partners at scale 1")
    parser.add_argument("--scales", default="0.1", help="comma-separated multiples of the sizes, e.g. 0.1,1,3")
    parser.add_argument("--db", default="sqlite", help="sqlite, postgres, or both: sqlite,postgres")
    parser.add_argument("--remit", action="store_true", help="also send a remittance mail per payout (outbox)")
    parser.add_argument("--smoke", action="store_true", help="small sizes, SQLite: a quick check that it runs")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.conversions, args.partners, args.scales, args.db = 10_000, 100, "1", "sqlite"
    if args.one:
        print(json.dumps(one(args.one, args.conversions, args.partners, args.remit)))
        return
    results = []
    for db in args.db.split(","):
        for scale in args.scales.split(","):
            factor = float(scale)  # a CLI size multiplier, not money
            r = spawn(db.strip(), int(args.conversions * factor), max(1, int(args.partners * factor)), args.remit)
            r["scale"] = scale
            results.append(r)
            print(f"{r['db']:8} x{scale:<4} {r['conversions']:>9} conversions {r['partners']:>6} partners | "
                  f"wall {r['wall_s']:>7.2f} s  floor {r['floor_s']:>6.3f} s  ratio {r['ratio_to_floor']:.1f}x  "
                  f"peak {r['peak_rss_mb']:>7.1f} MB | {r['steps_s']} | paid {r['payouts_paid']}", flush=True)
            print(f"{'':8} x{scale:<4} one GROUP BY {r['group_by_s']:.3f} s: ratio {r['ratio_to_group_by']:.1f}x",
                  flush=True)
    for db in args.db.split(","):  # near-linear growth: each scale against the one before it
        walls = [(float(r["scale"]), r["wall_s"]) for r in results if r["db"] == db.strip()]
        for (small, w_small), (big, w_big) in zip(walls, walls[1:], strict=False):
            print(f"{db.strip():8} wall(x{big:g}) / wall(x{small:g}): ratio {w_big / w_small:.1f}x "
                  f"(sizes {big / small:g}x)", flush=True)
    if len(results) > 1:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
