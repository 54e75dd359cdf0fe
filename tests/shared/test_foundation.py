"""Configuration, database, secrets, audit log and single-mail delivery."""

from __future__ import annotations

import email
import subprocess
import sys
from decimal import Decimal

import pytest
from sqlmodel import select

from partnerflow import secrets
from partnerflow.models import AuditLog, Message, MessageStatus, audit, session_scope
from partnerflow.settings import ConfigError, check_settings, get_settings
from partnerflow.tasks.shared import money
from partnerflow.tasks.shared.mail import TemplateError, deliver


def run_cli(*args, env=None):
    import os

    return subprocess.run([sys.executable, "-m", "partnerflow.cli.__main__", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=120)


def test_unknown_provider_is_one_clear_sentence(configure):
    settings = configure(email_provider="carrier-pigeon")
    with pytest.raises(ConfigError, match=r"PARTNERFLOW_EMAIL_PROVIDER='carrier-pigeon' is not a known choice"):
        check_settings(settings)


def test_saas_provider_without_key_names_the_missing_setting(configure):
    with pytest.raises(ConfigError, match="PARTNERFLOW_STRIPE_API_KEY"):
        check_settings(configure(payout_rail="stripe"))


def test_a_wrong_payout_setting_does_not_stop_mail_delivery(configure, outbox):
    configure(payout_rail="stripe")  # no PARTNERFLOW_STRIPE_API_KEY
    message = deliver("notice:rail", kind="notice", to_email="ann@example.com", template="shared/test_notice",
                      context={"name": "Ann"})
    assert message.status == MessageStatus.SENT and len(list(outbox.glob("*.eml"))) == 1
    with pytest.raises(ConfigError, match="PARTNERFLOW_PAYOUT_RAIL=stripe needs PARTNERFLOW_STRIPE_API_KEY"):
        check_settings(get_settings())


def test_a_malformed_number_names_its_setting(configure):
    settings = configure(payout_claim_lease_seconds="soon")
    assert settings.mail.email_provider == "outbox"
    with pytest.raises(ConfigError, match="PARTNERFLOW_PAYOUT_CLAIM_LEASE_SECONDS is invalid"):
        check_settings(settings)


def test_cli_reports_unreachable_database_without_traceback():
    result = run_cli("status", env={"PARTNERFLOW_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    assert result.returncode == 2
    assert "PARTNERFLOW_DATABASE_URL: cannot connect" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_on_a_database_without_tables_says_how_to_create_them(tmp_path):
    result = run_cli("status", env={"PARTNERFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"})
    assert result.returncode == 2
    assert "the database has no Partnerflow tables yet; run `partnerflow db upgrade` to create them." in result.stderr
    assert "Traceback" not in result.stderr


def test_plain_postgresql_url_uses_psycopg(configure):
    settings = configure(database_url="postgresql://user@db.internal/partners")
    assert settings.resolved_database_url == "postgresql+psycopg://user@db.internal/partners"


def test_migrations_match_the_tables():
    from partnerflow import dbtools

    assert dbtools.pending_changes() == []


def test_audit_log_is_append_only():
    with session_scope() as session:
        row = audit(session, actor="alice", action="application.approved", subject_type="application", subject_id=1)
    with pytest.raises(PermissionError), session_scope() as session:
        stored = session.get(AuditLog, row.id)
        stored.actor = "mallory"
        session.add(stored)
    with session_scope() as session:
        assert session.get(AuditLog, row.id).actor == "alice"


def test_money_is_exact_and_refuses_floats():
    assert money.to_minor("12.34", "USD") == 1234
    assert money.to_minor("1,000", "JPY") == 1000
    assert money.round_minor(Decimal("2.5")) == 2 and money.round_minor(Decimal("3.5")) == 4
    assert money.format_money(123456, "EUR") == "1,234.56 EUR"
    with pytest.raises(TypeError):
        money.to_minor(12.34, "USD")
    with pytest.raises(ValueError, match="more decimals"):
        money.to_minor("1.001", "USD")


def test_secrets_round_trip_and_mask():
    token = secrets.encrypt("DE89370400440532013000")
    assert "DE89" not in token
    assert secrets.decrypt(token) == "DE89370400440532013000"
    assert secrets.mask("DE89370400440532013000").endswith("3000")
    assert "DE89" not in secrets.mask("DE89370400440532013000")
    assert secrets.token_hash("abc") != "abc" and len(secrets.token_hash("abc")) == 64


def test_deliver_sends_once_per_key(outbox):
    mail = {"kind": "notice", "to_email": "ann@example.com", "template": "shared/test_notice",
            "context": {"name": "Ann"}}
    first = deliver("notice:1", **mail)
    again = deliver("notice:1", **mail)
    assert first.status == again.status == MessageStatus.SENT
    files = list(outbox.glob("*.eml"))
    assert len(files) == 1
    parsed = email.message_from_bytes(files[0].read_bytes())
    assert parsed["To"] == "ann@example.com" and parsed["Subject"] == "Hello Ann"
    assert get_settings().mail.postal_address in files[0].read_text()
    with session_scope() as session:
        assert len(session.exec(select(Message)).all()) == 1


def test_missing_merge_field_fails_before_anything_is_recorded(outbox):
    with pytest.raises(TemplateError, match="shared/email/test_notice/subject.txt: 'name' is undefined"):
        deliver("notice:2", kind="notice", to_email="bob@example.com", template="shared/test_notice", context={})
    assert not outbox.exists() or not list(outbox.glob("*.eml"))
    with session_scope() as session:
        assert session.exec(select(Message)).all() == []


def test_status_counts_partners_by_stage_and_paid_payouts():
    from factories import make_partner, make_payout

    from partnerflow.models.payouts import PayoutStatus
    from partnerflow.status import collect_status

    paid = make_partner(1)
    make_payout(paid, rail="ledger", status=PayoutStatus.PAID)
    make_payout(make_partner(2), rail="ledger", status=PayoutStatus.FAILED)
    status = collect_status()
    assert status["payouts_paid"] == 1
    assert status["partners_by_stage"]["active"] == 2
    assert all(type(stage) is str for stage in status["partners_by_stage"])
