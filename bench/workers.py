"""Benchmark: the compliance page check, one flow run per chunk of partners on a process work pool,
run by one worker and then by two.

    .venv/bin/python bench/workers.py                     # 2,000 pages, 100 partners per chunk run
    .venv/bin/python bench/workers.py --pages 1000 --chunk 50 --worker-limit 2
    .venv/bin/python bench/workers.py --database-url postgresql://postgres@127.0.0.1:5432/test  # both on PostgreSQL
    .venv/bin/python bench/workers.py --smoke             # 20 pages, 10 per chunk

A real `prefect server start` (the stack), the `check-pages-chunk` deployment on a process work pool,
and `prefect worker start --pool` processes (each `--limit --worker-limit`, polling every second).
The pages (about 12 KB each, one per active partner, as in bench/compliance.py) are served by a
threaded HTTP server on 127.0.0.1, so the per-domain delay is 0 (every page shares one host).
The fan-out flow (`check_pages_fanout`) runs in this process: it starts one chunk run per --chunk
partners and waits for them, so the workers' slots hold only chunks.

An untimed pass first records the findings (later passes find the same ones: a daily re-check);
then the timed passes. Prints wall time and pages/s with one worker and with two, the ratio
wall(1 worker) / wall(2 workers) (2.0x would be perfect sharing; the machine's cores bound it),
and the Prefect server's CPU seconds (its process and children, psutil) per 100 flow runs (chunk runs
and the fan-out): in all, and above what the server uses in the same time with the same workers
polling and nothing to run (measured for --idle seconds before each timed pass).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing as mp
import os
import sys
import time

from partnerflow.testing.sandbox import sandbox

# Function-local imports: Prefect (under our flows and tasks) reads its settings once, at import, so our
# modules are imported inside the sandbox that sets them.

POOL = "bench-pages"
LINK = "<a href='https://acme.example/signup?ref=PF{i}'>try Acme</a>"
PARA = "<p>Dashboards, metrics and notes on running a small analytics team, week {n} of the series.</p>"
SETTINGS = {"PARTNERFLOW_COMPLIANCE_PER_DOMAIN_DELAY": "0", "PARTNERFLOW_EMAIL_PROVIDER": "outbox",
            "PARTNERFLOW_COMPLIANCE_ALLOW_PRIVATE_ADDRESSES": "true"}  # the pages are served on 127.0.0.1


def page_body(i: int) -> str:
    """About 12 KB; with, without and footer-only disclosures and some claims (as in bench/compliance.py)."""
    filler = "".join(PARA.format(n=n) for n in range(120))
    top = "<p>This post contains affiliate links; I earn a commission.</p>" if i % 4 == 0 else ""
    claim = "<p>You can earn $3,000 per month with it.</p>" if i % 4 == 3 else ""
    footer = "<footer>Disclosure: affiliate link.</footer>" if i % 4 == 2 else "<footer>(c) me</footer>"
    return (f"<!doctype html><html lang='en'><head><title>Review {i}</title></head><body><h1>Review {i}</h1>"
            f"{top}<p>I use it daily: {LINK.format(i=i)}</p>{claim}{filler}{footer}</body></html>")


def serve_pages(port_queue) -> None:
    """A threaded HTTP server for the partners' pages (its own process: the checks do not slow it)."""
    import logging

    from werkzeug.serving import make_server
    from werkzeug.wrappers import Request, Response

    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    @Request.application
    def app(request):
        if request.path == "/robots.txt":
            return Response("User-agent: *\nAllow: /\n", content_type="text/plain")
        return Response(page_body(int(request.path.rsplit("-", 1)[-1])), content_type="text/html; charset=utf-8")

    server = make_server("127.0.0.1", 0, app, threaded=True)
    port_queue.put(server.server_port)
    server.serve_forever()


def add_partners(base: str, n: int) -> None:
    """n active partners, each with one page whose affiliate link carries its tracking code."""
    from partnerflow.models import Partner, Stage, session_scope
    from partnerflow.models.compliance import PartnerPage

    with session_scope() as session:
        partners = [Partner(email=f"p{i}@site{i}.example", legal_name=f"Site {i} Media", stage=Stage.ACTIVE,
                            website=f"https://site{i}.example", tracking_code=f"PF{i}", coupon_code=f"C{i}")
                    for i in range(n)]
        session.add_all(partners)
        session.flush()
        session.add_all(PartnerPage(partner_id=p.id, url=f"{base}/page-{i}") for i, p in enumerate(partners))


def deploy_chunks(api_url: str) -> None:
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.deployments.runner import deploy

    from partnerflow.deployments import build
    from partnerflow.deployments.table import DEPLOYMENTS

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))
    spec = next(s for s in DEPLOYMENTS if s.name == "check-pages-chunk")
    with contextlib.redirect_stdout(io.StringIO()):  # Prefect prints a table of what it deployed
        deploy(build(spec), work_pool_name=POOL, build=False, push=False, print_next_steps_message=False,
               ignore_warnings=True)


def wait_for_workers(names: set[str], timeout: float = 120) -> None:
    from prefect import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            online = {w.name for w in client.read_workers_for_work_pool(POOL) if w.status == "ONLINE"}
            if names <= online:
                return
            time.sleep(0.3)
    raise RuntimeError(f"workers {sorted(names)} did not come online within {timeout:.0f} s")


def cpu_seconds(pid: int) -> float:
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def one_pass(stack, workers: int, limit: int, chunk: int, pages: int, label: str, idle: float) -> dict:
    """Start `workers` workers, run the fan-out in this process, stop the workers; wall time and server CPU
    (and the server's CPU per second with these workers polling and nothing to run, over `idle` seconds)."""
    from partnerflow.flows.compliance_chunks import check_pages_fanout
    from partnerflow.stack import stop_processes

    names = {f"{label}-worker-{k}" for k in range(1, workers + 1)}
    procs = [stack.start(name, [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL,
                                "--limit", str(limit), "--name", name], f"{name}.log") for name in sorted(names)]
    try:
        wait_for_workers(names)
        server = stack.parts[0].process.pid  # the Prefect server, started first
        cpu, started = cpu_seconds(server), time.perf_counter()
        time.sleep(idle)
        cpu_idle = (cpu_seconds(server) - cpu) / (time.perf_counter() - started)
        cpu = cpu_seconds(server)
        started = time.perf_counter()
        result = check_pages_fanout(chunk_size=chunk)
        wall = time.perf_counter() - started
        cpu = cpu_seconds(server) - cpu
    finally:
        stop_processes(procs)
    if result["pages"] != pages or result["pages_read"] != pages:
        raise RuntimeError(f"{label}: {result['pages_read']} of {pages} pages read ({result['pages']} checked)")
    return {"wall": wall, "cpu": cpu, "idle": cpu_idle, "runs": result["chunks"] + 1, "opened": len(result["opened"])}


def run(args) -> dict:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from partnerflow.settings import get_settings
    from partnerflow.stack import free_port, running_stack

    queue = mp.get_context("spawn").Queue()
    pages = mp.get_context("spawn").Process(target=serve_pages, args=(queue,), daemon=True)
    pages.start()
    try:
        add_partners(f"http://127.0.0.1:{queue.get(timeout=30)}", args.pages)
        settings = get_settings()
        with running_stack(settings, prefect_port=free_port(), web_port=free_port(),
                           serve_deployments=False) as stack:
            stack.env["PREFECT_WORKER_QUERY_SECONDS"] = "1"  # a worker looks for new chunk runs every second
            with temporary_settings({PREFECT_API_URL: stack.api_url}):
                deploy_chunks(stack.api_url)
                if args.warm_up:
                    r = one_pass(stack, 2, args.worker_limit, args.chunk, args.pages, "warm-up", 0)
                    print(f"  untimed first pass (records {r['opened']} findings): {r['wall']:.1f} s", flush=True)
                out = {}
                for n, label in ((1, "one"), (2, "two")):
                    out[n] = r = one_pass(stack, n, args.worker_limit, args.chunk, args.pages, label, args.idle)
                    above_idle = r["cpu"] - r["idle"] * r["wall"]
                    print(f"  {n} worker{'s' if n > 1 else ' '}: {r['wall']:6.1f} s  {args.pages / r['wall']:6.1f} "
                          f"pages/s   server CPU {r['cpu']:.1f} s for {r['runs']} flow runs = "
                          f"{100 * r['cpu'] / r['runs']:.0f} s per 100 runs; {100 * above_idle / r['runs']:.0f} s "
                          f"above the {r['idle']:.2f} CPU s/s of the server with the worker{'s' if n > 1 else ''} "
                          "polling and nothing to run", flush=True)
                return out
    finally:
        pages.kill()


@contextlib.contextmanager
def prefect_db(server_url: str | None):
    """The Prefect server's database: with a PostgreSQL server, a fresh database there (as a team runs it)."""
    if not server_url:
        yield
        return
    from partnerflow.testing.scale import prefect_database

    with prefect_database(server_url) as url:
        os.environ["PREFECT_API_DATABASE_CONNECTION_URL"] = url  # the stack's server is started with it
        yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=2000, help="partners, one page each")
    parser.add_argument("--chunk", type=int, default=100, help="partners per chunk flow run")
    parser.add_argument("--worker-limit", type=int, default=1, help="flow runs one worker runs at once")
    parser.add_argument("--database-url", default=None,
                        help="PostgreSQL server for fresh databases: ours and the Prefect server's (default SQLite)")
    parser.add_argument("--idle", type=float, default=10,
                        help="seconds to measure the server's CPU with the workers polling and nothing to run")
    parser.add_argument("--no-warm-up", dest="warm_up", action="store_false", help="skip the untimed first pass")
    parser.add_argument("--smoke", action="store_true", help="small sizes: a quick check that it runs")
    args = parser.parse_args()
    if args.smoke:
        args.pages, args.chunk, args.warm_up, args.idle = 20, 10, False, 1
    with sandbox("bench-workers", database_url=args.database_url, **SETTINGS), prefect_db(args.database_url):
        from partnerflow.stack import stop_on_signals

        stop_on_signals()  # SIGTERM stops the stack and workers this benchmark started, as Ctrl-C does
        db = "PostgreSQL (ours and the Prefect server's)" if args.database_url else "SQLite"
        print(f"page check of {args.pages} local pages, {args.chunk} partners per chunk run, worker --limit "
              f"{args.worker_limit}, {db}, {os.cpu_count()} CPUs", flush=True)
        out = run(args)
    print(f"  machine load now (1-minute average): {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"  ratio {out[1]['wall'] / out[2]['wall']:.1f}x (wall 1 worker / 2 workers; 2.0x is perfect sharing)")


if __name__ == "__main__":
    sys.exit(main())
