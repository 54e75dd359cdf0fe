"""The fake providers' one fault mechanism (partnerflow.testing.faults), seen from an HTTP client."""

from __future__ import annotations

import httpx
import pytest

from partnerflow.testing.documenso import FakeDocumenso
from partnerflow.testing.paypal import FakePayPal
from partnerflow.testing.sendgrid import FakeSendGrid
from partnerflow.testing.stripe import API_KEY, FakeStripe

MAIL = {"personalizations": [{"to": [{"email": "a@example.com"}]}], "from": {"email": "us@example.com"},
        "subject": "Hi", "content": [{"type": "text/plain", "value": "Hello"}]}


@pytest.fixture
def sendgrid():
    with FakeSendGrid() as fake:
        yield fake


@pytest.fixture
def mail(sendgrid):
    client = httpx.Client(base_url=sendgrid.url, headers={"Authorization": "Bearer SG.test"}, timeout=0.5)

    def post():
        return client.post("/v3/mail/send", json=MAIL)

    yield post
    client.close()


def test_a_failure_answers_in_the_vendors_shape_before_anything_is_done(sendgrid, mail):
    sendgrid.faults.fail_next(429, retry_after=7, times=2)
    for _ in range(2):
        answer = mail()
        assert answer.status_code == 429 and answer.headers["Retry-After"] == "7"
        assert answer.json() == {"errors": [{"message": "fake failure 429"}]}
    assert mail().status_code == 202
    assert sendgrid.accepted_messages == 1 and sendgrid.attempts == 3


def test_a_refused_request_does_not_use_up_a_fault(sendgrid):
    sendgrid.faults.fail_next(500)
    assert httpx.post(sendgrid.url + "/v3/mail/send", json=MAIL).status_code == 401
    assert len(sendgrid.faults) == 1
    sendgrid.faults.clear()
    assert len(sendgrid.faults) == 0


def test_a_stall_after_the_effect_times_the_client_out_but_the_mail_was_accepted(sendgrid, mail):
    sendgrid.faults.stall_next(1.5, after_effect=True)
    with pytest.raises(httpx.ReadTimeout):
        mail()
    assert sendgrid.accepted_messages == 1


def test_a_drop_after_the_effect_breaks_the_answer_but_the_mail_was_accepted(sendgrid, mail):
    sendgrid.faults.drop_next()
    with pytest.raises(httpx.TransportError):
        mail()
    assert sendgrid.accepted_messages == 1
    assert mail().status_code == 202  # the next request is served as usual


def test_a_delay_lets_the_request_through_late(sendgrid):
    sendgrid.faults.delay_next(0.3)
    answer = httpx.post(sendgrid.url + "/v3/mail/send", json=MAIL, headers={"Authorization": "Bearer k"}, timeout=5)
    assert answer.status_code == 202 and answer.elapsed.total_seconds() >= 0.3


def test_a_stall_before_the_effect_ends_in_a_gateway_timeout_with_nothing_done():
    with FakeStripe() as stripe:
        stripe.faults.stall_next(0.2, after_effect=False)
        answer = httpx.post(stripe.url + "/v1/transfers", headers={"Authorization": f"Bearer {API_KEY}"},
                            data={"amount": "100", "currency": "usd", "destination": "acct_partner_one"})
        assert answer.status_code == 504 and answer.json()["error"]["type"] == "api_error"
        assert stripe.transfers == {}


def test_rail_faults_aim_at_writes_and_a_path_narrows_them():
    with FakeStripe() as stripe:
        auth = {"Authorization": f"Bearer {API_KEY}"}
        stripe.faults.fail_next(503)
        assert httpx.get(stripe.url + "/v1/transfers", headers=auth).status_code == 200  # reads are not faulted
        assert httpx.post(stripe.url + "/v1/transfers", headers=auth, data={}).status_code == 503
    with FakePayPal() as paypal:
        paypal.faults.fail_next(500)
        token = httpx.post(paypal.url + "/v1/oauth2/token", auth=("fake-client-id", "fake-client-secret"),
                           data={"grant_type": "client_credentials"})
        assert token.status_code == 200 and len(paypal.faults) == 1  # the token is not the payment
    with FakeDocumenso() as documenso:
        documenso.faults.fail_next(503, path_contains="/send")
        assert httpx.get(documenso.url + "/files/x.pdf").status_code == 200
        assert documenso.calls("GET", "/files/") == 1 and len(documenso.faults) == 1
