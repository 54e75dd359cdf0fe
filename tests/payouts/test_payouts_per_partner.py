"""Payouts as each partner asked: the rail of their chosen method (among those enabled), in their currency."""

from __future__ import annotations

import json

import pytest
from factories import add_conversions, after_lock, make_partner
from sqlmodel import select

from partnerflow.models import Partner, Payout, PayoutBatch, session_scope
from partnerflow.models.payouts import LedgerTransfer, PayoutStatus
from partnerflow.providers.errors import PermanentError
from partnerflow.secrets import encrypt
from partnerflow.settings import ConfigError, check_settings
from partnerflow.tasks.payouts import batches as engine
from partnerflow.tasks.payouts import execution
from partnerflow.tasks.payouts.commissions import compute_commissions
from partnerflow.tasks.payouts.execution import execute_batch
from partnerflow.tasks.payouts.recovery import recover_open_batches

SEPA = {"iban": "DE89370400440532013000", "account_holder": "Partner"}


@pytest.fixture
def two_rails(configure, tmp_path):
    return configure(payout_rail="ledger", payout_rails_enabled="ledger,sepa", sepa_output_dir=tmp_path / "sepa",
                     sepa_debtor_iban="DE02120300000000202051", sepa_debtor_bic="BYLADEM1001")


def _partner(n: int, method: str | None, currency: str = "EUR", details: dict | None = None) -> int:
    terms = {"kind": "percentage", "rate": "0.10", "lock_days": 30, "currency": currency}
    return make_partner(n, payout_method=method, currency=currency, terms=terms,
                        payout_details_encrypted=encrypt(json.dumps(details or SEPA)))


def _built(partners: list[int]) -> int:
    """Sales in each partner's own currency, commissions computed, the batch built."""
    with session_scope() as s:
        currency = {p: s.get(Partner, p).payout_currency for p in partners}
    add_conversions([{"partner_id": p, "amount_minor": 100000, "currency": currency[p], "external_id": f"c{p}"}
                     for p in partners])
    compute_commissions(now=after_lock())
    return engine.build_batch(after_lock())


def _held(batch_id: int) -> dict[int, list[str]]:
    with session_scope() as s:
        return {h["partner_id"]: h["held"] for h in s.get(PayoutBatch, batch_id).summary["held"]}


def _rails(batch_id: int) -> dict[int, str]:
    with session_scope() as s:
        return {p.partner_id: p.rail for p in s.exec(select(Payout).where(Payout.batch_id == batch_id)).all()}


def test_one_batch_pays_each_partner_through_the_rail_they_chose(two_rails, tmp_path):
    sepa_a, ledger_b, chose_nothing = _partner(1, "sepa"), _partner(2, "ledger"), _partner(3, None)
    batch_id = _built([sepa_a, ledger_b, chose_nothing])
    assert _rails(batch_id) == {sepa_a: "sepa", ledger_b: "ledger", chose_nothing: "ledger"}  # default rail
    with session_scope() as s:
        assert s.get(PayoutBatch, batch_id).summary["rails"] == {"sepa": 1, "ledger": 2}
    engine.decide_batch(batch_id, approve=True, actor="test")

    assert execute_batch(batch_id) == {"paid": 2, "processing": 1}
    files = list((tmp_path / "sepa").glob("pain001-*.xml"))
    assert len(files) == 1 and files[0].read_text().count("<CdtTrfTxInf>") == 1  # only the SEPA partner
    with session_scope() as s:
        assert sorted(s.exec(select(LedgerTransfer.partner_id)).all()) == sorted([ledger_b, chose_nothing])
    assert execute_batch(batch_id) == {}  # nothing is paid twice, on either rail
    assert len(list((tmp_path / "sepa").glob("pain001-*.xml"))) == 1


def test_a_method_the_team_did_not_enable_holds_the_payout_with_a_reason(two_rails):
    paypal = _partner(1, "paypal", details={"paypal_email": "p@example.com"})
    batch_id = _built([paypal])
    assert _rails(batch_id) == {}
    assert _held(batch_id)[paypal] == ["payout method paypal is not enabled (rails enabled: ledger, sepa)"]


def test_a_currency_the_rail_cannot_pay_is_a_blocker_never_a_silent_skip(two_rails, configure):
    usd_on_sepa, eur_on_sepa = _partner(1, "sepa", currency="USD"), _partner(2, "sepa")
    configure(payout_rails_enabled="ledger,sepa,paypal", paypal_client_id="id", paypal_client_secret="s" * 40,
              payout_paypal_currencies="USD,GBP")
    eur_on_paypal = _partner(3, "paypal", details={"paypal_email": "p@example.com"})
    batch_id = _built([usd_on_sepa, eur_on_sepa, eur_on_paypal])
    assert _rails(batch_id) == {eur_on_sepa: "sepa"}
    held = _held(batch_id)
    assert held[usd_on_sepa] == ["the sepa rail cannot pay USD (it pays EUR)"]
    assert held[eur_on_paypal] == ["the paypal rail cannot pay EUR (it pays GBP, USD)"]


def test_the_ledger_stands_in_for_every_method_when_mapped(configure):
    configure(payout_rail="ledger", payout_rails_enabled="ledger", payout_method_rails="sepa=ledger,paypal=ledger")
    sepa, paypal = _partner(1, "sepa", currency="USD"), _partner(2, "paypal")
    batch_id = _built([sepa, paypal])
    assert _rails(batch_id) == {sepa: "ledger", paypal: "ledger"}  # the ledger pays USD too
    engine.decide_batch(batch_id, approve=True, actor="test")
    assert execute_batch(batch_id) == {"paid": 2}


def test_only_the_ledger_enabled_pays_every_method_by_default(configure):
    configure(payout_rail="ledger", payout_rails_enabled=None, payout_method_rails=None)
    stripe = _partner(1, "stripe", details={"stripe_account_id": "acct_1"})
    assert _rails(_built([stripe])) == {stripe: "ledger"}


def test_an_explicit_empty_mapping_pays_each_method_only_through_its_own_rail(configure):
    configure(payout_rail="ledger", payout_rails_enabled=None, payout_method_rails="")
    stripe = _partner(1, "stripe", details={"stripe_account_id": "acct_1"})
    assert _held(_built([stripe]))[stripe] == ["payout method stripe is not enabled (rails enabled: ledger)"]


def test_recovery_resumes_each_payout_on_its_own_rail_while_a_broken_rail_waits(two_rails, monkeypatch, tmp_path):
    sepa_a, ledger_b = _partner(1, "sepa"), _partner(2, "ledger")
    batch_id = _built([sepa_a, ledger_b])
    engine.decide_batch(batch_id, approve=True, actor="test")
    working = execution.payout_rail

    def sepa_down(name=None):
        if name == "sepa":
            raise PermanentError("the SEPA rail is down")
        return working(name)

    monkeypatch.setattr(execution, "payout_rail", sepa_down)
    result = recover_open_batches()
    assert result["errors"] == {batch_id: "the SEPA rail is down"}  # the broken rail is reported...
    with session_scope() as s:
        statuses = {p.partner_id: p.status for p in s.exec(select(Payout)).all()}
    assert statuses == {sepa_a: PayoutStatus.PENDING, ledger_b: PayoutStatus.PAID}  # ...the ledger's part paid
    assert not list((tmp_path / "sepa").glob("pain001-*.xml"))

    monkeypatch.setattr(execution, "payout_rail", working)
    result = recover_open_batches()
    assert result["errors"] == {} and result["resumed"][0]["executed"] == {"processing": 1}


@pytest.mark.parametrize(("values", "message"), [
    ({"payout_rails_enabled": "ledger,cheques"}, "'cheques' is not a known choice"),
    ({"payout_rails_enabled": "ledger,sepa", "sepa_debtor_iban": None}, "needs PARTNERFLOW_SEPA_DEBTOR_IBAN"),
    ({"payout_method_rails": "sepa=bank"}, "'bank' is not a known choice"),
    ({"payout_method_rails": "sepa"}, "is not method=rail"),
    ({"payout_paypal_currencies": "USD,dollars"}, "not a three-letter currency code"),
])
def test_a_wrong_rail_setting_is_one_sentence_naming_it(configure, values, message):
    with pytest.raises(ConfigError, match=message):
        check_settings(configure(**values))
