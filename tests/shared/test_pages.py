"""Partner-facing pages: built from Jinja2 templates only, partner-supplied text escaped everywhere, a missing
template variable an error, and every page readable on a phone (no sideways scrolling at 390 px)."""

from __future__ import annotations

import ast
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jinja2
import pytest
import uvicorn
from browser import require_chromium
from factories import approved_partner
from fastapi.testclient import TestClient
from playwright.sync_api import sync_playwright
from support import mail_text, mails

from partnerflow.flows.onboarding import onboard_partner
from partnerflow.models import session_scope
from partnerflow.models.discovery import Prospect
from partnerflow.models.outreach import Enrollment, Sequence
from partnerflow.stack import free_port
from partnerflow.tasks.contracting.documents import generate_contract
from partnerflow.tasks.contracting.signing import request_signature
from partnerflow.tasks.outreach.unsubscribe import unsubscribe_token
from partnerflow.web.app import create_app
from partnerflow.web.pages import page_env, render

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = "<script>alert(1)</script>"
QUOTE = "x' autofocus onfocus='alert(1)"  # would break out of a single-quoted attribute if not escaped
HOSTILE = f"{SCRIPT} {QUOTE}"

# --- no HTML in Python strings ------------------------------------------------------------------

HTML_TAG = re.compile(r"<\s*/?\s*(!doctype|html|head|body|title|meta|style|script|main|nav|section|div|span|p|a|b|i|"
                      r"em|strong|br|hr|h[1-6]|ul|ol|li|table|thead|tbody|tr|td|th|form|fieldset|legend|label|"
                      r"input|select|option|textarea|button|code|pre|img|iframe)(\s|>|/)", re.IGNORECASE)
# Modules allowed to hold HTML-looking strings because they make no page (path relative to the repository).
NOT_PAGES: dict[str, str] = {}


def html_strings(source: str) -> list[tuple[int, str]]:
    """(line, text) of each string literal in the module that holds an HTML tag; docstrings and bytes excluded,
    f-strings included (their literal parts are checked)."""
    tree = ast.parse(source)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
            and HTML_TAG.search(node.value)]


def test_the_html_finder_sees_tags_in_strings_and_f_strings_but_not_in_docstrings():
    source = ('"""A <p> in a docstring is prose."""\n'
              'A = "<p>plain</p>"\n'
              'def f(x):\n'
              '    """<form> here is prose too."""\n'
              '    return f"<label>{x}: <input name=\'n\'></label>" + "a < b" + "<click id>"\n'
              'B = rb"<meta charset=x>"\n')
    assert [line for line, _ in html_strings(source)] == [2, 5, 5]


def test_no_module_under_web_or_tasks_builds_html_in_a_python_string():
    found = []
    for folder in ("web", "tasks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = str(path.relative_to(ROOT))
            if relative in NOT_PAGES:
                continue
            found += [f"{relative}:{line}: {text[:60]!r}" for line, text in html_strings(path.read_text())]
    assert found == [], "HTML belongs in templates/<stage>/pages/*.html:\n" + "\n".join(found)


def test_every_page_template_extends_the_base_layout():
    pages = [p for p in sorted((ROOT / "templates").glob("*/pages/*.html")) if p.name != "macros.html"]
    assert len(pages) >= 6  # apply, sign, onboarding, unsubscribe and the messages at least
    for path in pages:
        template = str(path.relative_to(ROOT / "templates"))
        if template == "shared/pages/base.html":
            continue
        chain, name = [], template
        while name is not None:  # follow {% extends %} up to the layout
            extends = list(page_env().parse(page_env().loader.get_source(page_env(), name)[0]).find_all(
                jinja2.nodes.Extends))
            name = extends[0].template.value if extends else None
            chain.append(name)
        assert "shared/pages/base.html" in chain, f"{template} does not extend the base layout"


# --- escaping and strictness --------------------------------------------------------------------

def escaped(html: str, *values: str) -> bool:
    """None of the values appears raw; each appears escaped as the pages escape it."""
    return all(value not in html and page_env().from_string("{{ v }}").render(v=value) in html for value in values)


def test_a_missing_template_variable_fails_loudly():
    with pytest.raises(jinja2.UndefinedError, match="text"):
        render("shared/pages/message.html", title="Thank you")
    with pytest.raises(jinja2.UndefinedError):
        render("contracting/pages/apply.html", title="Apply")


def test_the_application_form_escapes_what_the_applicant_typed():
    client = TestClient(create_app())
    refused = client.post("/apply", data={"legal_name": HOSTILE, "contact_name": QUOTE, "email": "a@b.example",
                                          "website": SCRIPT, "channels": ["blog", SCRIPT], "country": SCRIPT})
    assert refused.status_code == 422 and "Please correct the fields" in refused.text
    assert escaped(refused.text, SCRIPT, QUOTE) and "<script" not in refused.text


def links(outbox: Path, path_prefix: str) -> set[str]:
    """The paths of every link starting with `path_prefix` mailed so far."""
    pattern = re.compile(r"https?://[^/\s]+(" + re.escape(path_prefix) + r"[A-Za-z0-9_\-]+)")
    return {path for message in mails(outbox) for path in pattern.findall(mail_text(message))}


def _new_link(outbox: Path, path_prefix: str, before: set[str]) -> str:
    (new,) = links(outbox, path_prefix) - before
    return new


def _signing_link(outbox, **overrides) -> tuple[int, str]:
    """(contract id, path of the signing link mailed for it) for a newly applied partner."""
    before = links(outbox, "/sign/")
    contract = generate_contract(approved_partner(**overrides))
    request_signature(contract.id)
    return contract.id, _new_link(outbox, "/sign/", before)


def test_the_signing_page_escapes_the_partner_the_document_and_the_typed_name(outbox):
    _, path = _signing_link(outbox, legal_name=f"Evil {SCRIPT} LLC", contact_name=f"Eve {QUOTE}")
    client = TestClient(create_app())
    form = client.get(path)
    assert form.status_code == 200 and "Partner Program Agreement" in form.text
    assert escaped(form.text, SCRIPT, QUOTE) and "<script" not in form.text
    refused = client.post(path, data={"signer_name": HOSTILE})  # no consent: the name comes back in the form
    assert refused.status_code == 422 and escaped(refused.text, SCRIPT, QUOTE)
    signed = client.post(path, data={"signer_name": "Eve Example", "consent": "yes"})
    assert signed.status_code == 200 and "agreement is signed" in signed.text and escaped(signed.text, SCRIPT)


def _onboarding_link(outbox, client, **overrides) -> str:
    """The path of the onboarding link mailed once the contract was signed on the signing page."""
    contract_id, path = _signing_link(outbox, **overrides)
    assert client.post(path, data={"signer_name": "Nora Wind", "consent": "yes"}).status_code == 200
    before = links(outbox, "/onboarding/")
    onboard_partner(contract_id)
    return _new_link(outbox, "/onboarding/", before)


def test_the_onboarding_form_escapes_what_was_typed_and_never_echoes_secrets(outbox):
    client = TestClient(create_app())
    path = _onboarding_link(outbox, client)
    refused = client.post(path, data={"tax_name": HOSTILE, "tax_address": SCRIPT, "tin": "123-45-6789",
                                      "payout_method": "paypal", "paypal_email": QUOTE,
                                      "stripe_account_id": "acct_secret123", "iban": "DE89370400440532013000"})
    assert refused.status_code == 422 and escaped(refused.text, SCRIPT, QUOTE)
    assert not [secret for secret in ("123-45-6789", "acct_secret123", "DE89370400440532013000")
                if secret in refused.text]


def _enrollment(email: str) -> int:
    with session_scope() as session:
        prospect = Prospect(email=email, name="Pat")
        sequence = Sequence(name="intro", version=1, definition_hash="x" * 64)
        session.add_all([prospect, sequence])
        session.flush()
        enrollment = Enrollment(prospect_id=prospect.id, sequence_id=sequence.id, sequence_name="intro", email=email)
        session.add(enrollment)
        session.flush()
        return enrollment.id


def test_the_unsubscribe_pages_escape_the_address_and_the_company(configure):
    configure(company_name=f"Acme {SCRIPT}")
    path = f"/u/{unsubscribe_token(_enrollment(f'{SCRIPT}@x.example'))}"
    client = TestClient(create_app())
    for answer in (client.get(path), client.post(path)):
        assert answer.status_code == 200 and escaped(answer.text, SCRIPT) and "<script" not in answer.text
    assert "Stop all emails" in client.get(path).text and "will not receive" in client.post(path).text


# --- on a phone -----------------------------------------------------------------------------------

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 3}
LONG_WORD = "Averyveryverylongunbrokenpartnernamewithoutanyspacesatall" * 2
W9_FORM = {"tax_name": "Nora Wind", "tax_address": "1 Main St, Austin TX", "tin": "12-3456789", "certify": "yes",
           "payout_method": "paypal", "paypal_email": "payouts@northwind.example"}


@pytest.fixture
def served() -> Iterator[str]:
    """The web app on a free local port (a thread of this process, on this test's database): its base URL."""
    require_chromium()  # before anything is started, not after
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the web app did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{server.config.port}"
    server.should_exit = True
    thread.join(30)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_no_partner_page_scrolls_sideways_on_a_phone(served, outbox):
    web = httpx.Client(base_url=served, timeout=30)
    _, sign_path = _signing_link(outbox, legal_name=f"{LONG_WORD} LLC", email="eve@evil.example",
                                 website="evil.example")
    onboarding_path = _onboarding_link(outbox, web)
    unsubscribe_path = f"/u/{unsubscribe_token(_enrollment(f'{LONG_WORD.lower()}@example.com'))}"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=require_chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(**PHONE)
            page.set_default_timeout(30_000)

            def fits(path: str, status: int, heading: str, answer=None) -> None:
                answer = answer or page.goto(served + path)
                assert answer.status == status, (path, answer.status)
                assert page.locator("h1").inner_text() == heading
                # A mobile browser zooms out of a page too wide for it, so its window grows past 390 px too.
                wide, window = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
                assert wide <= window == 390, f"{path} is {wide} px wide in a {window} px window on a 390 px phone"

            fits("/apply", 200, "Apply to the partner program")
            page.get_by_label("Legal name (person or company)").fill(LONG_WORD)
            with page.expect_navigation() as sent:  # no terms agreed: the form comes back with its errors
                page.get_by_role("button", name="Apply").click()
            fits("/apply (refused)", 422, "Apply to the partner program", sent.value)
            assert page.locator(".error").count() > 1
            fits(sign_path, 200, "Sign your partner agreement")
            fits(onboarding_path, 200, "Tax form and payout details")
            assert web.post(onboarding_path, data=W9_FORM).status_code == 200
            fits(onboarding_path, 410, "Link already used")
            fits(unsubscribe_path, 200, "Unsubscribe")
        finally:
            browser.close()
