"""Benchmark: CSV import and page enrichment of prospects, each against its floor.

    .venv/bin/python bench/discovery.py                        # 10,000 rows, 500 pages
    .venv/bin/python bench/discovery.py --rows 50000 --pages 1000
    .venv/bin/python bench/discovery.py --database-url postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/discovery.py --smoke                # 1,000 rows, 100 pages: does it still run?

Import: `import_file` on a generated CSV (1% bad rows), first as new rows, then again (every row
matched, nothing changed). Floor: csv.reader over the same file plus one bulk INSERT of the same
rows with SQLAlchemy core (no sniffing, normalising, validation or matching).

Enrichment: `enrich_batch` in chunks (fetch with robots.txt, extraction, scoring, DB writes) for pages
served by a local threaded HTTP server, politeness delay 0 (one host). Floor: the same GETs with a
bare httpx.AsyncClient at the same concurrency, bodies discarded.

Targets: import (new and re-import) and enrichment each within 2x of its floor.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import random
import tempfile
import time
from pathlib import Path

from partnerflow.testing.sandbox import sandbox

# Function-local imports: Prefect (under our tasks) reads its settings once, at import, so our modules
# are imported inside the sandbox that sets them.

SETTINGS = {"PARTNERFLOW_DISCOVERY_FETCH_DELAY_SECONDS": "0",
            "PARTNERFLOW_DISCOVERY_ALLOW_PRIVATE_ADDRESSES": "true"}  # the page server is local

PAGE = """<!doctype html><html lang="en"><head><title>{name} | analytics blog</title>
<meta name="description" content="Notes on dashboards, metrics and SaaS tools by {name}."></head><body>
<nav><a href="/contact">Contact</a><a href="https://twitter.com/{slug}">Twitter</a>
<a href="https://www.youtube.com/@{slug}">YouTube</a></nav>
<article>{body}</article><p>This post contains affiliate links.</p>
<a href="https://www.amazon.com/dp/B01?tag={slug}-20">a book</a>
<a href="mailto:hello@{slug}.example">hello@{slug}.example</a></body></html>"""


def write_csv(path: Path, rows: int) -> None:
    rng = random.Random(1)
    topics = ["analytics", "saas", "marketing", "fitness", "travel", "dashboards", "startups"]
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["Name", "Company", "Website URL", "E-mail", "Country", "Tags", "Followers", "Notes"])
        for i in range(rows):
            email = f"person{i}@site{i}.example" if i % 100 else "broken-address"
            out.writerow([f"Person {i}", f"Site {i} Ltd", f"https://www.site{i}.example/blog", email,
                          rng.choice(["US", "GB", "DE", "FR"]), "; ".join(rng.sample(topics, 2)),
                          f"{rng.randint(1, 500)}k", "imported for the benchmark"])


def floor_import(path: Path) -> float:
    from sqlalchemy import delete, insert

    from partnerflow.models import Prospect, get_engine, session_scope, utcnow
    from partnerflow.models.discovery import ProspectStatus

    started = time.perf_counter()
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        next(reader)
        now = utcnow()
        values = [{"name": r[0], "company": r[1], "website": r[2], "email": f"floor-{n}-{r[3]}", "domain": "",
                   "country": r[4], "topics": [], "source": "floor", "status": ProspectStatus.NEW, "score": 0,
                   "score_reasons": [], "enrichment": {}, "extra": {}, "created_at": now, "updated_at": now}
                  for n, r in enumerate(reader)]
    with get_engine().begin() as conn:
        conn.execute(insert(Prospect), values)
    elapsed = time.perf_counter() - started
    with session_scope() as session:
        session.exec(delete(Prospect))
    return elapsed


def bench_import(rows: int) -> None:
    from partnerflow.tasks.discovery.imports import import_file

    path = Path(tempfile.mkdtemp()) / "prospects.csv"
    write_csv(path, rows)
    floor = floor_import(path)
    started = time.perf_counter()
    first = import_file(path, "bench")
    new_time = time.perf_counter() - started
    started = time.perf_counter()
    again = import_file(path, "bench")
    re_time = time.perf_counter() - started
    assert first["created"] == rows - len(first["errors"]) and again["unchanged"] == first["created"]
    print(f"import   {rows:>7} rows: new {new_time:6.2f}s ({rows / new_time:8.0f} rows/s), "
          f"re-import {re_time:6.2f}s ({rows / re_time:8.0f} rows/s), {len(first['errors'])} bad rows reported")
    print(f"         floor (csv.reader + bulk INSERT) {floor:6.2f}s -> ratio {new_time / floor:.1f}x new, "
          f"ratio {re_time / floor:.1f}x re-import (target <= 2x)")


def start_server(pages: int):
    import threading

    from werkzeug.serving import make_server
    from werkzeug.wrappers import Request, Response

    body = " ".join(["<p>We compare dashboards, KPIs and metrics for product teams.</p>"] * 60)
    cache = {}

    @Request.application
    def app(request):
        if request.path == "/robots.txt":
            return Response("User-agent: *\nDisallow: /admin\n", content_type="text/plain")
        slug = request.path.strip("/") or "home"
        if slug not in cache:
            cache[slug] = PAGE.format(name=slug.title(), slug=slug, body=body).encode()
        return Response(cache[slug], content_type="text/html; charset=utf-8")

    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


async def floor_fetch(urls: list[str], concurrency: int) -> None:
    import httpx

    semaphore = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency)) as client:
        async def one(url):
            async with semaphore:
                assert (await client.get(url)).status_code == 200

        await asyncio.gather(*(one(u) for u in urls))


def bench_enrich(pages: int, chunk: int) -> None:
    from sqlalchemy import delete, insert

    from partnerflow.models import Prospect, get_engine, utcnow
    from partnerflow.models.discovery import ProspectStatus
    from partnerflow.settings import get_settings
    from partnerflow.tasks.discovery.enrichment import enrich_batch, prospects_to_enrich

    server, base = start_server(pages)
    urls = [f"{base}/blogger{i}" for i in range(pages)]
    concurrency = get_settings().discovery.discovery_fetch_concurrency
    asyncio.run(floor_fetch(urls[:20], concurrency))  # warm up the server's threads and page cache
    started = time.perf_counter()
    asyncio.run(floor_fetch(urls, concurrency))
    floor = time.perf_counter() - started

    now = utcnow()
    with get_engine().begin() as conn:
        conn.execute(delete(Prospect))  # the import benchmark's prospects have no real pages
        conn.execute(insert(Prospect), [
            {"name": f"Blogger {i}", "company": "", "website": u, "domain": f"blogger{i}.example", "email": None,
             "country": "US", "topics": ["analytics"], "source": "bench", "status": ProspectStatus.NEW, "score": 0,
             "score_reasons": [], "enrichment": {}, "extra": {}, "created_at": now, "updated_at": now}
            for i, u in enumerate(urls)])
    ids = prospects_to_enrich(None, pages)
    started = time.perf_counter()
    rows = []
    for start in range(0, len(ids), chunk):
        rows.extend(enrich_batch(ids[start:start + chunk]))
    elapsed = time.perf_counter() - started
    server.shutdown()
    failed = sum(1 for r in rows if r["error"])
    reasons = sorted({r["error"] for r in rows if r["error"]})
    print(f"enrich   {pages:>7} pages: {elapsed:6.2f}s ({pages / elapsed:6.0f} pages/s), {failed} failed {reasons}, "
          f"chunks of {chunk}, concurrency {concurrency}")
    print(f"         floor (bare httpx GETs) {floor:6.2f}s -> ratio {elapsed / floor:.1f}x (target <= 2x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--pages", type=int, default=500)
    parser.add_argument("--chunk", type=int, default=100, help="prospects per enrichment task")
    parser.add_argument("--database-url", default=None, help="PostgreSQL server to use (a fresh database)")
    parser.add_argument("--smoke", action="store_true", help="small sizes: a quick check that it runs")
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.pages = 1000, 100
    with sandbox("bench-discovery", database_url=args.database_url, **SETTINGS):
        if args.rows:
            bench_import(args.rows)
        if args.pages:
            bench_enrich(args.pages, args.chunk)


if __name__ == "__main__":
    main()
