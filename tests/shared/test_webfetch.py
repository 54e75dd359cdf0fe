"""The polite fetcher against real local pages: every hostile page is recorded, none stops the others."""

from __future__ import annotations

import ipaddress
import socket
import time

import pytest
from pytest_httpserver import HTTPServer
from werkzeug.wrappers import Response

from partnerflow.tasks.shared import webfetch
from partnerflow.tasks.shared.addresses import is_public_address, website_refusal
from partnerflow.tasks.shared.webfetch import fetch_pages


@pytest.fixture
def server():
    srv = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    srv.start()
    yield srv
    srv.clear()
    if srv.is_running():
        srv.stop()


def _slow(_request):
    time.sleep(3)
    return Response("<html>late</html>", content_type="text/html")


def _endless(_request):
    def body():
        for _ in range(10_000):
            yield b"<p>" + b"x" * 1000 + b"</p>"
    return Response(body(), content_type="text/html")  # streamed, no Content-Length


def test_hostile_pages_are_recorded_and_good_pages_still_fetched(server):
    server.expect_request("/robots.txt").respond_with_data("User-agent: *\nDisallow: /private\n",
                                                           content_type="text/plain")
    server.expect_request("/good").respond_with_data(
        "<html><head><title>Good</title></head><body>Hi</body></html>", content_type="text/html; charset=utf-8")
    server.expect_request("/slow").respond_with_handler(_slow)
    server.expect_request("/huge").respond_with_data("<p>" + "y" * 300_000 + "</p>", content_type="text/html")
    server.expect_request("/endless").respond_with_handler(_endless)
    server.expect_request("/latin1").respond_with_data(
        "<html><body>Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e, sch\u00f6ne Gr\u00fc\u00dfe</body></html>"
        .encode("latin-1"),
        content_type="text/html; charset=utf-8")
    server.expect_request("/loop-a").respond_with_data("", status=302, headers={"Location": "/loop-b"})
    server.expect_request("/loop-b").respond_with_data("", status=302, headers={"Location": "/loop-a"})
    server.expect_request("/private/page").respond_with_data("<html>secret</html>", content_type="text/html")
    server.expect_request("/file.pdf").respond_with_data(b"%PDF-1.4 ...", content_type="application/pdf")
    server.expect_request("/gone").respond_with_data("nope", status=404)
    server.expect_request("/moved").respond_with_data("", status=301, headers={"Location": "/good"})

    paths = ["/good", "/slow", "/huge", "/endless", "/latin1", "/loop-a", "/private/page", "/file.pdf",
             "/gone", "/moved"]
    urls = [server.url_for(p) for p in paths] + ["http://127.0.0.1:1/closed", "ftp://example.com/x"]
    started = time.monotonic()
    results = fetch_pages(urls, per_domain_delay=0, timeout=1.0, max_bytes=100_000,
                          allow_private=True)
    assert time.monotonic() - started < 3.0  # the slow page did not hold everything up
    by_path = dict(zip(paths + ["closed", "ftp"], results, strict=True))

    good = by_path["/good"]
    assert good.ok and good.error is None and good.status_code == 200 and "<title>Good</title>" in good.text
    assert by_path["/slow"].error == "timeout" and not by_path["/slow"].ok
    assert by_path["/huge"].error == "too_large"
    assert by_path["/endless"].error == "too_large"
    latin = by_path["/latin1"]
    assert latin.ok and "Café crème brûlée, schöne Grüße" in latin.text
    assert "charset_mismatch:utf-8" in latin.notes
    assert by_path["/loop-a"].error == "redirect_loop"
    assert by_path["/private/page"].error == "robots_disallowed"
    assert by_path["/file.pdf"].error == "not_html" and by_path["/file.pdf"].content_type == "application/pdf"
    assert by_path["/gone"].error == "http_404" and by_path["/gone"].status_code == 404
    moved = by_path["/moved"]
    assert moved.ok and moved.final_url == server.url_for("/good") and "Good" in moved.text
    assert by_path["closed"].error == "connection_error"
    assert by_path["ftp"].error == "invalid_url"
    # robots.txt was read once for the whole host, and the disallowed page was never requested.
    requested = [req.path for req, _ in server.log]
    assert requested.count("/robots.txt") == 1
    assert "/private/page" not in requested


def test_robots_can_be_ignored_and_server_error_on_robots_means_disallow(server):
    server.expect_request("/robots.txt").respond_with_data("oops", status=503)
    server.expect_request("/page").respond_with_data("<html>ok</html>", content_type="text/html")
    [polite] = fetch_pages([server.url_for("/page")], per_domain_delay=0, allow_private=True)
    assert polite.error == "robots_disallowed"
    [rude] = fetch_pages([server.url_for("/page")], per_domain_delay=0, respect_robots=False,
                           allow_private=True)
    assert rude.ok and rude.text == "<html>ok</html>"


def test_missing_robots_allows_and_meta_charset_is_used(server):
    server.expect_request("/robots.txt").respond_with_data("", status=404)
    body = '<html><head><meta charset="windows-1252"></head><body>\u201cquoted\u201d</body></html>'.encode("cp1252")
    server.expect_request("/meta").respond_with_data(body, content_type="text/html")
    [page] = fetch_pages([server.url_for("/meta")], per_domain_delay=0, allow_private=True)
    assert page.ok and "\u201cquoted\u201d" in page.text and page.encoding == "cp1252"


def test_requests_to_one_host_are_spaced_by_the_politeness_delay(server):
    arrivals = []

    def stamp(_request):
        arrivals.append(time.monotonic())
        return Response("<html>p</html>", content_type="text/html")

    server.expect_request("/robots.txt").respond_with_handler(
        lambda r: (arrivals.append(time.monotonic()), Response("", status=404))[1])
    for i in range(3):
        server.expect_request(f"/p{i}").respond_with_handler(stamp)
    results = fetch_pages([server.url_for(f"/p{i}") for i in range(3)], per_domain_delay=0.3, concurrency=10,
                          allow_private=True)
    assert all(r.ok for r in results)
    # robots.txt + 3 pages = 4 requests to the host, spaced by the delay despite concurrency 10:
    # 3 gaps of 0.3 s (unspaced, they all arrive within milliseconds). Measured over the whole span,
    # because on a loaded machine one request can reach the server late and shorten a single gap.
    arrivals.sort()
    assert len(arrivals) == 4
    assert arrivals[-1] - arrivals[0] >= 0.7


def test_binary_garbage_served_as_html_is_a_decode_error(server):
    import random

    rng = random.Random(7)
    server.expect_request("/robots.txt").respond_with_data("", status=404)
    server.expect_request("/garbage").respond_with_data(bytes(rng.randrange(256) for _ in range(5000)),
                                                        content_type="text/html")
    [page] = fetch_pages([server.url_for("/garbage")], per_domain_delay=0, allow_private=True)
    assert not page.ok and page.error == "decode_error" and page.text is None


def test_private_addresses_refused_when_asked_and_crawl_delay_obeyed(server):
    arrivals = []

    def stamp(_request):
        arrivals.append(time.monotonic())
        return Response("<html>p</html>", content_type="text/html")

    server.expect_request("/robots.txt").respond_with_data("User-agent: PartnerflowBot\nCrawl-delay: 1\n")
    server.expect_request("/a").respond_with_handler(stamp)
    server.expect_request("/b").respond_with_handler(stamp)
    urls = [server.url_for("/a"), server.url_for("/b")]
    refused = fetch_pages(urls + ["http://localhost:9/x", "http://10.1.2.3/"], per_domain_delay=0)  # the default
    assert [r.error for r in refused] == ["private_address"] * 4 and server.log == []
    results = fetch_pages(urls, per_domain_delay=0, allow_private=True)
    assert all(r.ok for r in results)
    assert len(arrivals) == 2 and abs(arrivals[1] - arrivals[0]) >= 0.9  # the site asked for 1 s


def test_a_slow_to_visit_host_does_not_hold_up_other_hosts(server):
    # Eight pages on 127.0.0.1 spaced 0.5 s apart and one page on "localhost" (another host), with
    # two slots: the other host's page is fetched right away, not after the queue of the first.
    server.expect_request("/robots.txt").respond_with_data("", status=404)
    for i in range(8):
        server.expect_request(f"/q{i}").respond_with_data("<html>q</html>", content_type="text/html")
    other = server.url_for("/q0").replace("127.0.0.1", "localhost")
    results = fetch_pages([server.url_for(f"/q{i}") for i in range(8)] + [other],
                          per_domain_delay=0.5, concurrency=2, allow_private=True)
    assert all(r.ok for r in results)
    assert results[-1].elapsed_ms < 1500


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1",
    "240.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fc00::1", "ff02::1", "::ffff:127.0.0.1",
    "::ffff:8.8.8.8", "64:ff9b::7f00:1", "64:ff9b::808:808", "2002:7f00:1::1", "2001:0:4136:e378::1", "::7f00:1",
])
def test_addresses_that_could_reach_inside_are_not_public(address):
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111"])
def test_internet_addresses_are_public(address):
    assert is_public_address(ipaddress.ip_address(address))


def test_a_redirect_to_an_internal_address_is_refused(server, monkeypatch):
    # The first page is on an address we treat as public for the test; it redirects to an internal one.
    monkeypatch.setattr(webfetch, "is_public_address", lambda a: str(a) == "127.0.0.1")
    server.expect_request("/robots.txt").respond_with_data("", status=404)
    server.expect_request("/jump").respond_with_data("", status=302, headers={"Location": "http://10.0.0.7/admin"})
    [page] = fetch_pages([server.url_for("/jump")], per_domain_delay=0)
    assert page.error == "private_address" and page.final_url == "http://10.0.0.7/admin"


def test_the_connection_goes_to_the_address_that_was_checked(server, monkeypatch):
    """DNS rebinding: the name answers a checked address once, then an internal one; we never ask twice."""
    real = socket.getaddrinfo
    lookups = []

    def rebinding(host, port, *args, **kwargs):
        if host == "shop.example":
            lookups.append(host)
            ip = "127.0.0.1" if len(lookups) == 1 else "10.0.0.7"
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    monkeypatch.setattr(webfetch, "is_public_address", lambda a: str(a) == "127.0.0.1")
    server.expect_request("/robots.txt").respond_with_data("", status=404)
    server.expect_request("/page").respond_with_data("<html>shop</html>", content_type="text/html")
    url = server.url_for("/page").replace("127.0.0.1", "shop.example")
    [page] = fetch_pages([url], per_domain_delay=0, timeout=2)
    assert page.ok and page.text == "<html>shop</html>" and lookups == ["shop.example"]
    assert {request.headers["Host"] for request, _ in server.log} == {f"shop.example:{server.port}"}


def test_a_website_on_an_internal_address_is_refused_at_application_time():
    assert website_refusal("http://127.0.0.1:8080/") == "private_address"
    assert website_refusal("localhost") == "private_address"
    assert website_refusal("http://[::ffff:10.0.0.1]/") == "private_address"
    assert website_refusal("https://8.8.8.8/") is None
    assert website_refusal("https://no-such-name.example/") is None  # checked again on every fetch
