"""Disclosure and brand-rule checks against real pages served locally, and hostile pages."""

from __future__ import annotations

import re
import time

import pytest
from factories import findings
from hypothesis import given, settings
from hypothesis import strategies as st
from pytest_httpserver import HTTPServer
from sqlmodel import select
from werkzeug.wrappers import Response

from partnerflow.flows.compliance import check_compliance
from partnerflow.models import Partner, Stage, session_scope
from partnerflow.models.compliance import FindingStatus, PartnerPage
from partnerflow.tasks.compliance.disclosure import PhraseMatcher
from partnerflow.tasks.compliance.pages import UNREADABLE, register_pages


@pytest.fixture
def server():
    srv = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    srv.start()
    srv.expect_request("/robots.txt").respond_with_data("User-agent: *\nDisallow: /private\n",
                                                        content_type="text/plain")
    yield srv
    srv.clear()
    if srv.is_running():
        srv.stop()


@pytest.fixture(autouse=True)
def fast_fetch(configure):
    configure(compliance_per_domain_delay=0, compliance_fetch_timeout_seconds=1.5, compliance_fetch_max_bytes=200_000,
              compliance_allow_private_addresses=True)  # the pages are served on 127.0.0.1


def page(body: str, lang: str = "en") -> str:
    return f"<!doctype html><html lang='{lang}'><head><title>Review</title></head><body>{body}</body></html>"


LINK = "<a href='https://acme.example/signup?ref=PF123'>try Acme</a>"
FILLER = "<p>" + "Long review text about dashboards and analytics. " * 30 + "</p>"


def make_partner(**kw) -> int:
    with session_scope() as session:
        p = Partner(email=kw.pop("email", "ann@blog.example"), legal_name=kw.pop("legal_name", "Ann Blogger"),
                    stage=Stage.ACTIVE, tracking_code=kw.pop("tracking_code", "PF123"),
                    coupon_code=kw.pop("coupon_code", "ANN10"), **kw)
        session.add(p)
        session.flush()
        return p.id


def by_url(server, rows):
    return {r.url.replace(server.url_for(""), "/").replace("//", "/"): r for r in rows}


def test_disclosure_cases_on_real_pages(server):
    server.expect_request("/good").respond_with_data(
        page(f"<p>This post contains affiliate links; I earn a commission.</p><p>{LINK}</p>{FILLER}"),
        content_type="text/html; charset=utf-8")
    server.expect_request("/near").respond_with_data(
        page(f"<p>{LINK} (#ad)</p>{FILLER}"), content_type="text/html")
    server.expect_request("/none").respond_with_data(page(f"<p>I love it: {LINK}</p>{FILLER}"),
                                                     content_type="text/html")
    server.expect_request("/footer").respond_with_data(
        page(f"<p>{LINK}</p>{FILLER}<footer>Disclosure: I earn a commission from purchases.</footer>"),
        content_type="text/html")
    server.expect_request("/late").respond_with_data(
        page(f"<p>{LINK}</p>{FILLER}<p>Sponsored.</p>"), content_type="text/html")
    server.expect_request("/german").respond_with_data(
        page(f"<p>Werbung: {LINK}</p>{FILLER}", lang="de"), content_type="text/html")
    server.expect_request("/nolink").respond_with_data(page("<p>No links here.</p>"), content_type="text/html")
    server.expect_request("/hashtag").respond_with_data(
        page(f"<p>#adventure time {LINK}</p>{FILLER}"), content_type="text/html")
    pid = make_partner()
    paths = ["/good", "/near", "/none", "/footer", "/late", "/german", "/nolink", "/hashtag"]
    register_pages(pid, [server.url_for(p) for p in paths])

    result = check_compliance(partner_id=pid)
    assert result["pages"] == 8 and result["pages_read"] == 8
    rows = by_url(server, findings(kind="disclosure"))
    assert set(rows) == {"/none", "/footer", "/late", "/hashtag"}  # "#adventure" is not "#ad"
    assert rows["/none"].rule == "disclosure.missing" and rows["/none"].severity == "high"
    assert rows["/footer"].rule == "disclosure.footer_only"
    assert rows["/late"].rule == "disclosure.late" and rows["/late"].evidence["chars_after_first_link"] > 300
    assert "try Acme" in rows["/none"].evidence["first_link_excerpt"]
    assert rows["/none"].evidence["reason"]


def test_rerun_does_not_duplicate_and_a_fixed_page_resolves(server):
    state = {"body": page(f"<p>{LINK}</p>{FILLER}")}
    server.expect_request("/post").respond_with_handler(
        lambda _r: Response(state["body"], content_type="text/html"))
    pid = make_partner()
    register_pages(pid, [server.url_for("/post")])
    check_compliance(partner_id=pid)
    check_compliance(partner_id=pid)
    rows = findings(kind="disclosure")
    assert len(rows) == 1 and rows[0].status == FindingStatus.OPEN

    state["body"] = page(f"<p>Affiliate link: {LINK}</p>{FILLER}")
    result = check_compliance(partner_id=pid)
    (row,) = findings(kind="disclosure")
    assert row.status == FindingStatus.RESOLVED and row.id in result["resolved"]
    assert "no longer found" in row.status_reason

    state["body"] = page(f"<p>{LINK}</p>{FILLER}")  # broken again: a new finding opens
    check_compliance(partner_id=pid)
    assert [r.status for r in findings(kind="disclosure")] == [FindingStatus.RESOLVED, FindingStatus.OPEN]


def _slow(_request):
    time.sleep(4)
    return Response(page(LINK), content_type="text/html")


def test_hostile_pages_are_could_not_check_never_compliant(server):
    server.expect_request("/slow").respond_with_handler(_slow)
    server.expect_request("/loop-a").respond_with_data("", status=302, headers={"Location": "/loop-b"})
    server.expect_request("/loop-b").respond_with_data("", status=302, headers={"Location": "/loop-a"})
    server.expect_request("/huge").respond_with_data(page("<p>" + "x" * 400_000 + "</p>"), content_type="text/html")
    server.expect_request("/pdf").respond_with_data(b"%PDF-1.4", content_type="application/pdf")
    server.expect_request("/gone").respond_with_data("nope", status=404)
    latin = page(f"<p>Café crème, schöne Grüße. Werbung: {LINK}</p>", lang="de").encode("latin-1")
    server.expect_request("/latin1").respond_with_data(latin, content_type="text/html; charset=utf-8")
    server.expect_request("/ok").respond_with_data(page(f"<p>#ad {LINK}</p>"), content_type="text/html")
    pid = make_partner()
    paths = ["/slow", "/loop-a", "/huge", "/pdf", "/gone", "/latin1", "/ok"]
    register_pages(pid, [server.url_for(p) for p in paths])

    result = check_compliance(partner_id=pid)  # does not raise
    assert result["pages"] == 7 and result["could_not_check"] == 6
    rows = by_url(server, findings(kind="could_not_check"))
    assert set(rows) == {"/slow", "/loop-a", "/huge", "/pdf", "/gone", "/latin1"}
    assert rows["/slow"].evidence["fetch_error"] == "timeout"
    assert rows["/loop-a"].evidence["fetch_error"] == "redirect_loop"
    assert rows["/huge"].evidence["fetch_error"] == "too_large"
    assert rows["/pdf"].evidence["fetch_error"] == "not_html"
    assert rows["/gone"].evidence["fetch_error"] == "http_404"
    assert rows["/latin1"].evidence["reason"].startswith("wrong_encoding")
    # What may reach the partner's notice mail (title and reason) never carries the fetcher's reason.
    assert {r.title for r in rows.values()} == {"Could not check the page"}
    assert {rows[p].evidence["reason"] for p in ("/slow", "/loop-a", "/huge", "/pdf", "/gone")} == {UNREADABLE}
    assert not findings(kind="disclosure")  # the latin-1 page was still read: its "Werbung" disclosure counts
    with session_scope() as session:
        results = {p.url.rsplit("/", 1)[1]: p.last_result for p in session.exec(select(PartnerPage)).all()}
    assert results["ok"] == "ok" and results["slow"] == "could_not_check:timeout"


def test_brand_and_claims_rules(server):
    server.expect_request("/claims").respond_with_data(page(
        f"<p>#ad {LINK}. With Acme you can earn $3,000 per month and it is FDA approved!</p>"),
        content_type="text/html")
    server.expect_request("/coupons").respond_with_data(page(
        "<h1>All coupons</h1><p>Best promo codes today: ANN10 gives 10% off</p>"), content_type="text/html")
    server.expect_request("/clean").respond_with_data(page(
        f"<p>Affiliate link: {LINK}. Acme helps teams read their numbers.</p>"), content_type="text/html")
    pid = make_partner()
    reseller = make_partner(email="r@shop.example", legal_name="Shop Ltd", tracking_code="RS1", coupon_code="RS10",
                            partner_type="reseller")
    server.expect_request("/reseller-coupons").respond_with_data(page(
        "<p>Promo codes: RS10</p>"), content_type="text/html")
    register_pages(pid, [server.url_for(p) for p in ("/claims", "/coupons", "/clean")])
    register_pages(reseller, [server.url_for("/reseller-coupons")])
    check_compliance()
    rows = findings(kind="brand_rule")
    got = {(r.rule, r.url.rsplit("/", 1)[1]) for r in rows}
    assert got == {("claims.income", "claims"), ("claims.health", "claims"), ("coupon.listing", "coupons")}
    income = next(r for r in rows if r.rule == "claims.income")
    assert income.severity == "high" and income.evidence["matched"] == "earn $3,000 per month"
    assert all(r.partner_id == pid for r in rows)  # resellers may list their coupon


def test_partners_not_active_are_skipped_by_the_daily_run(server):
    server.expect_request("/p").respond_with_data(page(f"<p>{LINK}</p>"), content_type="text/html")
    pid = make_partner(stage=Stage.SUSPENDED) if False else make_partner()
    with session_scope() as session:
        p = session.get(Partner, pid)
        p.stage = Stage.REJECTED
        session.add(p)
    register_pages(pid, [server.url_for("/p")])
    assert check_compliance()["partners"] == 0
    assert check_compliance(partner_id=pid)["pages"] == 1  # but can be checked on purpose


def test_register_pages_refuses_non_http():
    pid = make_partner()
    with pytest.raises(ValueError, match="not an http"):
        register_pages(pid, ["javascript:alert(1)"])
    assert register_pages(pid, ["https://blog.example/a", "https://blog.example/a"]) == 1


PHRASE_TEXT = st.text(alphabet="ab #_-.é1", max_size=40)


@settings(max_examples=300, deadline=None)
@given(phrases=st.lists(st.text(alphabet="ab #_-.é1", min_size=1, max_size=4), min_size=1, max_size=5),
       text=PHRASE_TEXT)
def test_phrases_are_found_as_whole_words_exactly_where_the_reference_regex_finds_them(phrases, text):
    """The fast phrase search gives what a whole-word regex does: "#ad" is not found in "#adventure" or "bad",
    the longest phrase wins at a position, hits never overlap."""
    matcher = PhraseMatcher(phrases)
    if not matcher.phrases:
        return
    body = "|".join(re.escape(p) for p in matcher.phrases)
    reference = re.compile(rf"(?<![\w#])(?:{body})(?![\w])")
    assert [(m.start(), m.end(), m.group(0)) for m in matcher.finditer(text)] == \
        [(m.start(), m.end(), m.group(0)) for m in reference.finditer(text)]
    first = reference.search(text)
    found = matcher.search(text)
    assert (found.start(), found.end()) == (first.start(), first.end()) if first else found is None
