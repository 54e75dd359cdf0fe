"""Applications: validation with field errors, duplicates, the HTML form, the JSON API, the CLI."""

from __future__ import annotations

import pytest
from factories import application
from fastapi.testclient import TestClient
from sqlmodel import select
from typer.testing import CliRunner

from partnerflow.models import Application, AuditLog, Partner, Stage, session_scope
from partnerflow.tasks.contracting.applications import (
    ApplicationInvalid,
    submit_application,
)
from partnerflow.web.app import create_app


def _counts():
    with session_scope() as session:
        return len(session.exec(select(Partner)).all()), len(session.exec(select(Application)).all())


def test_valid_application_creates_partner_application_and_audit():
    app, created = submit_application(application(email="Nora@NorthWind.Example"))
    assert created
    with session_scope() as session:
        partner = session.get(Partner, app.partner_id)
        assert partner.stage == Stage.APPLIED and partner.email == "nora@northwind.example"
        assert partner.domain == "northwind.example" and app.status == "received"
        assert session.exec(select(AuditLog).where(AuditLog.action == "application.received")).one()


def test_every_wrong_field_is_named():
    with pytest.raises(ApplicationInvalid) as err:
        submit_application({"legal_name": "", "email": "not-an-email", "country": "Germany", "partner_type": "spammer",
                            "tax_status": "?", "channels": ["carrier-pigeon"]})
    assert set(err.value.errors) == {"legal_name", "contact_name", "email", "country", "partner_type", "tax_status",
                                     "channels", "agreed_to_terms"}
    assert "two-letter" in err.value.errors["country"]
    assert _counts() == (0, 0)


@pytest.mark.parametrize("second", [
    {"email": "NORA@northwind.example"},                                     # same email, other case
    {"email": "sales@northwind.example", "website": ""},                     # same business domain by email
    {"email": "x@other.example", "website": "http://northwind.example/"},    # same website domain
])
def test_duplicates_are_detected_not_created(second):
    first, created = submit_application(application())
    dup, created_again = submit_application(application(**second))
    assert created and not created_again and dup.id == first.id
    assert _counts() == (1, 1)


def test_free_mail_users_are_not_duplicates_of_each_other():
    submit_application(application(email="a.person@gmail.com", website=""))
    _, created = submit_application(application(email="b.person@gmail.com", website=""))
    assert created and _counts() == (2, 2)


def test_json_api_field_errors_duplicates_and_success():
    client = TestClient(create_app())
    bad = client.post("/api/applications", json=application(email="nope", agreed_to_terms=False))
    assert bad.status_code == 422
    assert set(bad.json()["errors"]) == {"email", "agreed_to_terms"}
    assert {d["loc"][-1] for d in bad.json()["detail"]} == {"email", "agreed_to_terms"}
    ok = client.post("/api/applications", json=application())
    assert ok.status_code == 202 and ok.json()["status"] == "received"
    dup = client.post("/api/applications", json=application())
    assert dup.status_code == 202 and dup.json() == ok.json()  # no ids, nothing about who is a partner
    not_an_object = client.post("/api/applications", content=b"[1,2]", headers={"content-type": "application/json"})
    assert not_an_object.status_code == 400
    assert _counts() == (1, 1)


def test_html_form_without_javascript():
    client = TestClient(create_app())
    form = client.get("/apply")
    assert form.status_code == 200 and "<form method='post' action='/apply'>" in form.text
    assert "<script" not in form.text
    data = {k: v for k, v in application().items() if k not in ("channels", "promotional_methods", "agreed_to_terms")}
    missing_consent = client.post("/apply", data={**data, "channels": ["blog", "newsletter"]})
    assert missing_consent.status_code == 422
    assert "agree to the program terms" in missing_consent.text and "Northwind Media LLC" in missing_consent.text
    done = client.post("/apply", data={**data, "channels": ["blog", "newsletter"], "promotional_methods": ["content"],
                                       "agreed_to_terms": "yes"})
    assert done.status_code == 200 and "Thank you" in done.text
    with session_scope() as session:
        stored = session.exec(select(Application)).one()
        assert stored.channels == ["blog", "newsletter"] and stored.promotional_methods == ["content"]


def test_cli_apply_and_list():
    from partnerflow.cli import _register, app

    _register()
    runner = CliRunner()
    result = runner.invoke(app, ["apply", "--legal-name", "Cli Co", "--email", "hi@cli.example", "--country", "gb",
                                 "--website", "cli.example", "--partner-type", "referral", "--agree"])
    assert result.exit_code == 0, result.output
    assert "received" in result.output
    bad = runner.invoke(app, ["apply", "--legal-name", "Cli Co", "--email", "hi@cli", "--country", "gb"])
    assert bad.exit_code == 1 and "--email" in bad.output
    listed = runner.invoke(app, ["applications", "list"])
    assert listed.exit_code == 0 and "Cli Co <hi@cli.example>" in listed.output


@pytest.mark.parametrize("website", ["http://127.0.0.1:8765/", "http://10.0.0.7/admin", "http://127.1/",
                                     "http://[::ffff:169.254.169.254]/latest/meta-data/"])
def test_a_website_on_an_internal_address_is_refused(website):
    with pytest.raises(ApplicationInvalid) as err:
        submit_application(application(website=website))
    assert err.value.errors == {"website": "The website must be a public address on the internet."}
    assert _counts() == (0, 0)


def test_a_website_on_an_internal_address_is_accepted_only_when_configured(configure):
    configure(compliance_allow_private_addresses=True)
    _, created = submit_application(application(website="http://127.0.0.1:8000/"))
    assert created
