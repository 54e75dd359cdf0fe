"""Benchmark: the tracking link /r/{code} with click recording against the same app answering a plain
redirect (the floor), under the same load, in one run.

    .venv/bin/python bench/clicks.py                    # 10,000 requests per side, 20 concurrent clients
    .venv/bin/python bench/clicks.py --requests 2000 --concurrency 50
    .venv/bin/python bench/clicks.py --smoke            # 500 requests per side: does it still run?

The web app runs under uvicorn in its own process (one worker, SQLite in a sandbox); the clients are
--concurrency asyncio tasks sharing one httpx.AsyncClient in this process. Each side gets a short warm-up,
then --requests requests; prints p50/p95 latency and throughput of both, `ratio N.Nx` (p50 of /r over the
floor's p50). The server is then stopped cleanly (SIGTERM: the app's lifespan writes the queued clicks)
and the stored clicks are counted: the run fails if any click was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from partnerflow.testing.sandbox import sandbox

# Function-local imports: our modules read their settings once, so they are imported inside the sandbox.

BENCH = Path(__file__).resolve().parent
CODE = "benchpartner-x2k9"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
WARMUP = 50


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int) -> subprocess.Popen:
    import httpx

    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "_clicks_app:app", "--app-dir", str(BENCH),
                             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
                             "--no-access-log"], env=dict(os.environ))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the web app exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the web app did not start within 60 s")


async def load(base: str, path: str, requests: int, concurrency: int) -> tuple[list[float], float]:
    """Latencies (s) of `requests` GETs by `concurrency` clients, and the wall time they took."""
    import httpx

    latencies: list[float] = []
    left = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, headers={"user-agent": BROWSER}, timeout=30) as client:
        async def client_loop() -> None:
            for _ in left:
                started = time.perf_counter()
                response = await client.get(path)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 302:
                    raise SystemExit(f"{path} answered {response.status_code}")

        began = time.perf_counter()
        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        return latencies, time.perf_counter() - began


def summary(name: str, latencies: list[float], wall: float) -> float:
    cuts = statistics.quantiles(latencies, n=100)
    p50, p95 = statistics.median(latencies), cuts[94]
    print(f"{name:<22} p50 {p50 * 1000:7.2f} ms   p95 {p95 * 1000:7.2f} ms   {len(latencies) / wall:8.0f} req/s")
    return p50


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--smoke", action="store_true", help="500 requests per side")
    args = parser.parse_args()
    requests = 500 if args.smoke else args.requests

    with sandbox("bench-clicks", partner_landing_url="https://shop.example/"):
        from sqlalchemy import func
        from sqlmodel import select

        from partnerflow.models import Partner, Stage, session_scope
        from partnerflow.models.tracking import Click

        with session_scope() as session:
            session.add(Partner(email="bench@partner.example", legal_name="Bench Partner LLC", contact_name="Bench",
                                country="US", stage=Stage.ACTIVE, tracking_code=CODE))
        port = free_port()
        server = start_server(port)
        base = f"http://127.0.0.1:{port}"
        try:
            for path in (f"/floor/{CODE}", f"/r/{CODE}"):  # warm both paths before timing either
                asyncio.run(load(base, path, WARMUP, args.concurrency))
            print(f"{requests} requests per side, {args.concurrency} concurrent clients, one uvicorn worker")
            floor = summary("floor (plain redirect)", *asyncio.run(load(base, f"/floor/{CODE}", requests,
                                                                        args.concurrency)))
            ours = summary("/r/{code} (recorded)", *asyncio.run(load(base, f"/r/{CODE}", requests, args.concurrency)))
        finally:
            server.send_signal(signal.SIGTERM)  # a clean shutdown: the lifespan writes what is queued
            code = server.wait(timeout=60)
        with session_scope() as session:
            stored = session.exec(select(func.count()).select_from(Click)).one()
        expected = requests + WARMUP
        print(f"clicks stored {stored} of {expected} sent (server stopped by SIGTERM, exit {code})")
        print(f"ratio {ours / floor:.1f}x  (p50 of /r over the floor's p50)")
        if stored != expected:
            print(f"LOST {expected - stored} click(s)", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
