"""Benchmark: N conversions across P partners -> commissions -> one payout batch (ledger rail).

Prints, per database and scale: wall time of the pipeline (compute commissions, build the batch,
approve, pay every partner through the ledger rail), peak memory of the process, and the ratio to
the floor measured in the same run: one SQL aggregate (GROUP BY partner) over the same conversions.

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
    with sandbox("bench-payouts", database_url=PG_URL if db == "postgres" else None):
        return measure(db, conversions, partners, remit)


def measure(db: str, conversions: int, partners: int, remit: bool) -> dict:
    # Function-local imports: the sandbox sets the environment Prefect and our settings read at import.
    from sqlalchemy import func, insert, select, text

    from partnerflow.models import Commission, Contract, Conversion, Partner, Payout, get_engine, session_scope
    from partnerflow.models.contracting import ContractStatus
    from partnerflow.models.onboarding import TaxFormStatus
    from partnerflow.models.partners import PartnerType, Stage
    from partnerflow.models.payouts import ConversionKind, LedgerTransfer
    from partnerflow.tasks.payouts.batches import build_batch, decide_batch
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

    # The floor: one aggregate over the same table.
    f0 = time.perf_counter()
    with session_scope() as s:
        rows = s.execute(select(Conversion.partner_id, func.sum(Conversion.amount_minor))
                         .group_by(Conversion.partner_id)).all()
    floor = time.perf_counter() - f0
    assert len(rows) <= partners

    period_end = t0 + timedelta(days=70)
    steps = {}
    w0 = time.perf_counter()
    c0 = time.perf_counter()
    stats = compute_commissions(now=period_end)
    steps["compute"] = time.perf_counter() - c0
    c0 = time.perf_counter()
    batch_id = build_batch(period_end)
    decide_batch(batch_id, approve=True, actor="bench")
    steps["build+approve"] = time.perf_counter() - c0
    c0 = time.perf_counter()
    paid = execute_batch(batch_id)
    steps["pay"] = time.perf_counter() - c0
    if remit:
        c0 = time.perf_counter()
        send_remittances(batch_id)
        steps["remit"] = time.perf_counter() - c0
    wall = time.perf_counter() - w0

    with session_scope() as s:
        ledger = s.execute(select(func.count(), func.sum(LedgerTransfer.amount_minor))).one()
        payout_total = s.execute(select(func.sum(Payout.amount_minor))).scalar()
        commission_total = s.execute(select(func.sum(Commission.amount_minor))).scalar()
    assert ledger[1] == payout_total == commission_total, (ledger, payout_total, commission_total)
    return {"db": db, "conversions": conversions, "partners": partners, "commissions": stats.get("created"),
            "payouts_paid": paid.get("paid", 0), "ledger_transfers": ledger[0], "wall_s": round(wall, 2),
            "steps_s": {k: round(v, 2) for k, v in steps.items()}, "floor_s": round(floor, 3),
            "ratio_to_floor": round(wall / floor, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


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
    if len(results) > 1:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
