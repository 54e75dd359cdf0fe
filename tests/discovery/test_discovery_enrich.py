"""Enrichment and scoring: real pages served locally, hostile ones recorded, the run carries on."""

from __future__ import annotations

import time

import pytest
from prefect.artifacts import Artifact
from pytest_httpserver import HTTPServer
from werkzeug.wrappers import Response

from partnerflow.flows.discovery import enrich_prospects
from partnerflow.models import Partner, Prospect, session_scope
from partnerflow.settings import ConfigError
from partnerflow.tasks.discovery import scoring
from partnerflow.tasks.discovery.enrich import extract

GOOD_PAGE = """<!doctype html><html lang="en-US"><head>
<title>Metrics Mondays | Product analytics newsletter</title>
<meta name="description" content="Weekly notes on dashboards, KPIs and SaaS tools.">
<script>var tracking = "noreply@tracker.example";</script></head><body>
<nav><a href="/contact">Contact</a> <a href="/about#team">About</a></nav>
<p>This post contains affiliate links: we may earn a commission at no cost to you.</p>
<a href="mailto:Priya@MetricsMondays.example?subject=Hi">Email me</a>
<a href="https://twitter.com/intent/tweet?url=x">Share</a>
<a href="https://twitter.com/metricsmondays">Twitter</a>
<a href="https://www.youtube.com/@metricsmondays">YouTube</a>
<a href="https://www.linkedin.com/in/priya">LinkedIn</a>
<a href="https://www.amazon.com/dp/B0?tag=metrics-20">The book</a>
<p>Press: press [at] metricsmondays [dot] example. <img src="logo@2x.png"></p>
</body></html>"""


def test_extract_finds_contacts_profiles_and_affiliate_signals():
    info = extract(GOOD_PAGE, "https://metricsmondays.example/")
    assert info["title"] == "Metrics Mondays | Product analytics newsletter"
    assert info["description"] == "Weekly notes on dashboards, KPIs and SaaS tools."
    assert info["language"] == "en"
    assert info["emails"] == ["priya@metricsmondays.example", "press@metricsmondays.example"]
    assert info["contact_links"] == ["https://metricsmondays.example/contact"]
    assert info["social"] == {"twitter": "https://twitter.com/metricsmondays",
                              "youtube": "https://youtube.com/@metricsmondays",
                              "linkedin": "https://linkedin.com/in/priya"}
    assert info["has_affiliate_links"] and info["affiliate_links"] == ["amazon associates tag"]
    assert info["has_disclosure"] and "affiliate links" in info["disclosure_text"]
    assert "noreply@tracker.example" not in info["text"]  # scripts are not page text


def test_extract_plain_page_has_no_signals_and_guesses_language():
    html = ("<html><body><h1>Unser Blog</h1><p>" + "Wir schreiben über Daten und die Welt, und das mit "
            "Freude für die Leser, die nicht genug davon bekommen. " * 3 + "</p></body></html>")
    info = extract(html, "https://blog.example")
    assert info["language"] == "de"
    assert not info["has_affiliate_links"] and not info["has_disclosure"]
    assert info["emails"] == [] and info["social"] == {} and info["contact_links"] == []
    assert extract("", "https://x.example")["title"] == ""
    assert extract("<<<\x00>>>", "https://x.example")["emails"] == []


def test_score_reasons_add_up_to_the_score():
    policy = scoring.load_policy()
    total, reasons = scoring.score(
        {"topics": ["dashboards"], "audience_size": 48000, "email": "priya@metricsmondays.example"},
        extract(GOOD_PAGE, "https://metricsmondays.example/"), policy)
    assert reasons == [
        "+15 topic analytics (analytics, dashboards, kpi)",
        "+10 topic saas (saas)",
        "+14 audience 48,000 (at least 25,000)",
        "+8 contact email known",
        "+4 contact page found",
        "+6 social profiles (linkedin, twitter, youtube)",
        "+10 page already carries affiliate links",
        "+6 page has an affiliate/sponsorship disclosure",
        "+4 language en",
    ]
    assert total == sum(int(r.split()[0]) for r in reasons)
    unreachable, why = scoring.score({"topics": [], "audience_size": None, "email": None},
                                     {"error": "timeout"}, policy)
    assert unreachable == 0 and why == ["-15 page unreachable (timeout)", "score -15 clamped to 0"]


def test_custom_scoring_policy_and_bad_policy(configure, tmp_path):
    policy_file = tmp_path / "scoring.yaml"
    policy_file.write_text("topics:\n  fitness: {points: 40, keywords: [fitness, workout]}\n"
                           "signals: {contact_email: 1}\n")
    configure(discovery_scoring_policy=str(policy_file))
    total, reasons = scoring.score({"topics": ["Workout plans"], "email": "a@b.example"}, {})
    assert (total, reasons) == (41, ["+40 topic fitness (workout)", "+1 contact email known"])
    configure(discovery_scoring_policy=str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="cannot read"):
        scoring.load_policy()
    with pytest.raises(ConfigError, match="topics.fitness.points must be a whole number"):
        scoring.parse_policy({"topics": {"fitness": {"points": "lots", "keywords": ["fitness"]}}})


@pytest.fixture
def server():
    srv = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    srv.start()
    yield srv
    srv.clear()
    if srv.is_running():
        srv.stop()


def _slow(_request):
    time.sleep(2.5)
    return Response("<html>late</html>", content_type="text/html")


def _add(**fields) -> int:
    with session_scope() as session:
        prospect = Prospect(**fields)
        session.add(prospect)
        session.flush()
        return prospect.id


def test_enrichment_flow_records_every_outcome_and_continues(server, configure):
    configure(discovery_fetch_delay_seconds=0, discovery_fetch_timeout_seconds=1,
              discovery_allow_private_addresses=True, discovery_fetch_max_bytes=50_000, discovery_enrich_chunk_size=3)
    server.expect_request("/robots.txt").respond_with_data("User-agent: *\nDisallow: /private\n")
    server.expect_request("/metrics").respond_with_data(GOOD_PAGE, content_type="text/html; charset=utf-8")
    server.expect_request("/charts").respond_with_data(
        "<html><head><title>Chart Crafters</title></head><body>Data visualization studio. "
        "Write to grace@chartcrafters.example or hello@elsewhere.example</body></html>", content_type="text/html")
    server.expect_request("/slow").respond_with_handler(_slow)
    server.expect_request("/huge").respond_with_data("<p>" + "z" * 200_000 + "</p>", content_type="text/html")
    server.expect_request("/latin1").respond_with_data(
        "<html lang=de><title>Datenblog</title><body>Gr\u00fc\u00dfe aus M\u00fcnchen: Business Intelligence "
        "f\u00fcr alle</body></html>".encode("latin-1"), content_type="text/html; charset=utf-8")
    server.expect_request("/loop").respond_with_data("", status=302, headers={"Location": "/loop"})
    server.expect_request("/private/page").respond_with_data("<html>no</html>", content_type="text/html")
    server.expect_request("/doc.pdf").respond_with_data(b"%PDF-1.7", content_type="application/pdf")

    ids = {
        "metrics": _add(email="priya@metricsmondays.example", domain="metricsmondays.example",
                        website=server.url_for("/metrics"), topics=["analytics"], audience_size=48000),
        "charts": _add(domain="chartcrafters.example", website=server.url_for("/charts"), company="Chart Crafters"),
        "slow": _add(email="slow@slow.example", domain="slow.example", website=server.url_for("/slow")),
        "huge": _add(email="big@huge.example", domain="huge.example", website=server.url_for("/huge")),
        "latin1": _add(email="tom@datenblog.example", domain="datenblog.example", website=server.url_for("/latin1")),
        "loop": _add(email="l@loop.example", domain="loop.example", website=server.url_for("/loop")),
        "private": _add(email="p@private.example", domain="private.example", website=server.url_for("/private/page")),
        "pdf": _add(email="d@pdf.example", domain="pdf.example", website=server.url_for("/doc.pdf")),
        "nosite": _add(email="jo@nosite.example", domain="nosite.example", topics=["saas"]),
    }
    _add(email="done@old.example", domain="old.example", status="enrolled")  # not new: left alone

    result = enrich_prospects()

    with session_scope() as session:
        got = {name: session.get(Prospect, pid) for name, pid in ids.items()}
    errors = {name: p.enrichment.get("error") for name, p in got.items()}
    assert errors == {"metrics": None, "charts": None, "slow": "timeout", "huge": "too_large", "latin1": None,
                      "loop": "redirect_loop", "private": "robots_disallowed", "pdf": "not_html", "nosite": None}
    assert all(p.enriched_at is not None for p in got.values())
    assert got["nosite"].enrichment["skipped"] == "no website"
    assert result["enriched"] == 3 and result["failed"] == 5 and result["no_website"] == 1
    assert {f["error"] for f in result["failures"]} == {"timeout", "too_large", "redirect_loop",
                                                        "robots_disallowed", "not_html"}

    metrics = got["metrics"]
    assert metrics.enrichment["title"].startswith("Metrics Mondays")
    assert metrics.enrichment["has_affiliate_links"] and metrics.enrichment["has_disclosure"]
    assert metrics.score == sum(int(r.split()[0]) for r in metrics.score_reasons) and metrics.score > 50
    assert result["top"][0] == {"id": ids["metrics"], "score": metrics.score, "domain": "metricsmondays.example"}
    # The page's own-domain address is adopted for a prospect without one; the foreign one is not.
    assert got["charts"].email == "grace@chartcrafters.example"
    assert got["latin1"].enrichment["language"] == "de"
    assert "Grüße aus München" in got["latin1"].enrichment["text"]
    assert "-15 page unreachable (timeout)" in got["slow"].score_reasons

    markdown = Artifact.get("prospects-enrichment").data
    assert "| pages failed | 5 |" in markdown and "redirect_loop" in markdown and "Top candidates" in markdown
    assert Artifact.get("prospects-top").type == "table"

    # A second run without ids finds nothing new to do.
    assert enrich_prospects()["enriched"] == 0


def test_enrichment_does_not_take_an_address_already_used(server, configure):
    configure(discovery_fetch_delay_seconds=0, discovery_allow_private_addresses=True)
    server.expect_request("/robots.txt").respond_with_data("", status=404)
    server.expect_request("/p").respond_with_data("<html>mail owner@shop.example</html>", content_type="text/html")
    with session_scope() as session:
        session.add(Partner(email="owner@shop.example", legal_name="Shop Ltd"))
    pid = _add(domain="shop.example", website=server.url_for("/p"))
    enrich_prospects(prospect_ids=[pid])
    with session_scope() as session:
        prospect = session.get(Prospect, pid)
        assert prospect.email is None and prospect.enrichment["emails"] == ["owner@shop.example"]


def test_pages_on_private_addresses_are_refused_by_default(server, configure):
    configure(discovery_fetch_delay_seconds=0)
    server.expect_request("/internal").respond_with_data("<html>admin</html>", content_type="text/html")
    pid = _add(email="x@intranet.example", domain="intranet.example", website=server.url_for("/internal"))
    result = enrich_prospects(prospect_ids=[pid])
    assert result["failures"] == [{"id": pid, "domain": "intranet.example", "error": "private_address"}]
    assert server.log == []  # not even robots.txt was requested


def test_a_page_the_extractor_chokes_on_is_recorded_and_the_rest_scored(server, configure, monkeypatch):
    from partnerflow.tasks.discovery import enrich
    from partnerflow.tasks.discovery import enrichment as discovery

    configure(discovery_fetch_delay_seconds=0, discovery_allow_private_addresses=True)
    server.expect_request("/robots.txt").respond_with_data("", status=404)
    server.expect_request("/ok").respond_with_data(GOOD_PAGE, content_type="text/html")
    server.expect_request("/odd").respond_with_data("<html>odd</html>", content_type="text/html")
    real = enrich.extract

    def picky(html, url):
        if url.endswith("/odd"):
            raise RecursionError("pathological nesting")
        return real(html, url)

    monkeypatch.setattr(enrich, "extract", picky)
    ok = _add(email="a@ok.example", domain="ok.example", website=server.url_for("/ok"))
    odd = _add(email="b@odd.example", domain="odd.example", website=server.url_for("/odd"))
    rows = {r["id"]: r for r in discovery.enrich_batch([ok, odd])}
    assert rows[odd]["error"] == "extract_error:RecursionError" and rows[ok]["error"] is None
    assert rows[ok]["score"] > rows[odd]["score"]


def test_rescoring_after_a_policy_edit_uses_the_stored_enrichment(configure, tmp_path):
    from partnerflow.flows.discovery import rescore_prospects

    page = extract(GOOD_PAGE, "https://metricsmondays.example/")
    keep = _add(email="priya@metricsmondays.example", domain="metricsmondays.example", enrichment=page,
                score=1, score_reasons=["old"])
    plain = _add(email="jo@plain.example", domain="plain.example", topics=["fitness"])
    policy_file = tmp_path / "scoring.yaml"
    policy_file.write_text("topics:\n  analytics: {points: 30, keywords: [kpi]}\n"
                           "signals: {affiliate_links: 20}\n")
    configure(discovery_scoring_policy=str(policy_file))
    assert rescore_prospects() == {"prospects": 2, "changed": 1}
    with session_scope() as session:
        assert session.get(Prospect, keep).score_reasons == [
            "+30 topic analytics (kpi)", "+20 page already carries affiliate links"]
        assert session.get(Prospect, keep).score == 50
        assert session.get(Prospect, plain).score == 0
