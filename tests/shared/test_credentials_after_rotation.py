"""Credentials issued before a key rotation keep working while the old key is still listed."""

from __future__ import annotations

from factories import contract_out_for_signature
from sqlalchemy import update

from partnerflow.models import SignatureRequest, session_scope
from partnerflow.secrets import token_hash
from partnerflow.tasks.contracting.signing_page import find_by_token
from partnerflow.tasks.payouts.conversions import add_source, source_for_key

OLD_KEY = "old-key-" + "o" * 40
NEW_KEY = "new-key-" + "n" * 40


def test_a_conversion_api_key_issued_before_the_rotation_still_authenticates(configure):
    configure(secret_key=OLD_KEY)
    api_key = add_source("shop")
    unused = add_source("app")
    configure(secret_key=NEW_KEY, previous_secret_keys=OLD_KEY)
    assert source_for_key(api_key) == "shop"  # used once while both keys are listed: stored under the new one
    configure(secret_key=NEW_KEY, previous_secret_keys=None)  # the old key retired
    assert source_for_key(api_key) == "shop"
    assert source_for_key(unused) is None  # never used since the rotation: it needs a new key


def test_a_signing_link_mailed_before_the_rotation_still_opens(configure):
    configure(secret_key=OLD_KEY)
    request = contract_out_for_signature("builtin")
    with session_scope() as session:
        session.execute(update(SignatureRequest).where(SignatureRequest.id == request.id)
                        .values(token_hash=token_hash("link-token")))
    configure(secret_key=NEW_KEY, previous_secret_keys=OLD_KEY)
    found = find_by_token("link-token")
    assert found is not None and found[0].id == request.id
