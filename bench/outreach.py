"""Benchmark: one outreach step for N prospects through the SendGrid provider against a local server.

    .venv/bin/python bench/outreach.py                  # 10,000 then 100,000 prospects
    .venv/bin/python bench/outreach.py --sizes 10000    # one size
    .venv/bin/python bench/outreach.py --smoke          # 500 prospects: does it still run?

For each size (each in its own process, own temp SQLite and own Prefect test server) it prints
emails/s of the `send-due-outreach` flow, peak memory, Prefect task runs created, and the ratio
to the floor measured in the same run: rendering the same messages with Jinja2 and POSTing the
same SendGrid batches with httpx, no database and no Prefect. Target: within 2x of the floor,
and memory flat from 10,000 to 100,000 (the sender streams batches; nothing loads everything).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from partnerflow.testing.sandbox import sandbox
from partnerflow.testing.sendgrid import FakeSendGrid

ROOT = Path(__file__).resolve().parent.parent


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(size: int) -> dict:
    """One size, in this process: its own sandbox (folder, SQLite, Prefect test server)."""
    settings = {"PARTNERFLOW_EMAIL_PROVIDER": "sendgrid", "PARTNERFLOW_SENDGRID_API_KEY": "SG.bench",
                "PARTNERFLOW_DAILY_SEND_CAP": str(size * 2), "PARTNERFLOW_OUTREACH_BATCH_SIZE": "1000"}
    with sandbox("bench-outreach", **settings), FakeSendGrid(record=False) as server:
        os.environ["PARTNERFLOW_SENDGRID_API_HOST"] = server.url
        return measure(size, server)


def measure(size: int, server: FakeSendGrid) -> dict:
    # Function-local imports: the sandbox sets the environment Prefect and our settings read at import.
    from prefect import get_client
    from prefect.testing.utilities import prefect_test_harness
    from sqlalchemy import insert

    from partnerflow.flows.outreach import send_due_outreach
    from partnerflow.models import Prospect, get_engine
    from partnerflow.settings import reset_settings
    from partnerflow.tasks.outreach.enrollment import enroll
    from partnerflow.tasks.outreach.sequences import load_sequence_files

    reset_settings()
    with get_engine().begin() as conn:  # streamed in chunks, like a real import
        for start in range(0, size, 5000):
            conn.execute(insert(Prospect), [
                Prospect(email=f"p{i}@bench.example", name=f"Pat Bench{i}", company=f"Company {i}",
                         website=f"https://site{i}.example", domain=f"site{i}.example", score=50,
                         source="bench").model_dump(exclude={"id"})  # every column's default, current or future
                for i in range(start, min(size, start + 5000))])

    with prefect_test_harness(server_startup_timeout=120):
        load_sequence_files()
        enroll("partner-recruitment")
        rss_before = rss_mb()
        started = time.perf_counter()
        result = send_due_outreach(limit=size)
        elapsed = time.perf_counter() - started
        rss_after = rss_mb()
        with get_client(sync_client=True) as client:
            task_runs = len(client.read_task_runs(limit=200))  # the API caps a page at 200
    assert result["sent"] == size and server.accepted_messages == size, (result, server.accepted_messages)

    floor = measure_floor(size, server.url)
    return {"size": size, "seconds": round(elapsed, 2), "emails_per_s": round(size / elapsed),
            "floor_seconds": round(floor, 2), "floor_emails_per_s": round(size / floor),
            "ratio_to_floor": round(elapsed / floor, 2), "task_runs": task_runs,
            "peak_rss_mb": round(rss_after), "send_rss_growth_mb": round(rss_after - rss_before)}


def measure_floor(size: int, url: str) -> float:
    """Render the same step for the same prospects with Jinja2 and POST the same batches with httpx."""
    import httpx

    from partnerflow.providers.email import OutgoingEmail
    from partnerflow.providers.email.sendgrid import SendGridProvider
    from partnerflow.settings import get_settings
    from partnerflow.tasks.outreach.sequences import (
        base_context,
        default_root,
        read_sequence_dir,
        render_step,
    )
    from partnerflow.tasks.outreach.unsubscribe import unsubscribe_url

    definition = read_sequence_dir(default_root() / "partner-recruitment")
    provider = SendGridProvider(get_settings().mail)  # only to build identical request bodies
    started = time.perf_counter()
    with httpx.Client(base_url=url, headers={"Authorization": "Bearer SG.bench"}, timeout=30) as client:
        for start in range(0, size, 1000):
            batch = []
            for i in range(start, min(size, start + 1000)):
                prospect = {"id": i, "name": f"Pat Bench{i}", "first_name": "Pat", "email": f"p{i}@bench.example",
                            "company": f"Company {i}", "website": f"https://site{i}.example",
                            "domain": f"site{i}.example", "country": "", "score": 50, "topics": []}
                url_i = unsubscribe_url(i + 1)
                r = render_step(definition, 0, base_context(prospect, unsubscribe_url=url_i))
                batch.append(OutgoingEmail(message_id=i, idempotency_key=f"k{i}", to=prospect["email"],
                                           subject=r.subject, text=r.text, html=r.html,
                                           categories=["outreach", "partner-recruitment"],
                                           headers={"List-Unsubscribe": f"<{url_i}>",
                                                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}))
            for body, _items in provider.build_requests(batch):
                assert client.post("/v3/mail/send", json=body).status_code == 202
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated prospect counts")
    parser.add_argument("--smoke", action="store_true", help="one small size: a quick check that it runs")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: run one size in this process
    args = parser.parse_args()
    if args.smoke:
        args.sizes = "500"
    if args.one:
        print(json.dumps(run_one(args.one)))
        return
    results = []
    for size in [int(s) for s in args.sizes.split(",")]:
        out = subprocess.run([sys.executable, __file__, "--one", str(size)], capture_output=True, text=True, cwd=ROOT)
        if out.returncode != 0:
            sys.exit(f"size {size} failed:\n{out.stderr[-3000:]}")
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(f"{r['size']:>7} prospects: {r['seconds']:>7}s  {r['emails_per_s']:>6} emails/s | floor "
              f"{r['floor_seconds']}s ({r['floor_emails_per_s']} emails/s) | ratio {r['ratio_to_floor']:.1f}x "
              f"(target <= 2x) | Prefect task runs {r['task_runs']} | peak RSS {r['peak_rss_mb']} MB, "
              f"growth during send {r['send_rss_growth_mb']} MB", flush=True)
    if len(results) > 1:
        first, last = results[0], results[-1]
        print(f"memory: peak RSS {first['peak_rss_mb']} MB at {first['size']} vs {last['peak_rss_mb']} MB at "
              f"{last['size']} ({last['peak_rss_mb'] / first['peak_rss_mb']:.2f}x for "
              f"{last['size'] / first['size']:.0f}x the prospects)")


if __name__ == "__main__":
    main()
