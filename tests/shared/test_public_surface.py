"""The public surface of the web app: /apply's rate limits, honeypot and generic answers, the reviewer's
escaped Markdown, the body size limit, token-page headers, and /healthz while a write is stuck."""

from __future__ import annotations

import re
import threading
import uuid

import pytest
from factories import application, approved_partner
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import func, select

from partnerflow.models import Application, Partner, WebhookEvent, get_engine, session_scope
from partnerflow.settings import ConfigError, check_settings, get_settings
from partnerflow.tasks.contracting.applications import submit_application
from partnerflow.tasks.contracting.policy import describe_for_reviewer, load_policy
from partnerflow.web import contracting as web_contracting
from partnerflow.web.app import create_app


def _count(model) -> int:
    with session_scope() as session:
        return session.exec(select(func.count()).select_from(model)).one()


def _form(**overrides) -> dict:
    data = application(**overrides)
    data["agreed_to_terms"] = "yes"
    return data


def test_a_duplicate_gets_the_answer_of_a_new_application_and_reveals_no_ids():
    partner_id = approved_partner(email="nora@northwind.example")
    client = TestClient(create_app())
    new_html = client.post("/apply", data=_form(email="new@fresh.example", website="https://fresh.example"))
    dup_html = client.post("/apply", data=_form(email="nora@northwind.example", website=""))
    assert (dup_html.status_code, dup_html.text) == (new_html.status_code, new_html.text) == (200, dup_html.text)
    new_api = client.post("/api/applications", json=application(email="other@third.example",
                                                                website="https://third.example"))
    dup_api = client.post("/api/applications", json=application(email="nora@northwind.example", website=""))
    assert dup_api.status_code == new_api.status_code == 202 and dup_api.json() == new_api.json()
    assert str(partner_id) not in dup_api.text and "partner" not in dup_api.text.lower()
    assert _count(Partner) == 3


def test_the_honeypot_field_stores_nothing_and_answers_like_success():
    client = TestClient(create_app())
    form = client.get("/apply").text
    assert "name='homepage'" in form and "tabindex='-1'" in form
    html = client.post("/apply", data={**_form(), "homepage": "http://spam.example"})
    api = client.post("/api/applications", json={**application(email="x@y.example"), "homepage": "spam"})
    assert html.status_code == 200 and "Thank you" in html.text and api.status_code == 202
    assert _count(Application) == 0 and _count(Partner) == 0


def test_applications_are_limited_per_client_address(configure):
    configure(web_apply_limit_per_ip="2/minute", web_apply_limit_per_domain="100/minute")
    client = TestClient(create_app())
    answers = [client.post("/apply", data=_form(email=f"a{i}@site{i}.example", website="")).status_code
               for i in range(3)]
    assert answers == [200, 200, 429]
    assert client.post("/api/applications", json=application(email="z@zz.example", website="")).status_code == 429
    assert _count(Application) == 2


def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(configure):
    configure(web_apply_limit_per_ip="1/minute", web_apply_limit_per_domain="100/minute",
              web_trusted_proxies="10.9.9.0/24")
    behind_proxy = TestClient(create_app(), client=("10.9.9.9", 40000))
    for i in range(3):  # three people behind our proxy: three client addresses
        answer = behind_proxy.post("/apply", data=_form(email=f"p{i}@p{i}.example", website=""),
                                   headers={"X-Forwarded-For": f"203.0.113.{i}, 10.9.9.8"})
        assert answer.status_code == 200
    direct = TestClient(create_app(), client=("198.51.100.7", 40000))
    first = direct.post("/apply", data=_form(email="d1@d1.example", website=""),
                        headers={"X-Forwarded-For": "203.0.113.50"})
    forged = direct.post("/apply", data=_form(email="d2@d2.example", website=""),
                         headers={"X-Forwarded-For": "203.0.113.51"})  # not our proxy: the header is ignored
    assert first.status_code == 200 and forged.status_code == 429
    assert _count(Application) == 4


def test_applications_are_limited_per_email_domain(configure):
    configure(web_apply_limit_per_ip="100/minute", web_apply_limit_per_domain="2/minute",
              web_trusted_proxies="10.9.9.9")
    client = TestClient(create_app(), client=("10.9.9.9", 40000))
    answers = [client.post("/apply", data=_form(email=f"v{i}@gmail.com", website=""),
                           headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code for i in range(3)]
    assert answers == [200, 200, 429]
    assert _count(Application) == 2


def test_redis_counters_are_shared_by_every_web_process(configure):
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url("redis://127.0.0.1:6379").ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    configure(web_rate_limit_storage="redis://127.0.0.1:6379", web_rate_limit_key_prefix=f"test-{uuid.uuid4().hex}",
              web_apply_limit_per_ip="2/minute", web_apply_limit_per_domain="100/minute")
    one, two = TestClient(create_app()), TestClient(create_app())  # two processes' apps, one Redis
    assert one.post("/apply", data=_form(email="r1@r1.example", website="")).status_code == 200
    assert two.post("/apply", data=_form(email="r2@r2.example", website="")).status_code == 200
    assert one.post("/apply", data=_form(email="r3@r3.example", website="")).status_code == 429
    assert two.post("/apply", data=_form(email="r4@r4.example", website="")).status_code == 429
    assert _count(Application) == 2


def test_applicant_text_is_escaped_in_the_reviewers_markdown():
    hostile = "Evil Corp](http://phish.example) ![x](http://track.example/p.png) <img src=x onerror=alert(1)>"
    app, _ = submit_application(application(legal_name=hostile, contact_name="| forged | row |\n# Approved",
                                            website=""))
    with session_scope() as session:
        stored = session.get(Application, app.id)
    description = describe_for_reviewer(stored, [{"severity": "low", "code": "free_mail",
                                                  "detail": f"{hostile} uses free mail"}], load_policy())
    assert not re.search(r"(?<!\\)[<\[\]]", description)  # no link, image or HTML tag left unescaped
    assert "\n# Approved" not in description and "| forged |" not in description
    assert r"Evil Corp\]\(http\://phish.example\)" in description  # still readable, as text


def test_a_body_over_the_limit_is_refused_before_it_is_read(configure):
    configure(web_max_body_bytes=2048, stripe_webhook_secret="whsec_" + "k" * 40, payout_rail="stripe",
              stripe_api_key="sk_test_x")
    client = TestClient(create_app())
    big = b"x" * 5000
    declared = client.post("/webhooks/stripe", content=big, headers={"content-type": "application/json",
                                                                     "stripe-signature": "t=1,v1=00"})
    chunked = client.post("/webhooks/stripe", content=iter([big[:1500], big[1500:]]),
                          headers={"content-type": "application/json", "stripe-signature": "t=1,v1=00"})
    form = client.post("/apply", content=iter([b"legal_name=" + big]),
                       headers={"content-type": "application/x-www-form-urlencoded"})
    assert [declared.status_code, chunked.status_code, form.status_code] == [413, 413, 413]
    assert "larger than this server accepts" in declared.json()["detail"]
    assert _count(WebhookEvent) == 0 and _count(Application) == 0
    assert client.post("/apply", data=_form()).status_code == 200  # a normal body still goes through


@pytest.mark.parametrize("path", ["/sign/abc", "/onboarding/abc", "/u/abc", "/r/abc"])
def test_token_pages_send_no_referrer_no_store_and_no_framing(path):
    answer = TestClient(create_app()).get(path, follow_redirects=False)
    assert answer.status_code < 500
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["content-security-policy"] == "frame-ancestors 'none'"


def _hold_write_lock():
    """A connection holding the database's write lock until released: (release function)."""
    engine = get_engine()
    if engine.dialect.name == "sqlite":
        conn = engine.raw_connection()
        conn.execute("BEGIN EXCLUSIVE")
        return conn.rollback
    conn = engine.connect()
    trans = conn.begin()
    conn.execute(text("LOCK TABLE partner IN EXCLUSIVE MODE"))
    return lambda: (trans.rollback(), conn.close())


def test_a_stuck_database_write_does_not_freeze_healthz(monkeypatch):
    reached = threading.Event()
    real = web_contracting.submit_application

    def submit_and_note(data):
        reached.set()
        return real(data)

    monkeypatch.setattr(web_contracting, "submit_application", submit_and_note)
    answers = {}
    with TestClient(create_app()) as client:
        release = _hold_write_lock()
        try:
            writer = threading.Thread(target=lambda: answers.update(apply=client.post("/apply", data=_form())))
            writer.start()
            assert reached.wait(60)
            health = client.get("/healthz")
            still_waiting = writer.is_alive()  # the application is still stuck behind the lock
        finally:
            release()
        writer.join(60)
    assert health.status_code == 200 and still_waiting
    assert answers["apply"].status_code == 200 and _count(Application) == 1


def test_unreachable_rate_limit_counters_refuse_for_now_and_store_nothing(configure):
    configure(web_rate_limit_storage="redis://127.0.0.1:1")  # nothing listens there
    client = TestClient(create_app())
    html = client.post("/apply", data=_form())
    api = client.post("/api/applications", json=application())
    assert html.status_code == api.status_code == 503 and "try again" in api.json()["detail"]
    assert _count(Application) == 0


@pytest.mark.parametrize("name, value", [("web_apply_limit_per_ip", "lots"),
                                         ("web_trusted_proxies", "10.0.0.1, proxy")])
def test_wrong_web_settings_are_one_sentence_at_start(configure, name, value):
    configure(**{name: value})
    with pytest.raises(ConfigError, match=f"PARTNERFLOW_{name.upper()}"):
        check_settings(get_settings())


def test_inbound_mail_has_its_own_larger_body_limit(configure):
    configure(web_max_body_bytes=2048, web_max_inbound_mail_bytes=20_000)
    client = TestClient(create_app())
    body = b"x" * 5000
    headers = {"content-type": "application/x-www-form-urlencoded"}
    assert client.post("/webhooks/sendgrid/inbound", content=body, headers=headers).status_code != 413
    assert client.post("/webhooks/sendgrid/inbound", content=body * 5, headers=headers).status_code == 413
    assert client.post("/webhooks/stripe", content=body, headers=headers).status_code == 413
