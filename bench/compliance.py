"""Benchmark: compliance page checks against the fetch floor, and sanctions screening throughput.

    .venv/bin/python bench/compliance.py                          # 2,000 pages; 100,000 names vs 15,000 entries
    .venv/bin/python bench/compliance.py --pages 500 --names 20000 --entries 15000 --growth 1000,5000,15000,30000
    .venv/bin/python bench/compliance.py --skip-pages             # sanctions only
    .venv/bin/python bench/compliance.py --smoke                  # small sizes: does it still run?

Pages: 2,000 partner pages (about 12 KB each; with, without and footer-only disclosures and some
claims) served by a threaded HTTP server in a separate process. Ours: `fetch_and_analyse` — `fetch_pages`
(robots.txt, redirect and size limits, decoding) at concurrency --concurrency, each page's disclosure and
brand-rule analysis run as soon as it is read while the others download (what the `check_pages` task
does before it writes findings). Floor: the same
GETs with a bare httpx.AsyncClient at the same concurrency, bodies read and discarded.
Target: within 1.5x of the floor.

Sanctions: a generated list of --entries entries (70% "LAST, First [Middle]" people, 30% firms, with
common first names) and --names generated partner names sharing first names and some surnames with it.
Screening runs in --workers processes (forked; the list is built once). Target: 100,000 names in
under 60 s on 2 cores. Floor: each name normalised and looked up exactly in the normalised list (no
fuzzy matching). --growth prints names/s for several list sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import sys
import time
from types import SimpleNamespace

from partnerflow.testing.sandbox import sandbox

# Function-local imports: Prefect (under our tasks) reads its settings once, at import, so our modules
# are imported inside the sandbox that sets them; the page server's process needs none of them.

LINK = "<a href='https://acme.example/signup?ref=PF{i}'>try Acme</a>"
PARA = "<p>Dashboards, metrics and notes on running a small analytics team, week {n} of the series.</p>"


def page_body(i: int) -> str:
    filler = "".join(PARA.format(n=n) for n in range(120))
    variant = i % 4
    top = "<p>This post contains affiliate links; I earn a commission.</p>" if variant == 0 else ""
    claim = "<p>You can earn $3,000 per month with it.</p>" if variant == 3 else ""
    footer = "<footer>Disclosure: affiliate link.</footer>" if variant == 2 else "<footer>(c) me</footer>"
    return (f"<!doctype html><html lang='en'><head><title>Review {i}</title></head><body><h1>Review {i}</h1>"
            f"{top}<p>I use it daily: {LINK.format(i=i)}</p>{claim}{filler}{footer}</body></html>")


def serve(port_queue) -> None:
    import logging

    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from werkzeug.wrappers import Request, Response

    @Request.application
    def app(request):
        if request.path == "/robots.txt":
            return Response("User-agent: *\nAllow: /\n", content_type="text/plain")
        i = int(request.path.strip("/").split("-")[-1] or 0)
        return Response(page_body(i), content_type="text/html; charset=utf-8")

    server = make_server("127.0.0.1", 0, app, threaded=True)
    port_queue.put(server.server_port)
    server.serve_forever()


async def floor_fetch(urls: list[str], concurrency: int) -> int:
    import httpx

    sem = asyncio.Semaphore(concurrency)
    total = 0
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency)) as client:
        async def one(url):
            nonlocal total
            async with sem:
                r = await client.get(url)
                total += len(r.content)
        await asyncio.gather(*(one(u) for u in urls))
    return total


def bench_pages(n: int, concurrency: int) -> None:
    from partnerflow.models import Partner
    from partnerflow.tasks.compliance.brand_rules import compile_rules
    from partnerflow.tasks.compliance.pages import analyse_page, fetch_and_analyse
    from partnerflow.tasks.compliance.policy import load_policy
    from partnerflow.tasks.shared.webfetch import fetch_pages

    queue = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=serve, args=(queue,), daemon=True)
    proc.start()
    base = f"http://127.0.0.1:{queue.get(timeout=30)}"
    urls = [f"{base}/page-{i}" for i in range(n)]
    try:
        asyncio.run(floor_fetch(urls[:50], concurrency))  # warm up
        t = time.perf_counter()
        size = asyncio.run(floor_fetch(urls, concurrency))
        floor = time.perf_counter() - t

        policy = load_policy()
        rules = compile_rules(policy)
        partners = [Partner(id=i + 1, email=f"p{i}@x.example", legal_name=f"P {i}", tracking_code=f"PF{i}",
                            coupon_code=f"C{i}") for i in range(n)]
        pages = [SimpleNamespace(url=u, partner_id=i + 1) for i, u in enumerate(urls)]
        options = {"concurrency": concurrency, "per_domain_delay": 0, "timeout": 30, "max_bytes": 3_000_000,
                   "allow_private": True}  # the pages are served on 127.0.0.1
        t = time.perf_counter()
        results = fetch_pages(urls, **options)
        fetched = time.perf_counter() - t
        t = time.perf_counter()
        analysed = fetch_and_analyse(
            pages, lambda page, result: analyse_page(result, partners[page.partner_id - 1], policy, rules), **options)
        ours = time.perf_counter() - t
        findings = sum(len(found) for _, _, found in analysed)
        results = [r for _, r, _ in analysed]
    finally:
        proc.kill()
    ok = sum(1 for r in results if r.ok)
    print(f"pages: {n} pages ({size / n / 1024:.1f} KB each), concurrency {concurrency}, per-domain delay 0")
    print(f"  floor (httpx alone):        {floor:6.2f} s  {n / floor:8.0f} pages/s")
    print(f"  ours fetch only:            {fetched:6.2f} s  {n / fetched:8.0f} pages/s")
    print(f"  ours fetch + checks:        {ours:6.2f} s  {n / ours:8.0f} pages/s  ({ok} read, {findings} findings)")
    print(f"  ratio {ours / floor:.1f}x to the floor (target <= 1.5x)")


# --- sanctions -----------------------------------------------------------------------------------

FIRST = ("Mohammed Ali Ahmed Hassan Ivan Sergei Olga Maria Jose Juan Carlos Li Wei Kim Min Anna John David Omar "
         "Yusuf Fatima Elena Dmitri Viktor Alexei Hamid Reza Abdul Karim Nikolai Pavel").split()
C = "b c d f g h j k l m n p r s t v w y z br ch sh kh th st tr gr dr".split()
V = "a e i o u ai ei ou ia".split()


def make_names(entries: int, names: int, seed: int = 7):
    rng = random.Random(seed)

    def word():
        return "".join(rng.choice(C) + rng.choice(V) for _ in range(rng.randint(2, 3))) + rng.choice("  nrsvmd").strip()

    firsts = FIRST + [word().capitalize() for _ in range(1500)]
    lasts = [word().capitalize() for _ in range(20000)]

    def first():
        return rng.choice(FIRST) if rng.random() < 0.3 else rng.choice(firsts)

    listed = []
    for _ in range(entries):
        if rng.random() < 0.7:
            listed.append(f"{rng.choice(lasts).upper()}, {first()}" + (f" {first()}" if rng.random() < 0.4 else ""))
        else:
            listed.append(f"{word().upper()} {word().upper()} TRADING LLC")
    queries = [f"{first()} {rng.choice(lasts)}" for _ in range(names)]
    for k in range(0, names, 1000):  # plant a few real hits: reordered, lower-case listed names
        queries[k] = " ".join(reversed(listed[k % entries].replace(",", "").split())).lower()
    return listed, queries


_LIST = None


def _screen_chunk(chunk: list[str]) -> int:
    from partnerflow.tasks.compliance.sanctions_match import screen

    return sum(1 for q in chunk if screen(q, None, _LIST))


def screen_all(sdn, queries: list[str], workers: int) -> tuple[float, int]:
    global _LIST
    _LIST = sdn
    t = time.perf_counter()
    if workers <= 1:
        hits = _screen_chunk(queries)
    else:
        size = max(1, len(queries) // (workers * 8))
        chunks = [queries[i:i + size] for i in range(0, len(queries), size)]
        with mp.get_context("fork").Pool(workers) as pool:  # forked: the list is shared, not pickled
            hits = sum(pool.map(_screen_chunk, chunks))
    return time.perf_counter() - t, hits


def _normalised(name: str) -> str:
    from unidecode import unidecode  # the transliteration screening uses too

    return " ".join(sorted(unidecode(name).lower().replace(",", " ").split()))


def exact_lookup_floor(listed: list[str], queries: list[str]) -> float:
    """Seconds to normalise every name and look it up exactly: the work no screening can skip."""
    t = time.perf_counter()
    known = {_normalised(n) for n in listed}
    sum(1 for q in queries if _normalised(q) in known)
    return time.perf_counter() - t


def bench_sanctions(entries: int, names: int, workers: int, growth: list[int]) -> None:
    from partnerflow.tasks.compliance.sanctions_match import SdnEntry, SdnList

    def build(listed):
        t = time.perf_counter()
        sdn = SdnList([SdnEntry(i, n, "individual") for i, n in enumerate(listed)], checksum="bench",
                      list_date=None, source="generated")
        return sdn, time.perf_counter() - t

    listed, queries = make_names(entries, names)
    sdn, built = build(listed)
    floor = exact_lookup_floor(listed, queries)
    took, hits = screen_all(sdn, queries, workers)
    print(f"sanctions: {names} names vs {entries} entries, {workers} worker(s)")
    print(f"  list indexed in {built:.2f} s; screened in {took:.1f} s = {names / took:,.0f} names/s; "
          f"{hits} names matched ({names // 1000} planted)")
    print(f"  floor (normalise + exact lookup, 1 worker) {floor:.2f} s = {names / floor:,.0f} names/s; "
          f"ratio {took / floor:.1f}x to the floor; {took / 60:.2f} of the 60 s target")
    if growth:
        sample = queries[:min(len(queries), 20000)]
        print(f"  growth with list size ({len(sample)} names, {workers} worker(s)):")
        for size in growth:
            listed_g, _ = make_names(size, 0)
            sdn_g, _ = build(listed_g)
            took_g, _ = screen_all(sdn_g, sample, workers)
            print(f"    {size:>7} entries: {len(sample) / took_g:10,.0f} names/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--names", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=15_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--growth", default="1000,5000,15000,30000", help="list sizes to compare ('' to skip)")
    parser.add_argument("--skip-pages", action="store_true")
    parser.add_argument("--skip-sanctions", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="small sizes: a quick check that it runs")
    args = parser.parse_args()
    if args.smoke:
        args.pages, args.names, args.entries, args.growth = 100, 2000, 2000, "1000,2000"
    with sandbox("bench-compliance"):
        if not args.skip_pages:
            bench_pages(args.pages, args.concurrency)
        if not args.skip_sanctions:
            bench_sanctions(args.entries, args.names, args.workers,
                            [int(x) for x in args.growth.split(",") if x.strip()])


if __name__ == "__main__":
    sys.exit(main())
