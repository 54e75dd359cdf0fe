"""Secrets: empty or short ones refused at start, keys with ids that rotate, the key file private from birth."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken
from factories import partner_with_payout_details
from sqlmodel import select
from typer.testing import CliRunner

from partnerflow import secrets
from partnerflow.models import AuditLog, Partner, session_scope
from partnerflow.settings import ConfigError, check_settings, get_settings, reset_settings
from partnerflow.tasks.outreach.unsubscribe import enrollment_for_token, unsubscribe_token
from partnerflow.tasks.shared.key_rotation import rotate, values_by_key

OLD_KEY = "old-key-" + "o" * 40
NEW_KEY = "new-key-" + "n" * 40


def keys_in_a_key_file(configure, var_dir: Path) -> None:
    """No PARTNERFLOW_SECRET_KEY: keys come from var_dir/secret.key (the database stays where it is)."""
    configure(database_url=get_settings().resolved_database_url, secret_key=None, var_dir=var_dir)


def stored_details() -> list[str]:
    with session_scope() as session:
        return [p.payout_details_encrypted for p in session.exec(select(Partner).order_by(Partner.id))]


def audits(action: str) -> list[AuditLog]:
    with session_scope() as session:
        return list(session.exec(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)))


# --- empty or short secrets -----------------------------------------------------------------

@pytest.mark.parametrize(("setting", "value", "phrase"), [
    ("secret_key", "", "is set but empty"),
    ("secret_key", "short-key", "is too short"),
    ("previous_secret_keys", f"{OLD_KEY},tiny", "is too short"),
    ("stripe_webhook_secret", "", "is set but empty"),
    ("stripe_webhook_secret", "   ", "is set but empty"),
    ("sendgrid_inbound_token", "", "is set but empty"),
    ("sendgrid_inbound_token", "guessable", "is too short"),
    ("sendgrid_webhook_public_key", "", "is set but empty"),
    ("documenso_webhook_secret", "", "is set but empty"),
    ("documenso_webhook_secret", "s3cret", "is too short"),
    ("docusign_connect_hmac_key", "", "is set but empty"),
    ("dropbox_sign_api_key", "", "is set but empty"),
    ("paypal_client_secret", "", "is set but empty"),
])
def test_an_empty_or_short_secret_is_refused_at_start_naming_the_setting(monkeypatch, setting, value, phrase):
    monkeypatch.setenv(f"PARTNERFLOW_{setting.upper()}", value)
    reset_settings()
    with pytest.raises(ConfigError) as caught:
        check_settings(get_settings())
    message = str(caught.value)
    assert message.startswith(f"PARTNERFLOW_{setting.upper()} ") and phrase in message
    assert value.strip() == "" or value not in message  # the secret itself is never echoed


def test_the_command_line_refuses_to_start_with_an_empty_secret_key(monkeypatch, capsys):
    from partnerflow.cli import main

    monkeypatch.setenv("PARTNERFLOW_SECRET_KEY", "")
    reset_settings()
    monkeypatch.setattr("sys.argv", ["partnerflow", "keys", "list"])
    with pytest.raises(SystemExit) as caught:
        main()
    assert caught.value.code == 2 and "PARTNERFLOW_SECRET_KEY is set but empty" in capsys.readouterr().err


# --- the key file ---------------------------------------------------------------------------

def test_the_key_file_is_created_private_never_chmod_ed_afterwards(configure, tmp_path, monkeypatch):
    keys_in_a_key_file(configure, tmp_path / "var")
    monkeypatch.setattr(Path, "chmod", lambda *a, **k: pytest.fail("the key file must be born 0600, not chmod-ed"))
    monkeypatch.setattr(os, "chmod", lambda *a, **k: pytest.fail("the key file must be born 0600, not chmod-ed"))
    old_umask = os.umask(0o022)  # a typical umask would make a plain open() world-readable
    try:
        key = secrets.master_key()
    finally:
        os.umask(old_umask)
    path = tmp_path / "var" / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip().encode() == key and len(key) >= 32
    assert secrets.master_key() == key  # read again, not regenerated


def test_keys_new_rotate_and_retire_with_the_key_file(configure, tmp_path):
    from partnerflow.cli import _register, app

    _register()
    keys_in_a_key_file(configure, tmp_path / "var")
    partner_with_payout_details(1, details={"iban": "DE89370400440532013000"})
    first = secrets.keys()[0].id
    runner = CliRunner()

    added = runner.invoke(app, ["keys", "new"])
    assert added.exit_code == 0, added.output
    second = secrets.keys()[0].id
    assert second != first and [k.id for k in secrets.keys()] == [second, first]
    assert stat.S_IMODE((tmp_path / "var" / "secret.key").stat().st_mode) == 0o600

    refused = runner.invoke(app, ["keys", "retire", first])
    assert refused.exit_code == 1 and "still encrypted" in refused.output
    rotated = runner.invoke(app, ["keys", "rotate"])
    assert rotated.exit_code == 0 and json.loads(rotated.output)["reencrypted"] == 1
    listing = runner.invoke(app, ["keys", "list"]).output
    assert f"{second}  newest" in listing and first in listing and "secret" not in listing.lower().replace(
        "encrypted", "")
    assert runner.invoke(app, ["keys", "retire", first]).exit_code == 0
    assert [k.id for k in secrets.keys()] == [second]
    assert json.loads(secrets.decrypt(stored_details()[0])) == {"iban": "DE89370400440532013000"}


# --- data at rest ---------------------------------------------------------------------------

def test_rotation_reencrypts_every_value_in_audited_batches_and_old_values_need_their_key(configure):
    configure(secret_key=OLD_KEY, previous_secret_keys=None)
    old_id = secrets.keys()[0].id
    for n in range(5):
        partner_with_payout_details(n, details={"iban": f"DE8937040044053201300{n}"})
    assert {v.split(":")[0] for v in stored_details()} == {old_id}

    configure(secret_key=NEW_KEY, previous_secret_keys=OLD_KEY)
    new_id = secrets.keys()[0].id
    assert json.loads(secrets.decrypt(stored_details()[0]))["iban"].startswith("DE89")  # old key still listed
    assert values_by_key() == {old_id: 5}

    assert rotate(batch_size=2) == {"reencrypted": 5, "unreadable": 0, "changed_meanwhile": 0}
    assert values_by_key() == {new_id: 5}
    assert [a.details["reencrypted"] for a in audits("keys.reencrypted")] == [2, 2, 1]
    assert audits("keys.rotated")[0].subject_id == new_id
    assert rotate() == {"reencrypted": 0, "unreadable": 0, "changed_meanwhile": 0}  # nothing left to do

    configure(secret_key=NEW_KEY, previous_secret_keys=None)  # the old key is retired
    assert [json.loads(secrets.decrypt(v))["iban"][-1] for v in stored_details()] == list("01234")


def test_a_value_whose_key_is_no_longer_listed_is_reported_not_lost(configure):
    configure(secret_key=OLD_KEY)
    partner_with_payout_details(1, details={"iban": "DE89370400440532013000"})
    before = stored_details()
    configure(secret_key=NEW_KEY)
    with pytest.raises(InvalidToken):
        secrets.decrypt(before[0])
    assert rotate()["unreadable"] == 1 and stored_details() == before


def test_values_written_before_key_ids_still_decrypt_and_rotate(configure):
    configure(secret_key=OLD_KEY)
    derived = hmac.new(OLD_KEY.encode(), b"encrypt", hashlib.sha256).digest()  # the former scheme
    legacy = Fernet(base64.urlsafe_b64encode(derived)).encrypt(b'{"iban": "DE89370400440532013000"}').decode()
    with session_scope() as session:
        session.add(Partner(email="legacy@example.com", legal_name="Legacy", payout_details_encrypted=legacy))
    configure(secret_key=NEW_KEY, previous_secret_keys=OLD_KEY)
    assert json.loads(secrets.decrypt(legacy))["iban"] == "DE89370400440532013000"
    assert rotate()["reencrypted"] == 1 and stored_details()[0].startswith(secrets.keys()[0].id + ":")


# --- signed links and API-key hashes --------------------------------------------------------

def test_old_unsubscribe_links_stay_valid_while_their_key_is_listed(configure):
    configure(secret_key=OLD_KEY)
    old_link = unsubscribe_token(42)
    configure(secret_key=NEW_KEY, previous_secret_keys=OLD_KEY)
    assert unsubscribe_token(42) != old_link  # new links are signed with the newest key
    assert enrollment_for_token(old_link) == 42 and enrollment_for_token(unsubscribe_token(42)) == 42
    configure(secret_key=NEW_KEY, previous_secret_keys=None)
    assert enrollment_for_token(old_link) is None


@pytest.mark.parametrize("token", ["42-ÿÿ", "42-€uro", "٤٢-abc", "42-" + "0" * 32, "", "-", "x-y"])
def test_a_forged_or_non_ascii_unsubscribe_token_is_refused_without_crashing(token):
    assert enrollment_for_token(token) is None


def test_api_key_hashes_made_under_an_older_key_still_match(configure):
    configure(secret_key=OLD_KEY)
    stored = secrets.token_hash("pf_live_key")
    configure(secret_key=NEW_KEY, previous_secret_keys=OLD_KEY)
    assert secrets.token_hash("pf_live_key") != stored
    assert secrets.token_hashes("pf_live_key") == [secrets.token_hash("pf_live_key"), stored]


def test_key_ids_are_fingerprints_never_the_key(configure):
    configure(secret_key=NEW_KEY, previous_secret_keys=OLD_KEY)
    listed = secrets.keys()
    assert [len(k.id) for k in listed] == [8, 8] and NEW_KEY not in repr(listed)
    assert get_settings().previous_secret_keys.get_secret_value() == OLD_KEY
