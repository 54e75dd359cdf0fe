"""Benchmark: does a deployment run as quickly with 50 approvals waiting for a person as with none?

    .venv/bin/python bench/approvals.py                      # 20 timed runs each way, 50 approvals pending
    .venv/bin/python bench/approvals.py --runs 40 --pending 100
    .venv/bin/python bench/approvals.py --database-url postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/approvals.py --smoke              # 2 runs each way, 3 pending

The stack as `partnerflow up` starts it: a real `prefect server start`, the web app, and the runner
serving every deployment of the table with its slot limit (8). Timed, one at a time: `run_deployment`
of compute-commissions (nothing to compute: a no-op-sized run) until it is Completed.

First with no approval pending: the floor. Then --pending affiliate applications are posted to the web
app; each starts a contract-application run, which the approval policy sends to a person: the run
records the question and suspends. Once all of them wait, the same runs are timed again. A waiting
approval holds no process and no runner slot, so the target is a p50 ratio of at most 1.2x.
Prints p50/p95 both ways and how many of the runner's processes the waiting runs hold (none).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time

from partnerflow.testing.sandbox import sandbox

# Function-local imports: Prefect (under our flows and tasks) reads its settings once, at import, so our
# modules are imported inside the sandbox that sets them.

NOOP = "compute-commissions/compute-commissions"
SETTINGS = {"PARTNERFLOW_ESIGN_PROVIDER": "builtin", "PARTNERFLOW_EMAIL_PROVIDER": "outbox",
            "PARTNERFLOW_WEB_APPLY_LIMIT_PER_IP": "100000/minute"}  # every application comes from 127.0.0.1


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def timed_runs(count: int) -> list[float]:
    """Seconds from `run_deployment` of the no-op-sized deployment to its Completed state, one run at a time."""
    from prefect.deployments import run_deployment

    took = []
    for _ in range(count):
        started = time.perf_counter()
        run = run_deployment(NOOP, timeout=180, poll_interval=0.1)
        took.append(time.perf_counter() - started)
        if not run.state.is_completed():
            raise RuntimeError(f"{NOOP} run {run.name} ended {run.state.name} (or is still running after 180 s)")
    return took


def ask_people(web_url: str, count: int, timeout: float) -> set[str]:
    """Post `count` affiliate applications and wait until each one's run waits for a reviewer; their run ids."""
    import httpx

    from partnerflow.tasks.shared.approvals import waiting_runs

    for n in range(count):
        body = {"legal_name": f"Waiting Partner {n}", "contact_name": f"Wait {n}", "email": f"w{n}@wait{n}.example",
                "country": "US", "website": f"https://wait{n}.example", "partner_type": "affiliate",
                "tax_status": "company", "agreed_to_terms": True}
        response = httpx.post(web_url + "/api/applications", json=body, timeout=30)
        if response.status_code != 202:
            raise RuntimeError(f"application {n} was refused: {response.status_code} {response.text[:200]}")
    deadline = time.monotonic() + timeout
    while (waiting := len(waiting_runs("contract-application"))) < count:
        if failed := failed_runs("contract-application"):  # a crashed one is scheduled again by itself
            raise RuntimeError(f"contract-application runs failed instead of asking: {failed}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {waiting} of {count} applications wait for a reviewer after {timeout:.0f} s; "
                               f"contract-application runs by state: {runs_by_state('contract-application')}")
        time.sleep(0.5)
    return {str(r.id) for r in waiting_runs("contract-application")}


def runs_by_state(flow_name: str) -> dict[str, int]:
    from collections import Counter

    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))
    return dict(Counter(r.state.name if r.state else "none" for r in runs))


def failed_runs(flow_name: str) -> list[str]:
    """Runs of `flow_name` that failed ("name: state message")."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=[StateType.FAILED]))))
    return [f"{r.name}: {r.state.name} {(r.state.message or '')[:200]}" for r in runs]


def processes_of(runner_pid: int, flow_run_ids: set[str]) -> int:
    """How many of the runner's processes run one of these flow runs (the runner names it in their environment)."""
    import psutil

    held = 0
    for child in psutil.Process(runner_pid).children(recursive=True):
        try:
            held += child.environ().get("PREFECT__FLOW_RUN_ID") in flow_run_ids
        except psutil.Error:  # it ended meanwhile
            continue
    return held


def timings(label: str, took: list[float]) -> str:
    return (f"  {label:<28} p50 {percentile(took, 0.5):.2f}s  p95 {percentile(took, 0.95):.2f}s  "
            f"(mean {statistics.mean(took):.2f}s)")


def run(args) -> dict:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from partnerflow.settings import get_settings
    from partnerflow.stack import free_port, running_stack

    with running_stack(get_settings(), prefect_port=free_port(), web_port=free_port()) as stack:
        runner = next(part.process for part in stack.parts if part.name == "the deployment runner")
        with temporary_settings({PREFECT_API_URL: stack.api_url}):
            timed_runs(args.warm_ups)  # the first runs warm the disk cache and the server
            floor = timed_runs(args.runs)
            print(timings("0 approvals pending (floor):", floor), flush=True)
            started = time.perf_counter()
            waiting = ask_people(stack.web_url, args.pending, timeout=300 + 20 * args.pending)
            asked = time.perf_counter() - started
            # A suspended run's process ends by itself once its state is saved; give the last ones time to exit.
            held, settled = processes_of(runner.pid, waiting), time.monotonic() + 120
            while (still := processes_of(runner.pid, waiting)) and time.monotonic() < settled:
                time.sleep(0.5)
            loaded = timed_runs(args.runs)
            print(timings(f"{args.pending} approvals pending:", loaded), flush=True)
    return {"floor": floor, "loaded": loaded, "asked": asked, "held": held, "still": still}


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
    parser.add_argument("--runs", type=int, default=20, help="timed runs each way")
    parser.add_argument("--pending", type=int, default=50, help="approvals waiting for a person in the second part")
    parser.add_argument("--warm-ups", type=int, default=2, help="untimed runs before the floor")
    parser.add_argument("--database-url", default=None,
                        help="PostgreSQL server for fresh databases: ours and the Prefect server's (default SQLite)")
    parser.add_argument("--smoke", action="store_true", help="small sizes: a quick check that it runs")
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.pending, args.warm_ups = 2, 3, 0
    with sandbox("bench-approvals", database_url=args.database_url, **SETTINGS), prefect_db(args.database_url):
        from partnerflow.stack import stop_on_signals

        stop_on_signals()  # SIGTERM stops the stack this benchmark started, as Ctrl-C does
        db = "PostgreSQL" if args.database_url else "SQLite"
        print(f"run_deployment({NOOP}) -> Completed, runner limit 8, n={args.runs} each way, {db}", flush=True)
        out = run(args)
    floor, loaded = out["floor"], out["loaded"]
    f50, f95, l50, l95 = (percentile(floor, 0.5), percentile(floor, 0.95), percentile(loaded, 0.5),
                          percentile(loaded, 0.95))
    print(f"  {args.pending} applications asked a reviewer and suspended in {out['asked']:.1f} s; processes of "
          f"waiting runs: {out['held']} still exiting then, {out['still']} while timed")
    print(f"  machine load now (1-minute average): {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"  ratio {l50 / f50:.1f}x p50 (target <= 1.2x), p95 ratio {l95 / f95:.1f}x")


if __name__ == "__main__":
    sys.exit(main())
