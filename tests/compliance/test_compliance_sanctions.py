"""Sanctions list parsing and the fuzzy matcher against a sample SDN file with tricky names."""

from __future__ import annotations

from pathlib import Path

import pytest

from partnerflow.models.compliance import ScreeningResult
from partnerflow.tasks.compliance.sanctions import screen_name
from partnerflow.tasks.compliance.sanctions_list import SanctionsListError, load_sanctions_list, parse_sdn
from partnerflow.tasks.compliance.sanctions_match import MATCH_THRESHOLD, screen

DATA = Path(__file__).parents[1] / "data"


@pytest.fixture(scope="module")
def sdn():
    return load_sanctions_list(str(DATA / "sdn_sample.csv"), alt=str(DATA / "sdn_alt_sample.csv"))


def _hit(sdn, name, country=None):
    return [m.entry.ent_num for m in screen(name, country, sdn)]


def test_list_parses_with_date_checksum_aliases_and_countries(sdn):
    assert len(sdn.checksum) == 64 and sdn.list_date
    by_num = {e.ent_num: e for e in sdn.entries}
    assert 1007 not in by_num  # vessels are not screened
    assert by_num[1002].aliases == ["MUELLER, Juergen"]  # a.k.a. in the remarks
    assert "KIM, Jong-eun" in by_num[1010].aliases  # ALT.CSV
    assert by_num[1001].countries == ["RU"] and by_num[1010].countries == ["KP"]
    assert by_num[1004].program == "IRAN" and by_num[1004].title == ""  # "-0-" is empty


@pytest.mark.parametrize("name,country,ent", [
    ("Vladimir Putin", "RU", 1001),  # word order and the LAST, First comma
    ("PUTIN VLADIMIR", None, 1001),  # case
    ("Vladmir Putin", None, 1001),  # a typo and a missing middle name
    ("Wladimir Putin", None, 1001),  # a transliteration variant in the first letter
    ("Vladimir Poutine", None, 1001),  # French spelling
    ("Jurgen Muller-Ludenscheidt", "DE", 1002),  # diacritics
    ("Juergen Mueller", None, 1002),  # transliterated alias from the remarks
    ("Sean OBrien", "IE", 1003),  # punctuation
    ("Al Rashid Trading LLC", None, 1004),  # legal form and dots
    ("Rashid General Trading", None, 1004),  # alias from ALT.CSV
    ("Jose Maria Garcia Lopez", "MX", 1005),
    ("Nguyen Van Thanh", "VN", 1006),  # Vietnamese diacritics
    ("Kim Jong-eun", None, 1010),
])
def test_tricky_names_match(sdn, name, country, ent):
    matches = screen(name, country, sdn)
    assert matches and matches[0].entry.ent_num == ent
    assert matches[0].score >= MATCH_THRESHOLD and matches[0].reason


@pytest.mark.parametrize("name", [
    "John Smithson", "Jon Smythe", "Vladimir Petrov", "Golden Crescent Bakery", "Kim Jung Min",
    "Ocean Star",  # a vessel, not screened
    "John", "Smith",  # a lone common word never matches a two-word listed name
])
def test_near_misses_do_not_match(sdn, name):
    assert _hit(sdn, name) == []


def test_country_mismatch_lowers_the_score_and_says_so(sdn):
    same = screen("John Smith", "GB", sdn)[0]
    other = screen("John Smith", "US", sdn)[0]
    assert other.score < same.score
    assert "country differs" in other.reason and "country matches" in same.reason


def test_bad_sources_raise_clear_errors(tmp_path):
    with pytest.raises(SanctionsListError, match="cannot read"):
        load_sanctions_list(str(tmp_path / "missing.csv"))
    (tmp_path / "bad.csv").write_text("name,country\nfoo,bar\n")
    with pytest.raises(SanctionsListError, match="not in SDN CSV format"):
        load_sanctions_list(str(tmp_path / "bad.csv"))


def test_cp1252_file_and_eof_mark_parse():
    data = '1,"MÜLLER, Jörg","individual","SDGT","-0-","-0-","-0-","-0-","-0-","-0-","-0-","-0-"\r\n\x1a'
    entries = parse_sdn(data.encode("cp1252"))
    assert [e.name for e in entries] == ["MÜLLER, Jörg"]


def test_list_from_url_uses_last_modified(httpserver):
    body = (DATA / "sdn_sample.csv").read_bytes()
    httpserver.expect_request("/sdn.csv").respond_with_data(
        body, headers={"Last-Modified": "Tue, 03 Nov 2026 10:00:00 GMT"}, content_type="text/csv")
    sdn = load_sanctions_list(httpserver.url_for("/sdn.csv"))
    assert sdn.list_date == "2026-11-03" and len(sdn) == 9


def test_screen_name_against_the_configured_list(configure, tmp_path):
    assert screen_name("Vladimir Putin", "RU").result == ScreeningResult.NOT_CONFIGURED
    configure(sanctions_list=str(tmp_path / "missing.csv"))
    unavailable = screen_name("Vladimir Putin", "RU")
    assert unavailable.result == ScreeningResult.UNAVAILABLE and "cannot read" in unavailable.error
    assert not unavailable.matches
    configure(sanctions_list=str(DATA / "sdn_sample.csv"))
    hit = screen_name("Vladimir Putin", "RU")
    assert hit.result == ScreeningResult.MATCH and hit.matches[0].entry.ent_num == 1001 and len(hit.list_checksum) == 64
    assert screen_name("Ann Blogger", "US").result == ScreeningResult.CLEAR


def test_screen_name_against_a_given_list(sdn):
    hit = screen_name("Vladimir Putin", "RU", sdn)
    assert hit.result == ScreeningResult.MATCH and hit.list_checksum == sdn.checksum
    assert [m.entry.ent_num for m in hit.matches] == _hit(sdn, "Vladimir Putin", "RU")
