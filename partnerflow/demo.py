"""`partnerflow demo`: one complete partner lifecycle on the embedded stack, with sample data.

It starts the same stack as `partnerflow up` (a real Prefect server, the web app, every
deployment served) in `var/demo/`, then acts as the partner team and the partner would:
imports prospects, sends the first outreach step, applies through the web app (the
`partner.applied` event starts the contracting deployment), answers the approval form through
Prefect's API, signs on the built-in signing page (the `contract.signed` event starts
onboarding), fills in the tax form and payout details, imports conversions and pays the
approved batch through the ledger rail, signs in to the partner portal by emailed link and writes
the weekly program report. Then it re-runs the stages to show nothing is sent, signed or paid twice.
"""

from __future__ import annotations

import csv
import email
import io
import os
import re
import shutil
import sys
import time
from datetime import date
from email import policy
from importlib import resources
from pathlib import Path

import httpx
import typer

# Function-local imports: the demo sets PARTNERFLOW_* and PREFECT_* for its own folder and
# server first; settings, engine and Prefect client are imported only after that.

DEMO_DIR = Path("var/demo")
APPLICANT = {
    "legal_name": "Growth Loop Media LLC", "contact_name": "Marcus Lee", "email": "marcus@growthloop.example",
    "country": "US", "website": "https://growthloop.example", "channels": ["podcast", "youtube"],
    "partner_type": "affiliate", "promotional_methods": ["content", "email"], "tax_status": "company",
    "agreed_to_terms": True,
}


def say(text: str) -> None:
    typer.echo(text)


def _outbox_links(outbox: Path, prefix: str) -> list[str]:
    found: list[str] = []
    for path in sorted(outbox.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        text = message.get_body(preferencelist=("plain",)).get_content()
        for match in re.findall(r"https?://[^/\s]+(" + re.escape(prefix) + r"[A-Za-z0-9_\-]+)", text):
            if match not in found:
                found.append(match)
    return found


def _wait(what: str, check, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise RuntimeError(f"demo: timed out after {timeout:.0f} s waiting for {what}")


def _demo_conversions(tracking_code: str, coupon_code: str, folder: Path) -> Path:
    """The sample conversions, attributed to the demo partner's real codes."""
    sample = (resources.files("partnerflow.templates") / "demo" / "conversions.csv").read_text()
    rows = list(csv.DictReader(io.StringIO(sample)))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0].keys()))
    writer.writeheader()
    # Two larger annual deals so the partner clears the payout threshold.
    for n, (amount, day) in enumerate((("1490.00", "2026-03-02"), ("990.00", "2026-04-15")), start=1):
        rows.append({**dict.fromkeys(rows[0], ""), "external_id": f"ord-demo-{n}", "kind": "sale", "amount": amount,
                     "currency": "USD", "occurred_at": f"{day}T10:00:00Z", "tracking_code": "DEMO1",
                     "customer_ref": f"cust-demo-{n}", "product": "Team plan (annual)", "category": "software"})
    for row in rows:
        if row.get("tracking_code") == "DEMO1":
            row["tracking_code"] = tracking_code
        if row.get("coupon_code") == "DEMO1-10":
            row["coupon_code"] = coupon_code
        writer.writerow(row)
    path = folder / "conversions.csv"
    path.write_text(out.getvalue())
    return path


def _prepare_environment(var_dir: Path, web_port: int) -> None:
    if var_dir.exists():
        shutil.rmtree(var_dir)
    var_dir.mkdir(parents=True)
    os.environ.update({
        "PARTNERFLOW_VAR_DIR": str(var_dir.resolve()),
        "PARTNERFLOW_PUBLIC_BASE_URL": f"http://127.0.0.1:{web_port}",
        "PARTNERFLOW_WEB_PORT": str(web_port),
        "PREFECT_HOME": str((var_dir / "prefect").resolve()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # The demo runs now, whatever the recipients' local time; real runs keep business hours.
        "PARTNERFLOW_OUTREACH_BUSINESS_HOURS_START": "0",
        "PARTNERFLOW_OUTREACH_BUSINESS_HOURS_END": "24",
        # The team's approval limit: every batch with money in it waits for a person (a run can't raise it).
        "PARTNERFLOW_PAYOUT_APPROVAL_ABOVE_MINOR": "0",
    })
    for name in ("PARTNERFLOW_EMAIL_PROVIDER", "PARTNERFLOW_ESIGN_PROVIDER", "PARTNERFLOW_PAYOUT_RAIL",
                 "PARTNERFLOW_PAYOUT_RAILS_ENABLED", "PARTNERFLOW_PAYOUT_METHOD_RAILS", "PARTNERFLOW_OUTBOX_DIR"):
        os.environ.pop(name, None)  # the demo runs on the embedded providers: the ledger pays every method
    url = os.environ.get("PARTNERFLOW_DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql")):
        from partnerflow import dbtools

        # Every demo starts from an empty database.
        os.environ["PARTNERFLOW_DATABASE_URL"] = dbtools.create_database(url, "partnerflow_demo", replace=True)
    else:
        os.environ.pop("PARTNERFLOW_DATABASE_URL", None)  # SQLite under var/demo
    from partnerflow.settings import reset_settings

    reset_settings()


def run_demo(keep_running: bool = False) -> dict:
    from partnerflow.stack import free_port, prepare, running_stack

    started = time.monotonic()
    web_port, prefect_port = free_port(), free_port()
    _prepare_environment(DEMO_DIR, web_port)

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from partnerflow.settings import get_settings

    prepare()
    settings = get_settings()
    say(f"Starting the embedded stack in {DEMO_DIR}/ (Prefect server, web app, deployments)…")
    with running_stack(settings, prefect_port=prefect_port, web_port=web_port) as stack, \
            temporary_settings({PREFECT_API_URL: stack.api_url}):
        say(f"  Prefect UI {stack.prefect_url}   web app {stack.web_url}   ({time.monotonic() - started:.0f} s)")
        summary = _lifecycle(stack, settings)
        _flush_run_logs()
        summary["wall_seconds"] = round(time.monotonic() - started, 1)
        _print_summary(stack, settings, summary)
        if keep_running:
            say("The stack keeps running; press Ctrl-C to stop.")
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
    return summary


def _lifecycle(stack, settings) -> dict:
    from sqlmodel import select

    from partnerflow.flows.discovery import import_prospects
    from partnerflow.flows.outreach import (
        enroll_prospects,
        load_sequences,
        send_due_outreach,
    )
    from partnerflow.flows.payouts import run_payout_batch
    from partnerflow.flows.payouts_commissions import (
        compute_commissions,
        import_conversions,
    )
    from partnerflow.models import (
        Application,
        Contract,
        Partner,
        Payout,
        SignatureRequest,
        Stage,
        session_scope,
    )
    from partnerflow.status import collect_status
    from partnerflow.tasks.shared.approvals import answer, wait_for_waiting_run

    outbox = settings.mail.outbox_dir
    summary: dict = {}

    say("1. Discovery: importing the sample prospects CSV")
    sample = resources.files("partnerflow.templates") / "demo" / "prospects.csv"
    imported = import_prospects(str(sample), source="demo-sample")
    say(f"   imported {imported.get('imported')}, rejected rows: "
        + ", ".join(f"line {e['line']} ({e['reason']})" for e in imported.get("errors", [])))

    say("2. Outreach: loading the sequence, enrolling prospects, sending the due first step")
    load_sequences()
    enroll_prospects()
    sent = send_due_outreach()
    summary["outreach_sent"] = sent.get("sent", 0)
    say(f"   sent {summary['outreach_sent']} first-step emails to the outbox")

    say("3. Application: a prospect signs up through the web app")
    response = httpx.post(f"{stack.web_url}/api/applications", json=APPLICANT, timeout=30)
    response.raise_for_status()  # a generic 202: the answer names no ids, our table does
    with session_scope() as session:
        application_id = session.exec(select(Application.id).where(Application.email == APPLICANT["email"])).one()
    say(f"   application {application_id} received; the partner.applied event starts the contracting deployment")

    say("4. Contracting: answering the approval form through Prefect's API, as a reviewer in the UI would")
    run = wait_for_waiting_run("contract-application", timeout=120)
    answer(run.id, {"decision": "approve", "tier": "standard", "commission_rate": "0.12",
                    "note": "Strong analytics audience.", "reviewer": "Dana Reviewer (demo)"})
    sign_path = _wait("the signing link email", lambda: _outbox_links(outbox, "/sign/"))[0]
    page = httpx.get(stack.web_url + sign_path, timeout=30)
    page.raise_for_status()
    signed = httpx.post(stack.web_url + sign_path, data={"signer_name": "Marcus Lee", "consent": "yes"}, timeout=60)
    signed.raise_for_status()
    say("   approved, contract generated and signed on the built-in signing page")

    say("5. Onboarding: the contract.signed event starts the onboarding deployment")

    def active_partner():
        with session_scope() as session:
            partner = session.exec(select(Partner).where(Partner.email == APPLICANT["email"])).first()
            return partner if partner and partner.stage == Stage.ACTIVE and partner.tracking_code else None

    partner = _wait("the partner to become active", active_partner)
    onboarding_path = _wait("the onboarding link", lambda: _outbox_links(outbox, "/onboarding/"))[0]
    form = {"tax_name": APPLICANT["legal_name"], "tax_address": "1 Podcast Way, Austin TX", "tin": "12-3456789",
            "certify": "yes", "payout_method": "paypal", "paypal_email": "payouts@growthloop.example"}
    httpx.post(stack.web_url + onboarding_path, data=form, timeout=30).raise_for_status()
    say(f"   active with tracking code {partner.tracking_code} and coupon {partner.coupon_code}; "
        "tax form and payout details stored encrypted")

    say("6. Payouts: conversions → commissions → a batch a person approves → paid through the ledger")
    _add_sample_exchange_rates()
    conversions = import_conversions(str(_demo_conversions(partner.tracking_code, partner.coupon_code,
                                                           settings.var_dir)), source="demo-shop")
    compute_commissions()
    summary["conversions"] = conversions
    batch = _run_deployment("run-payout-batch/payout-batch", {},
                            {"decision": "approve", "note": "Monthly run", "approver": "Pat Finance (demo)"})
    summary["payout_batch"] = batch

    say("7. The partner's portal: signing in by emailed link and reading their own balance")
    summary["portal"] = _portal_visit(stack.web_url, outbox, partner.email)
    say(f"   signed in; the home page shows: {summary['portal']}")

    say("8. Reporting: the weekly program report for the week of the first annual deal")
    from partnerflow.flows.reports import weekly_program_report

    report = weekly_program_report(period_end=date(2026, 3, 8))
    summary["report_folder"] = report["folder"]
    say(f"   week {report['week']}: {report['partners']} partner(s); table, charts and CSV/XLSX in {report['folder']}")

    say("9. Exactly once: re-running outreach and the payout batch")
    again = send_due_outreach()
    batch_again = run_payout_batch()  # nothing left to pay: policy closes it without asking
    with session_scope() as session:
        payouts = session.exec(select(Payout)).all()
        contract = session.exec(select(Contract).where(Contract.partner_id == partner.id)).first()
        requests = session.exec(select(SignatureRequest)).all()
    summary.update({
        "outreach_sent_on_rerun": again.get("sent", 0),
        "payouts": [(p.id, p.amount_minor, p.currency, p.status) for p in payouts],
        "batch_on_rerun": batch_again,
        "signature_requests": len(requests),
        "signed_contract": (str(settings.documents_dir.resolve() / contract.signed_path)
                            if contract and contract.signed_path else None),
        "status": collect_status(),
    })
    return summary


def _portal_visit(web_url: str, outbox: Path, email_address: str) -> str:
    """As the partner: ask for a sign-in link, follow it from the mail, and read the home page."""

    def csrf(html: str) -> str:
        return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)

    with httpx.Client(base_url=web_url, timeout=30) as browser:
        page = browser.get("/portal/sign-in")
        browser.post("/portal/sign-in", data={"email": email_address, "csrf_token": csrf(page.text)}
                     ).raise_for_status()
        link = _wait("the portal sign-in link", lambda: _outbox_links(outbox, "/portal/sign-in/"))[0]
        page = browser.get(link)
        signed_in = browser.post(link, data={"csrf_token": csrf(page.text)}, follow_redirects=True)
        signed_in.raise_for_status()
        if "Your balance" not in signed_in.text:
            raise RuntimeError("demo: the portal's home page did not show the partner's balance")
    balance = r'<section class="card balance-[a-z_]+">\s*<div>([^<]+)</div>\s*<div class="value">([^<]+)</div>'
    cards = re.findall(balance, signed_in.text)
    return ", ".join(f"{name.strip()} {value.strip()}" for name, value in cards) or "their balance"


def _add_sample_exchange_rates() -> None:
    """The sample shop sells in USD and EUR; payouts are in USD. Rates are entered, never fetched."""
    from datetime import date

    from partnerflow.models import session_scope
    from partnerflow.models.payouts import FxRate

    with session_scope() as session:
        session.add(FxRate(day=date(2026, 1, 1), base="EUR", quote="USD", rate="1.0850"))
        session.add(FxRate(day=date(2026, 1, 1), base="USD", quote="EUR", rate="0.9217"))


def _run_deployment(name: str, parameters: dict, form_values: dict | None = None):
    """Start a deployment's run on the stack's runner, answer its approval form (as a person in the
    UI would), and return what the flow returned once it finished."""
    from prefect import get_client
    from prefect.deployments import run_deployment

    from partnerflow.tasks.shared.approvals import answer, wait_for_waiting_run

    run = run_deployment(name, parameters=parameters, timeout=0)
    if form_values is not None:
        wait_for_waiting_run(flow_run_id=run.id, timeout=120)
        answer(run.id, form_values)
    with get_client(sync_client=True) as client:
        state = _wait(f"{name} to finish", lambda: (st := client.read_flow_run(run.id).state).is_final() and st)
    return state.result()


def _flush_run_logs() -> None:
    """Send buffered run logs to the server before it stops (they show in the UI)."""
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()


def _print_summary(stack, settings, summary: dict) -> None:
    from partnerflow.tasks.shared.money import format_money

    status = summary["status"]
    say("")
    say(f"Demo complete in {summary['wall_seconds']:.0f} s.")
    say(f"  partners by stage     {', '.join(f'{k} {v}' for k, v in status['partners_by_stage'].items() if v)}")
    say(f"  messages sent         {status['messages_sent']} (outreach re-run sent {summary['outreach_sent_on_rerun']})")
    say(f"  contracts signed      {status['contracts_signed']} ({summary['signature_requests']} signature request)")
    for payout_id, amount, currency, state in summary["payouts"]:
        say(f"  payout {payout_id}              {format_money(amount, currency)} {state}")
    say(f"  payouts paid          {status['payouts_paid']} (the re-run paid nothing new)")
    say("Where to look:")
    say(f"  Prefect UI            {stack.prefect_url}  (runs, approval forms, artifacts; while the stack runs)")
    say(f"  outbox (sent mail)    {settings.mail.outbox_dir.resolve()}")
    say(f"  signed contract       {summary['signed_contract']}")
    say(f"  weekly report files   {summary['report_folder']}")
    say(f"  partner portal        {stack.web_url}/portal/sign-in  (sign in as {APPLICANT['email']}; the link "
        "arrives in the outbox)")
    from sqlalchemy.engine import make_url

    database = make_url(settings.resolved_database_url).render_as_string(hide_password=True)
    say(f"  database              {database}")
    again = f"PARTNERFLOW_VAR_DIR={settings.var_dir.resolve()} PREFECT_HOME={os.environ['PREFECT_HOME']}"
    if not database.startswith("sqlite"):
        again += f" PARTNERFLOW_DATABASE_URL={database}"
    say("To open the demo's runs, approval forms and artifacts in the UI again, start its stack:")
    say(f"  {again} {Path(sys.executable).parent / 'partnerflow'} up")
    say("  (`partnerflow status` with the same variables reads the demo's database.)")
