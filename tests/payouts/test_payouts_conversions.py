"""Conversion intake: API key per source, CSV with bad rows by line, idempotency, attribution, reversals."""

from __future__ import annotations

from factories import make_partner
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from partnerflow.models import Conversion, session_scope
from partnerflow.models.payouts import ConversionSource
from partnerflow.tasks.payouts.conversions import add_source, import_csv
from partnerflow.web.app import create_app


def _count() -> int:
    with session_scope() as s:
        return s.execute(select(func.count()).select_from(Conversion)).scalar()


def test_api_needs_the_sources_key_and_stores_only_its_hash():
    key = add_source("shop")
    with session_scope() as s:
        row = s.execute(select(ConversionSource)).scalar_one()
        assert key not in row.api_key_hash and len(row.api_key_hash) == 64
    client = TestClient(create_app())
    body = {"external_id": "o1", "amount": "10.00", "currency": "USD", "occurred_at": "2026-01-01T00:00:00Z"}
    assert client.post("/api/conversions", json=body).status_code == 401
    assert client.post("/api/conversions", json=body, headers={"X-API-Key": key + "x"}).status_code == 401
    assert _count() == 0
    assert client.post("/api/conversions", json=body, headers={"X-API-Key": key}).status_code == 200


def test_api_resend_changes_nothing_and_attributes_by_code_or_coupon():
    p = make_partner(7)
    key = add_source("shop")
    client = TestClient(create_app())
    batch = {"conversions": [
        {"external_id": "o1", "amount": "10.00", "currency": "usd", "occurred_at": "2026-01-01T00:00:00Z",
         "tracking_code": "P7"},
        {"external_id": "o2", "amount": "5", "currency": "USD", "occurred_at": "2026-01-01", "coupon_code": "C7"},
        {"external_id": "o3", "amount": "7.50", "currency": "USD", "occurred_at": "2026-01-01", "tracking_code": "??"},
        {"external_id": "o4", "amount": 7.5, "currency": "USD", "occurred_at": "2026-01-01"},
    ]}
    r = client.post("/api/conversions", json=batch, headers={"X-API-Key": key})
    assert r.status_code == 200
    report = r.json()
    assert (report["created"], report["duplicates"], report["unattributed"]) == (3, 0, 1)
    assert report["unattributed_external_ids"] == ["o3"]
    assert report["errors"] == [{"index": 3, "error": 'amount must be a string like "12.34", not a float'}]
    changed = dict(batch, conversions=[dict(batch["conversions"][0], amount="99.00")])
    again = client.post("/api/conversions", json=changed, headers={"X-API-Key": key}).json()
    assert (again["created"], again["duplicates"]) == (0, 1)
    with session_scope() as s:
        rows = {c.external_id: c for c in s.execute(select(Conversion)).scalars()}
    assert rows["o1"].amount_minor == 1000 and rows["o1"].partner_id == p and rows["o1"].currency == "USD"
    assert rows["o2"].partner_id == p and rows["o3"].partner_id is None


def test_same_external_id_from_another_source_is_another_conversion():
    k1, k2 = add_source("shop"), add_source("billing")
    client = TestClient(create_app())
    body = {"external_id": "o1", "amount": "1.00", "currency": "USD", "occurred_at": "2026-01-01"}
    client.post("/api/conversions", json=body, headers={"X-API-Key": k1})
    client.post("/api/conversions", json=body, headers={"X-API-Key": k2})
    assert _count() == 2


def test_api_rejects_a_body_with_nothing_acceptable():
    key = add_source("shop")
    client = TestClient(create_app())
    r = client.post("/api/conversions", json={"external_id": "x", "currency": "USD", "occurred_at": "yesterday"},
                    headers={"X-API-Key": key})
    assert r.status_code == 422
    assert "amount is required" in r.json()["errors"][0]["error"]


def test_csv_keeps_good_rows_and_reports_bad_rows_by_line(tmp_path):
    p = make_partner(1)
    path = tmp_path / "conv.csv"
    path.write_text(
        "External_ID;kind;amount;currency;occurred_at;tracking_code;reverses\n"
        "a1;sale;12,50;EUR;2026-01-02T10:00:00+01:00;P1;\n"        # line 2: decimal comma is not ours: error
        "a2;sale;12.50;EUR;2026-01-02T10:00:00+01:00;P1;\n"        # line 3 ok
        "a3;gift;1.00;EUR;2026-01-02;P1;\n"                        # line 4 bad kind
        "a4;sale;1.001;EUR;2026-01-02;P1;\n"                       # line 5 too many decimals
        "a5;refund;12.50;EUR;2026-01-03;;a2\n"                     # line 6 ok, reverses a2
        "a6;refund;1.00;EUR;2026-01-03;;nope\n"                    # line 7 unknown original
        "a7;sale;3.00;XX;2026-01-03;P1;\n"                         # line 8 bad currency
        "a8;sale;3.00;EUR;2026-01-03;;\n"                          # line 9 ok, unattributed
    )
    report = import_csv(str(path), "csv")
    assert (report.created, report.duplicates, report.unattributed) == (3, 0, 1)
    errors = {e["line"]: e["error"] for e in report.errors}
    assert sorted(errors) == [2, 4, 5, 7, 8]
    assert "ambiguous" in errors[2] and "gift" in errors[4] and "more decimals" in errors[5]
    assert "nope" in errors[7] and "XX" in errors[8]
    with session_scope() as s:
        rows = {c.external_id: c for c in s.execute(select(Conversion)).scalars()}
    assert rows["a2"].amount_minor == 1250 and rows["a2"].occurred_at.hour == 9  # stored in UTC
    assert rows["a5"].reverses_id == rows["a2"].id and rows["a5"].partner_id == p
    assert import_csv(str(path), "csv").created == 0  # importing the file again adds nothing


def test_sample_csv_imports(tmp_path):
    from importlib import resources

    path = resources.files("partnerflow.templates").joinpath("demo/conversions.csv")
    report = import_csv(str(path), "demo")
    assert report.errors == [] and report.created == 7 and report.unattributed == 7  # no DEMO1 partner here


def test_out_of_range_amounts_and_dates_are_refused_one_by_one_and_the_good_rows_kept():
    key = add_source("shop")
    client = TestClient(create_app())
    good = {"currency": "USD", "occurred_at": "2026-01-01T00:00:00Z"}
    bad = [
        ({"amount": "1e30"}, "not a decimal number"),
        ({"amount": "1" + "0" * 30}, "too large"),
        ({"amount": "10000000001.00"}, "larger than 1000000000000 minor units"),
        ({"amount_minor": "1" + "0" * 30}, "larger than"),
        ({"amount_minor": 10**19}, "larger than"),
        ({"amount": "NaN"}, "not a decimal number"),
        ({"amount": "Infinity"}, "not a decimal number"),
        ({"amount": "-5.00"}, "must not be negative"),
        ({"amount_minor": "-1"}, "must not be negative"),
        ({"amount": "1.005"}, "more decimals"),
        ({"amount": "١٢"}, "not a decimal number"),  # Arabic-Indic digits
        ({"amount_minor": "1_000"}, "whole number"),
        ({"amount_minor": "12.0"}, "whole number"),
        ({"amount": "1.00", "occurred_at": "2999-01-01T00:00:00Z"}, "in the future"),
        ({"amount": "1.00", "occurred_at": "9999-12-31T23:59:59-01:00"}, "not an ISO 8601"),
        ({"amount": "1.00", "occurred_at": "0001-01-01T00:00:00+01:00"}, "not an ISO 8601"),
        ({"amount": "1.00", "occurred_at": "1900-01-01"}, "before 2000"),
        ({"amount": "1.00", "product": "nul\x00byte"}, "control characters"),
        ({"amount": "1.00", "customer_ref": "x" * 501}, "longer than 500"),
        ({"amount": "1.00", "product": {"a": 1}}, "must be text"),
        ({"amount": "1.00", "currency": "ÄÖÜ"}, "ISO 4217"),
    ]
    records = [{"external_id": "ok-1", "amount": "10000000000.00", **good}]  # the largest amount taken
    records += [{**good, "external_id": f"bad-{i}", **fields} for i, (fields, _) in enumerate(bad)]
    records.append({"external_id": "ok-2", "amount_minor": "+250", **good})
    r = client.post("/api/conversions", json={"conversions": records}, headers={"X-API-Key": key})
    assert r.status_code == 200
    report = r.json()
    assert report["created"] == 2
    errors = {e["index"]: e["error"] for e in report["errors"]}
    assert sorted(errors) == list(range(1, len(bad) + 1))
    for i, (_, reason) in enumerate(bad, start=1):
        assert reason in errors[i], (bad[i - 1], errors[i])
    with session_scope() as s:
        assert dict(s.execute(select(Conversion.external_id, Conversion.amount_minor)).all()) == {
            "ok-1": 10**12, "ok-2": 250}


def test_csv_with_an_overflowing_amount_keeps_the_rest_of_the_file(tmp_path):
    path = tmp_path / "conv.csv"
    path.write_text("external_id,amount,currency,occurred_at\n"
                    "a1,12.00,USD,2026-01-02\n"
                    "a2,1e30,USD,2026-01-02\n"
                    "a3,99999999999999999999999,USD,2026-01-02\n"
                    "a4,3.00,USD,2026-01-02\n")
    report = import_csv(str(path), "csv")
    assert report.created == 2 and [e["line"] for e in report.errors] == [3, 4]


def test_a_body_nested_too_deep_is_a_clear_400():
    key = add_source("shop")
    client = TestClient(create_app())
    r = client.post("/api/conversions", content=b"[" * 100_000, headers={"X-API-Key": key,
                                                                      "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["detail"] == "the body is not JSON"


def test_csv_row_the_csv_reader_cannot_read_is_reported_and_the_rest_kept(tmp_path):
    path = tmp_path / "conv.csv"
    path.write_text("external_id,amount,currency,occurred_at,product\n"
                    "a1,12.00,USD,2026-01-02,ok\n"
                    f"a2,12.00,USD,2026-01-02,{'x' * 200_000}\n"  # over the csv module's cell limit
                    "a3,3.00,USD,2026-01-02,ok\n")
    report = import_csv(str(path), "csv")
    assert report.created == 2
    assert [e["line"] for e in report.errors] == [3] and "unreadable row" in report.errors[0]["error"]
