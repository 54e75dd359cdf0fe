"""Benchmark: partner sign-up to signature request, through served deployments on a local Prefect server.

    .venv/bin/python bench/signup.py                         # 30 sign-ups per path, 200 contracts
    .venv/bin/python bench/signup.py --signups 20 --contracts 200
    .venv/bin/python bench/signup.py --smoke                 # 1 sign-up per path, 5 contracts

Part 1 (latency). A real `prefect server start`, the web app (uvicorn) and a runner serving one
deployment triggered by `partner.applied`. Each sign-up is POSTed to /api/applications (referral
partner: auto-approved by the default policy) and timed until its signature request is recorded
as sent by the builtin provider (signing mail written). The floor is the same path with a
deployment whose flow does nothing, timed until its flow run is COMPLETED. Prints p50/p95 and
the ratio of the p50s (target: within 1.2x, over at least 30 sign-ups).

Part 2 (throughput). Contracts generated per second (`generate_contract`: merge, clauses, save,
hash, DB row) versus the floor of opening and saving the template with python-docx (target 1.2x).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from partnerflow.testing.sandbox import sandbox

# Function-local imports: Prefect (under our flows and tasks) reads its settings once, at import, so our
# modules are imported inside the sandbox that sets them (or in the runner process, from its environment).

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {"PARTNERFLOW_ESIGN_PROVIDER": "builtin", "PARTNERFLOW_EMAIL_PROVIDER": "outbox",
            "PARTNERFLOW_WEB_APPLY_LIMIT_PER_IP": "100000/minute"}  # every sign-up comes from 127.0.0.1


# --- the runner subprocess -------------------------------------------------------------------------

def serve(kind: str) -> None:
    from prefect import serve as prefect_serve
    from prefect.deployments.runner import EntrypointType
    from prefect.events import DeploymentEventTrigger

    trigger = DeploymentEventTrigger(expect={"partner.applied"},
                                     match={"prefect.resource.id": "partnerflow.application.*"},
                                     parameters={"application_id": "{{ event.payload.application_id }}"})
    if kind == "noop":
        from _signup_noop import noop_signup

        deployment = noop_signup.to_deployment(name="bench-noop", triggers=[trigger],
                                               entrypoint_type=EntrypointType.MODULE_PATH)
    else:
        from partnerflow.flows.contracting import contract_application

        deployment = contract_application.to_deployment(name="bench-contract-application", triggers=[trigger],
                                                        entrypoint_type=EntrypointType.MODULE_PATH)
    prefect_serve(deployment, limit=8)


# --- part 1 ------------------------------------------------------------------------------------------

def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _wait_deployment(api: str, name: str, timeout: float = 120) -> str:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = httpx.post(f"{api}/deployments/filter", json={"deployments": {"name": {"any_": [name]}}}).json()
        if found:
            return found[0]["id"]
        time.sleep(0.3)
    raise RuntimeError(f"deployment {name} was not registered")


def _completed_runs(api: str, deployment_id: str) -> int:
    import httpx

    return httpx.post(f"{api}/flow_runs/count", json={
        "deployments": {"id": {"any_": [deployment_id]}},
        "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}}).json()


def _sent_requests() -> int:
    from sqlmodel import func, select

    from partnerflow.models import SignatureRequest, session_scope
    from partnerflow.models.contracting import SignatureStatus

    with session_scope() as session:
        return session.exec(select(func.count()).select_from(SignatureRequest)
                            .where(SignatureRequest.status == SignatureStatus.SENT)).one()


def _phase(stack, kind: str, count: int, offset: int, log: Path, warm_ups: int) -> list[float]:
    import httpx

    env = dict(stack.env)
    env["PYTHONPATH"] = str(ROOT / "bench") + os.pathsep + env.get("PYTHONPATH", "")
    runner = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve", kind], env=env,
                              stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
    deployment_id = None
    try:
        name = "bench-noop" if kind == "noop" else "bench-contract-application"
        deployment_id = _wait_deployment(stack.api_url, name)
        time.sleep(3)  # let the trigger service load the new automation
        latencies = []
        for i in range(warm_ups + count):  # warm-ups (imports in the runner) are not counted
            n = offset + i
            before = _completed_runs(stack.api_url, deployment_id) if kind == "noop" else _sent_requests()
            body = {"legal_name": f"Bench Partner {n}", "contact_name": f"Bench {n}", "email": f"p{n}@bench{n}.example",
                    "country": "US", "website": f"https://bench{n}.example", "partner_type": "referral",
                    "tax_status": "company", "agreed_to_terms": True}
            started = time.perf_counter()
            response = httpx.post(stack.web_url + "/api/applications", json=body, timeout=30)
            assert response.status_code == 202, response.text
            deadline = time.monotonic() + 120
            while True:
                now = _completed_runs(stack.api_url, deployment_id) if kind == "noop" else _sent_requests()
                if now > before:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{kind}: sign-up {n} was not processed within 120 s; see {log}")
                time.sleep(0.05)
            if i >= warm_ups:
                latencies.append(time.perf_counter() - started)
        return latencies
    finally:
        runner.terminate()
        try:
            runner.wait(timeout=20)
        except subprocess.TimeoutExpired:
            runner.kill()
        if deployment_id:
            httpx.delete(f"{stack.api_url}/deployments/{deployment_id}")


def latency(signups: int, warm_ups: int) -> dict:
    from partnerflow.settings import get_settings
    from partnerflow.stack import free_port, running_stack

    settings = get_settings()
    with running_stack(settings, prefect_port=free_port(), web_port=free_port(), serve_deployments=False) as stack:
        log = stack.logs / "bench-runner.log"
        floor = _phase(stack, "noop", signups, 0, log, warm_ups)
        real = _phase(stack, "real", signups, 10_000, log, warm_ups)
    return {"floor": floor, "real": real}


# --- part 2 ------------------------------------------------------------------------------------------

def throughput(contracts: int) -> dict:
    from docx import Document

    from partnerflow.models import Partner, PartnerType, session_scope
    from partnerflow.tasks.contracting.documents import (
        generate_contract,
        library,
        merge_fields,
        render_contract,
        template_bytes,
    )
    from partnerflow.tasks.shared.terms import terms_for_partner

    raw = template_bytes(library()["template"])
    Document(io.BytesIO(raw)).save(io.BytesIO())  # warm-up, as for ours below
    started = time.perf_counter()
    for _ in range(contracts):
        out = io.BytesIO()
        Document(io.BytesIO(raw)).save(out)
    floor = contracts / (time.perf_counter() - started)
    with session_scope() as session:
        partner = Partner(email="tp@throughput.example", legal_name="Throughput Ltd", contact_name="T P",
                          country="DE", partner_type=PartnerType.RESELLER, tier="gold")
        session.add(partner)
        session.flush()
        partner_id = partner.id
    generate_contract(partner_id)  # warm-up: first imports (audit's Prefect runtime lookup), caches
    started = time.perf_counter()
    for _ in range(contracts):
        generate_contract(partner_id)
    real = contracts / (time.perf_counter() - started)
    # The document alone (no database row, no file): what the clause library and merge cost over the floor.
    with session_scope() as session:
        partner = session.get(Partner, partner_id)
        fields = merge_fields(partner, terms_for_partner(partner), version=1, tier="gold")
    started = time.perf_counter()
    for _ in range(contracts):
        render_contract(fields, partner_type=PartnerType.RESELLER, tier="gold", country="DE")
    render = contracts / (time.perf_counter() - started)
    return {"floor": floor, "real": real, "render": render}


def main() -> None:
    if "--serve" in sys.argv:
        serve(sys.argv[sys.argv.index("--serve") + 1])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--signups", type=int, default=30, help="timed sign-ups per path (after one warm-up)")
    parser.add_argument("--contracts", type=int, default=200, help="contracts generated for the throughput part")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="small sizes: a quick check that it runs")
    args = parser.parse_args()
    if args.smoke:
        args.signups, args.contracts = 1, 5
    with sandbox("bench-signup", **SETTINGS):
        tp = throughput(args.contracts)
        print(f"contracts/s: {tp['real']:.1f}   floor (python-docx open+save): {tp['floor']:.1f}/s   "
              f"ratio {tp['floor'] / tp['real']:.1f}x (target <= 1.2x)")
        print(f"document only (render_contract, no DB row/file): {tp['render']:.1f}/s   "
              f"ratio {tp['floor'] / tp['render']:.1f}x")
        lat = None if args.skip_latency else latency(args.signups, warm_ups=0 if args.smoke else 1)
    if lat is None:
        return
    f50, f95 = _percentile(lat["floor"], 0.5), _percentile(lat["floor"], 0.95)
    r50, r95 = _percentile(lat["real"], 0.5), _percentile(lat["real"], 0.95)
    print(f"sign-up -> signature request sent, n={len(lat['real'])}: p50 {r50:.2f}s  p95 {r95:.2f}s  "
          f"(mean {statistics.mean(lat['real']):.2f}s)")
    print(f"floor (no-op deployment on the same trigger), n={len(lat['floor'])}: p50 {f50:.2f}s  p95 {f95:.2f}s")
    print(f"p50 ratio {r50 / f50:.1f}x (target <= 1.2x), p95 ratio {r95 / f95:.1f}x")


if __name__ == "__main__":
    main()
