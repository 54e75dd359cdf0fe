"""No portal route shows one partner another partner's data.

Every route under /portal in the app is found by walking app.routes, so a page added later is covered
without touching this file: without a session each one sends the visitor to sign in; each POST without
its CSRF token is refused; an id in the path or query that belongs to another partner is 404/403; and no
page signed in as one partner contains anything of the other's.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from factories import T0, make_partner
from fastapi.routing import APIRoute

from partnerflow.models import Commission, Contract, Conversion, Partner, Payout, PayoutBatch, session_scope
from partnerflow.models.contracting import ContractStatus, SignatureRequest, SignatureStatus
from partnerflow.models.onboarding import Onboarding
from partnerflow.models.payouts import CommissionStatus, PayoutBatchStatus, PayoutStatus
from partnerflow.models.tracking import Click
from partnerflow.secrets import token_hash
from partnerflow.settings import get_settings
from partnerflow.tasks.onboarding.clicks import landing_with
from partnerflow.web.app import create_app

# Routes anyone may reach: asking for and using a sign-in link, confirming payout details from the mail.
PUBLIC = {"/portal/sign-in", "/portal/sign-in/{token}", "/portal/payout-details/confirm/{token}"}
TOKEN_PARAMS = {"token"}
# What an id parameter names, by its name; an unknown id name is tried with every kind of the other's ids.
ID_KINDS = {"contract_id": "contract", "document_id": "contract", "commission_id": "commission",
            "payout_id": "payout", "conversion_id": "conversion", "click_id": "click", "partner_id": "partner",
            "batch_id": "batch", "id": None}
VICTIM = {"legal_name": "Zebulon Victim Media", "contact_name": "Zeb Victim", "email": "victim@zebulon.example",
          "tracking_code": "VICTIMCODE", "coupon_code": "VICTIMCOUPON", "payout_details_masked": "IBAN ••••VICT"}
VICTIM_MARKERS = ("Zebulon", "Zeb Victim", "zebulon.example", "VICTIMCODE", "VICTIMCOUPON", "VICT", "victim-landing",
                  "victim-product", "9,876.54", "9876.54", "VICTIM-CONTRACT-BODY", "W-9, TIN •••••9999")


def _api_routes(routes) -> list[APIRoute]:
    """Every APIRoute, also inside routers the app includes (FastAPI keeps those as included-router entries;
    the app adds no prefix to them)."""
    found = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif getattr(route, "original_router", None) is not None:
            found += _api_routes(route.original_router.routes)
    return found


def _portal_routes() -> list[tuple[str, str, APIRoute]]:
    routes = [(method, route.path, route) for route in _api_routes(create_app().routes)
              if route.path.startswith("/portal") for method in sorted(route.methods)]
    assert {"/portal/sign-in", "/portal/sign-out", "/portal/payout-details"} <= {path for _, path, _ in routes}
    return routes


def _path_params(path: str) -> list[str]:
    return [name.split(":")[0] for name in re.findall(r"{([^}]+)}", path)]


def _fill(path: str, values: dict[str, object]) -> str:
    return re.sub(r"{([^}:]+)(:[^}]*)?}", lambda m: str(values[m.group(1)]), path)


def _everything_of(n: int, *, amount: int, product: str, landing: str, document: bytes,
                   profile: dict[str, str] | None = None) -> dict[str, int]:
    """A partner with a signed contract (file and signature), a conversion and commission, a paid payout,
    a click and an onboarding row: {kind: id}."""
    partner_id = make_partner(n, currency="USD")
    documents = get_settings().documents_dir
    documents.mkdir(parents=True, exist_ok=True)
    (documents / f"signed-{n}.pdf").write_bytes(document)
    with session_scope() as session:
        contract = session.query(Contract).filter(Contract.partner_id == partner_id).one()
        contract.signed_path, contract.status = f"signed-{n}.pdf", ContractStatus.SIGNED
        session.add(contract)
        partner = session.get(Partner, partner_id)
        for name, value in (profile or {}).items():
            setattr(partner, name, value)
        session.add(partner)
        session.add(SignatureRequest(contract_id=contract.id, idempotency_key=f"contract:{contract.id}:sign",
                                     provider="builtin", signer_name=partner.contact_name, signer_email=partner.email,
                                     status=SignatureStatus.SIGNED, signed_at=T0, signed_name=partner.contact_name))
        conversion = Conversion(source="test", external_id=f"x-{n}", partner_id=partner_id, amount_minor=amount * 10,
                                currency="USD", occurred_at=T0, product=product)
        batch = PayoutBatch(status=PayoutBatchStatus.APPROVED, period_end=T0)
        session.add_all([conversion, batch])
        session.flush()
        payout = Payout(batch_id=batch.id, partner_id=partner_id, amount_minor=amount, currency="USD", rail="ledger",
                        idempotency_key=f"payout:{batch.id}:{partner_id}", status=PayoutStatus.PAID, paid_at=T0)
        session.add(payout)
        session.flush()
        commission = Commission(conversion_id=conversion.id, partner_id=partner_id, amount_minor=amount,
                                currency="USD", status=CommissionStatus.PAID, payout_id=payout.id, period="2026-01",
                                payable_at=T0 + timedelta(days=30))
        click_id = uuid.uuid4().hex
        click = Click(click_id=click_id, partner_id=partner_id, tracking_code=partner.tracking_code, clicked_at=T0,
                      landing_url=landing_with(landing, partner.tracking_code, click_id))  # as /r/{code} records it
        session.add_all([commission, click, Onboarding(partner_id=partner_id, token_hash=token_hash(f"t{n}"),
                                                       tax_form_kind="W-9", expires_at=T0, completed_at=T0,
                                                       tax_form_masked=f"W-9, TIN •••••{n}{n}{n}{n}")])
        session.flush()
        return {"partner": partner_id, "contract": contract.id, "commission": commission.id, "payout": payout.id,
                "conversion": conversion.id, "click": click.id, "batch": batch.id}


@pytest.fixture
def two_partners() -> tuple[dict[str, int], dict[str, int]]:
    """(the signed-in partner's ids, the victim's ids)."""
    mine = _everything_of(1, amount=1234, product="own-product", landing="https://acme.example/own-page",
                          document=b"OWN-CONTRACT-BODY")
    theirs = _everything_of(9, amount=987654, product="victim-product", landing="https://acme.example/victim-landing",
                            document=b"VICTIM-CONTRACT-BODY", profile=VICTIM)
    return mine, theirs


def _leaks(body: str) -> list[str]:
    return [marker for marker in VICTIM_MARKERS if marker in body]


def test_without_a_session_every_portal_route_sends_the_visitor_to_sign_in(two_partners, anonymous_client):
    mine, _ = two_partners
    checked = 0
    for method, path, _route in _portal_routes():
        if path in PUBLIC:
            continue
        url = _fill(path, {name: mine.get(ID_KINDS.get(name) or "partner", 1) for name in _path_params(path)})
        answer = anonymous_client.request(method, url, data={"csrf_token": "x"} if method == "POST" else None)
        assert (answer.status_code, answer.headers.get("location")) == (303, "/portal/sign-in"), (method, path)
        assert "no-store" in answer.headers["cache-control"], path  # no cache keeps a portal answer
        assert not _leaks(answer.text)
        checked += 1
    assert checked >= 3


def test_every_portal_post_without_its_csrf_token_is_refused(two_partners, portal_client):
    mine, _ = two_partners
    client = portal_client(mine["partner"])
    posts = [(path, route) for method, path, route in _portal_routes() if method == "POST"]
    assert "/portal/sign-out" in [path for path, _ in posts]
    for path, _route in posts:
        values = {name: "not-a-token" if name in TOKEN_PARAMS else mine.get(ID_KINDS.get(name) or "partner")
                  for name in _path_params(path)}
        for data in ({}, {"csrf_token": ""}, {"csrf_token": "0" * 64}):
            refused = client.post(_fill(path, values), data=data)
            assert refused.status_code == 403 and "no-store" in refused.headers["cache-control"], path
    assert client.get("/portal").status_code == 200  # still signed in: the refused sign-out did nothing


def test_another_partners_ids_are_not_found_on_any_route(two_partners, portal_client):
    mine, theirs = two_partners
    client = portal_client(mine["partner"])
    tried = 0
    for method, path, route in _portal_routes():
        if method != "GET" or path in PUBLIC:
            continue
        names = [n for n in _path_params(path) if n not in TOKEN_PARAMS]
        query = [p.name for p in route.dependant.query_params if p.name.endswith("_id") or p.name == "id"]
        for name in names + query:
            kind = ID_KINDS.get(name)
            candidates = [theirs[kind]] if kind else sorted(set(theirs.values()) - set(mine.values()))
            for value in candidates:
                own = {n: mine.get(ID_KINDS.get(n) or "partner") for n in names}
                url = _fill(path, {**own, name: value}) if name in names else _fill(path, own) + f"?{name}={value}"
                answer = client.get(url)
                assert answer.status_code in (403, 404), (url, answer.status_code)
                assert not _leaks(answer.text), (url, _leaks(answer.text))
                tried += 1
    assert tried >= 2  # the contract download and its certificate at least
    # ... and the same routes do answer with the partner's own ids, so the 404s above mean something
    assert client.get(f"/portal/documents/{mine['contract']}/signed").content == b"OWN-CONTRACT-BODY"
    assert client.get(f"/portal/documents/{theirs['contract']}/signed").status_code == 404


def test_no_portal_page_shows_anything_of_another_partner(two_partners, portal_client):
    mine, theirs = two_partners
    client = portal_client(mine["partner"])
    seen = 0
    for method, path, _route in _portal_routes():
        if method != "GET" or path in PUBLIC:
            continue
        url = _fill(path, {name: mine.get(ID_KINDS.get(name) or "partner") for name in _path_params(path)})
        answer = client.get(url)
        assert answer.status_code == 200, (url, answer.status_code)
        body = answer.content.decode("utf-8", "replace")
        assert not _leaks(body), (url, _leaks(body))
        seen += 1
    assert seen >= 3
    # The victim, signed in, does see their own data on the same pages: the markers are real.
    victim = portal_client(theirs["partner"])
    pages = "".join(victim.get(url).text for url in ("/portal", "/portal/commissions", "/portal/links",
                                                      "/portal/profile", "/portal/documents"))
    assert {"VICTIMCODE", "victim-product", "Zeb Victim"} <= set(_leaks(pages))
