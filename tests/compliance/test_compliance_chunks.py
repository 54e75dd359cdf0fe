"""One chunk of the shared page check (`check-pages-chunk`), as a worker runs it for the fan-out.

The fan-out itself (chunk runs on a work pool shared by workers) runs in `bench/workers.py --smoke`,
which `make test` runs too.
"""

from __future__ import annotations

import pytest
from factories import findings
from pytest_httpserver import HTTPServer
from sqlmodel import select

from partnerflow.flows.compliance_chunks import check_pages_chunk
from partnerflow.models import Partner, Stage, session_scope
from partnerflow.models.compliance import PartnerPage
from partnerflow.tasks.compliance.pages import register_pages

FILLER = "<p>" + "Long review text about dashboards and analytics. " * 30 + "</p>"


@pytest.fixture
def server():
    srv = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    srv.start()
    srv.expect_request("/robots.txt").respond_with_data("User-agent: *\nAllow: /\n", content_type="text/plain")
    yield srv
    srv.clear()
    if srv.is_running():
        srv.stop()


@pytest.fixture(autouse=True)
def fast_fetch(configure):
    configure(compliance_per_domain_delay=0, compliance_fetch_timeout_seconds=5,
              compliance_allow_private_addresses=True)  # the pages are served on 127.0.0.1


def partner_with_page(server: HTTPServer, n: int, body: str) -> int:
    with session_scope() as session:
        partner = Partner(email=f"p{n}@blog{n}.example", legal_name=f"Blogger {n}", stage=Stage.ACTIVE,
                          tracking_code=f"PF{n}", coupon_code=f"C{n}")
        session.add(partner)
        session.flush()
        partner_id = partner.id
    link = f"<a href='https://acme.example/signup?ref=PF{n}'>try Acme</a>"
    server.expect_request(f"/post-{n}").respond_with_data(
        f"<!doctype html><html lang='en'><body>{body.format(link=link)}{FILLER}</body></html>",
        content_type="text/html")
    register_pages(partner_id, [server.url_for(f"/post-{n}")])
    return partner_id


def last_checked(partner_id: int):
    with session_scope() as session:
        return session.exec(select(PartnerPage.last_checked_at).where(PartnerPage.partner_id == partner_id)).one()


def test_a_chunk_checks_only_its_partners_and_sends_serious_findings_to_a_person(server):
    undisclosed = partner_with_page(server, 1, "<p>I love it: {link}</p>")
    disclosed = partner_with_page(server, 2, "<p>This post contains affiliate links. {link}</p>")
    elsewhere = partner_with_page(server, 3, "<p>I love it: {link}</p>")  # in another chunk

    result = check_pages_chunk(partner_ids=[undisclosed, disclosed])

    assert result["pages"] == 2 and result["pages_read"] == 2
    (row,) = findings(kind="disclosure")
    assert row.partner_id == undisclosed and row.rule == "disclosure.missing"
    assert result["opened"] == [row.id]
    assert result["review"] == [undisclosed]  # a missing disclosure is serious: a person decides
    assert last_checked(elsewhere) is None


def test_a_chunk_run_again_finds_the_same_finding_not_a_second_one(server):
    partner = partner_with_page(server, 1, "<p>I love it: {link}</p>")
    first = check_pages_chunk(partner_ids=[partner])
    again = check_pages_chunk(partner_ids=[partner])  # e.g. a chunk run retried after its worker died
    assert len(first["opened"]) == 1
    assert again["opened"] == [] and again["review"] == []
    assert [f.id for f in findings(kind="disclosure")] == first["opened"]
