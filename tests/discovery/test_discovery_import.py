"""Importing candidate partners from real-world CSV files."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.artifacts import Artifact
from sqlmodel import select

from partnerflow.flows.discovery import import_prospects
from partnerflow.models import Partner, Prospect, session_scope
from partnerflow.tasks.discovery.columns import map_headers, parse_audience
from partnerflow.tasks.discovery.csvfile import ImportFileError
from partnerflow.tasks.discovery.imports import import_file

DATA = Path(__file__).parents[1] / "data"
SAMPLE = Path(__file__).parents[2] / "templates" / "demo" / "prospects.csv"


def _prospects() -> dict[str, Prospect]:
    with session_scope() as session:
        return {p.email or p.domain: p for p in session.exec(select(Prospect)).all()}


def test_sample_file_imports_good_rows_and_reports_bad_ones_by_line():
    report = import_prospects(str(SAMPLE))
    assert report["rows"] == 14
    assert report["created"] == 12
    assert report["errors"] == [
        {"line": 11, "reason": "invalid email 'oliver@spreadsheetpro'"},
        {"line": 13, "reason": "no email and no website"},
    ]
    people = _prospects()
    priya = people["priya@metricsmondays.example"]
    assert (priya.name, priya.company, priya.domain, priya.country, priya.timezone) == (
        "Priya Raman", "Metrics Mondays", "metricsmondays.example", "IN", "Asia/Kolkata")
    assert priya.topics == ["analytics", "dashboards"] and priya.audience_size == 48000
    assert priya.extra == {"Notes": "Weekly newsletter on product analytics"}
    assert priya.source == "prospects.csv"
    assert people["chartcrafters.example"].email is None  # website only is fine
    # A creator on a shared platform with a free mailbox has no organisation domain to merge on.
    assert people["aiko.dataviz@gmail.com"].domain == ""
    markdown = Artifact.get("prospects-import").data
    assert "| new prospects | 12 |" in markdown and "| rejected rows | 2 |" in markdown
    assert "| 11 | invalid email 'oliver@spreadsheetpro' |" in markdown


def test_reimport_updates_instead_of_duplicating(tmp_path):
    first = import_prospects(str(SAMPLE), source="fair-2026")
    again = import_prospects(str(SAMPLE), source="fair-2026")
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, first["created"])
    all_ids = sorted(p.id for p in _prospects().values())
    assert sorted(first["prospect_ids"]) == sorted(again["prospect_ids"]) == all_ids and len(all_ids) == 12
    changed = tmp_path / "changed.csv"
    changed.write_text(
        "URL,Email,Followers,Name\n"
        "https://www.metricsmondays.example/newsletter,,60k,\n"  # same site, now with more readers
        "chartcrafters.example,grace@chartcrafters.example,,Grace Kim\n"  # email found since
        "https://newcomer.example,new@newcomer.example,,New Comer\n",
        encoding="utf-8")
    report = import_prospects(str(changed), source="update")
    assert (report["created"], report["updated"], report["unchanged"]) == (1, 2, 0)
    people = _prospects()
    assert len(people) == first["created"] + 1
    priya = people["priya@metricsmondays.example"]
    assert priya.audience_size == 60000 and priya.name == "Priya Raman" and priya.source == "update"
    assert priya.website == "https://www.metricsmondays.example/newsletter" and priya.enriched_at is None
    assert people["grace@chartcrafters.example"].company == "Chart Crafters"


def test_semicolon_windows_1252_file_with_german_headers_and_multiline_cells():
    report = import_file(DATA / "prospects_semicolon_cp1252.csv")
    assert report["delimiter"] == ";"
    assert report["columns"]["E-Mail-Adresse"] == "email" and report["columns"]["Webseite"] == "website"
    assert report["columns"]["Follower"] == "audience_size" and report["columns"]["Bemerkung"] == ""
    # The first record spans lines 2-3, so the bad rows are on lines 5 and 6 of the file.
    assert report["errors"] == [{"line": 5, "reason": "invalid email 'kaputt@'"},
                                {"line": 6, "reason": "no email and no website"}]
    assert report["created"] == 3
    people = _prospects()
    juergen = people["jürgen@xn--caf-bcher-d4a5s.de"]
    assert juergen.name == "Jürgen Müller" and juergen.audience_size == 12500
    assert juergen.domain == "xn--caf-bcher-d4a5s.de" and juergen.topics == ["bücher", "kaffee"]
    assert juergen.extra["Bemerkung"] == "Erste Zeile\r\nzweite Zeile"
    assert people["anna@beispiel.de"].audience_size == 1200
    assert "zoë@example.org" in people


def test_loose_headers_merges_field_count_and_warnings():
    report = import_file(DATA / "prospects_messy.csv", source="messy")
    assert report["errors"] == [{"line": 5, "reason": "invalid website 'not a website'"},
                                {"line": 6, "reason": "11 fields, but the header has 9"}]
    assert {"line": 3, "reason": "unknown timezone 'Mars/Olympus' ignored"} in report["warnings"]
    assert {"line": 3, "reason": "audience 'lots' is not a number; ignored"} in report["warnings"]
    assert {"line": 4, "reason": "same candidate as line 2; merged"} in report["warnings"]
    assert report["created"] == 4
    people = _prospects()
    ada = people["ada@alpha.example"]
    # Line 4 is another contact at the same company: it fills blanks only and is kept beside Ada.
    assert ada.name == "Ada Alpha" and ada.extra["other_emails"] == "alan@alpha.example"
    assert ada.country == "GB" and ada.extra["Instagram"] == "@ada"
    assert people["beta.example"].timezone is None and people["beta.example"].audience_size is None
    # Two creators on instagram.com with gmail addresses are two different prospects.
    assert {"eve@gmail.com", "fay@gmail.com"} <= set(people)


def test_candidates_who_already_are_partners_are_skipped(tmp_path):
    with session_scope() as session:
        session.add(Partner(email="priya@metricsmondays.example", legal_name="Metrics Mondays"))
        session.add(Partner(email="owner@gmail.com", legal_name="Growth Loop", website="https://growthloop.example"))
    report = import_file(SAMPLE)
    assert [s["line"] for s in report["skipped"]] == [2, 5]
    assert "same email" in report["skipped"][0]["reason"] and "same domain" in report["skipped"][1]["reason"]
    assert report["created"] == 10
    assert "priya@metricsmondays.example" not in _prospects()


@pytest.mark.parametrize("encoding, delimiter", [("utf-16", "\t"), ("utf-8-sig", "|"), ("cp1252", ",")])
def test_common_dialects_and_encodings(tmp_path, encoding, delimiter):
    rows = [["Website", "E-mail", "Name"], ["https://café.example", "rené@café.example", "René Café"]]
    path = tmp_path / "export.csv"
    path.write_bytes("\r\n".join(delimiter.join(r) for r in rows).encode(encoding))
    report = import_file(path)
    assert report["created"] == 1 and report["errors"] == []
    assert _prospects()["rené@xn--caf-dma.example"].name == "René Café"


def test_unreadable_files_get_one_clear_error(tmp_path):
    binary = tmp_path / "photo.csv"
    binary.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(ImportFileError, match="not text"):
        import_file(binary)
    no_columns = tmp_path / "wrong.csv"
    no_columns.write_text("Name,Phone\nJane,123\n")
    with pytest.raises(ImportFileError, match="no email or website column"):
        import_file(no_columns)
    with pytest.raises(ImportFileError, match="cannot read"):
        import_file(tmp_path / "missing.csv")


def test_header_matching_is_loose():
    mapping = map_headers(["Website URL", "EMAIL ADDRESS", "Webiste", "First Name", "Last name",
                           "Monthly Visitors", "Secondary email", "Notes"])
    assert mapping == {0: "website", 1: "email", 3: "first_name", 4: "last_name", 5: "audience_size"}


@pytest.mark.parametrize("text, value", [("12,500", 12500), ("12.5k", 12500), ("1.2M", 1200000),
                                         ("12 500", 12500), ("900", 900), ("1.234.567", 1234567)])
def test_audience_numbers(text, value):
    assert parse_audience(text) == value


def test_an_import_racing_another_one_matches_its_rows_instead_of_failing(tmp_path, monkeypatch):
    from partnerflow.tasks.discovery import imports as discovery

    path = tmp_path / "list.csv"
    path.write_text("email,name\nrace@winner.example,From this file\n", encoding="utf-8")
    real_insert = discovery.insert
    inserts = []

    def racing_insert(table):
        if not inserts:  # the other import commits the same address after we looked, before we insert
            with session_scope() as session:
                session.add(Prospect(email="race@winner.example", name="From the other import"))
        inserts.append(table)
        return real_insert(table)

    monkeypatch.setattr(discovery, "insert", racing_insert)
    report = import_file(path)
    assert len(inserts) == 1  # the second attempt found the row and updated it instead
    assert (report["created"], report["updated"]) == (0, 1)
    assert [p.name for p in _prospects().values()] == ["From this file"]


def test_excel_sep_hint_line(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("sep=;\r\nE-mail;Website;Notes\r\nann@a.example;a.example;x, y, z\r\nbad;;\r\n".encode("cp1252"))
    report = import_file(path)
    assert report["delimiter"] == ";" and report["created"] == 1
    assert report["errors"] == [{"line": 4, "reason": "invalid email 'bad'"}]
    assert _prospects()["ann@a.example"].extra == {"Notes": "x, y, z"}
