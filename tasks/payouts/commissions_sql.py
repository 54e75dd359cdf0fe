"""Commissions in SQL: the kinds one conversion decides alone, for every partner in one INSERT ... SELECT.

Flat, percentage, flat plus percentage, per-product and per-category overrides, first-purchase-only and
recurring windows are integer arithmetic on one conversion: with rate = num / den (den a power of ten) the
exact commission is (flat x den + amount x num) / den, rounded half-even with integer div and mod, which is
money.round_minor to the unit, on SQLite and PostgreSQL alike. Each partner's terms are written once into
temporary tables (partners with the same terms share a row), so one statement covers every partner and
rule kind, and one UPDATE refreshes the pending ones (a new earlier first purchase, changed terms).
Bonus lines (no conversion) are never touched: every statement starts from a conversion.

The Python engine (commission_rules.compute_period) stays the reference and does the rest: tiers and caps
(they read the whole month), terms that switched inside a month (a tier change), terms that do not parse,
and every partner-month holding a conversion in
another currency than the terms' (converting needs the day's FX rate in Decimal) or an amount too large for
64-bit arithmetic. tests/payouts/test_payouts_commission_engines.py proves the two agree.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection
from sqlmodel import Session

from partnerflow.models.payouts import CommissionKind, CommissionStatus
from partnerflow.models.types import UTCDateTime
from partnerflow.tasks.shared.terms import CommissionTerms, default_for

MAX_DEN = 10**6  # rate digits: amount x num and flat x den stay below 2**63 with...
MAX_MINOR = 10**12  # ...amounts and flat fees up to this many minor units
PAYING = "('sale', 'recurring', 'lead', 'signup')"
VOLUME = "('sale', 'recurring')"
TEMP_TABLES = ("pf_sql_terms", "pf_sql_partner", "pf_sql_override", "pf_sql_python_month")

Todo = dict[int, set[str]]


def _fraction(rate: Decimal) -> tuple[int, int] | None:
    exp = rate.as_tuple().exponent
    if not isinstance(exp, int):
        return None
    den = 10 ** max(0, -exp)
    return (int(rate.scaleb(-exp)) if exp < 0 else int(rate), den) if den <= MAX_DEN else None


def sql_terms(terms: CommissionTerms) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The terms as rows of the temporary tables (terms, overrides), or None when SQL cannot compute them."""
    if terms.kind not in ("flat", "percentage", "flat_plus_percentage") or terms.cap_per_conversion_minor \
            is not None or terms.cap_per_period_minor is not None or (terms.flat_minor or 0) > MAX_MINOR:
        return None
    if getattr(terms, "effective_from", None) is not None:  # terms switched mid-month: Python splits the month
        return None
    rate = _fraction(terms.rate) if terms.kind != "flat" else (0, 1)
    if rate is None:
        return None
    flat_rule = f"flat {terms.flat_minor} {terms.currency}"
    row: dict[str, Any] = {
        "currency": terms.currency, "first_only": int(terms.first_purchase_only),
        "recurring_months": terms.recurring_months, "lock_days": terms.lock_days,
        "late_rule": f"not qualifying: more than {terms.recurring_months} months after the first purchase",
        # leads and sign-ups earn the flat fee, under the kinds that have one
        "n_ok": int(terms.kind != "percentage"), "n_flat": terms.flat_minor, "n_rule": flat_rule}
    if terms.kind == "flat":
        row.update(m_flat=terms.flat_minor, m_num=0, m_den=1, m_rule=flat_rule)
    elif terms.kind == "percentage":
        row.update(m_flat=0, m_num=rate[0], m_den=rate[1], m_rule=f"{terms.rate} of sale")
    else:
        row.update(m_flat=terms.flat_minor, m_num=rate[0], m_den=rate[1],
                   m_rule=f"{flat_rule} + {terms.rate} of sale")
    overrides = []
    for pos, o in enumerate(terms.overrides):
        label = o.product or o.category
        if o.kind == "flat":
            if o.flat_minor > MAX_MINOR:
                return None
            overrides.append({"pos": pos, "product": o.product, "category": o.category, "flat": o.flat_minor,
                              "num": 0, "den": 1, "rule": f"flat {o.flat_minor} ({label})"})
        else:
            o_rate = _fraction(o.rate)
            if o_rate is None:
                return None
            overrides.append({"pos": pos, "product": o.product, "category": o.category, "flat": 0,
                              "num": o_rate[0], "den": o_rate[1], "rule": f"{o.rate} of sale ({label})"})
    return row, overrides


def utc_text(dialect: str, column: str) -> str:
    """The timestamp as 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC (SQLite stores exactly that text)."""
    if dialect == "sqlite":
        return column
    return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"


def period_sql(dialect: str, column: str) -> str:
    """'YYYY-MM' of a timestamp, as commission_rules.period_of."""
    return f"substr({utc_text(dialect, column)}, 1, 7)"


def _plus_days(dialect: str, column: str, days: str) -> str:
    if dialect == "sqlite":  # whole days leave the microseconds (from position 20) as they were
        return f"strftime('%Y-%m-%d %H:%M:%S', {column}, '+' || {days} || ' days') || substr({column}, 20)"
    return f"{column} + {days} * interval '86400 seconds'"  # seconds, not calendar days: like timedelta


def _month_index(t: str) -> str:
    return f"(CAST(substr({t}, 1, 4) AS INTEGER) * 12 + CAST(substr({t}, 6, 2) AS INTEGER))"


def _on_last_day(t: str) -> str:
    y, m = f"CAST(substr({t}, 1, 4) AS INTEGER)", f"CAST(substr({t}, 6, 2) AS INTEGER)"
    leap = f"(({y} % 4 = 0 AND {y} % 100 <> 0) OR {y} % 400 = 0)"
    days = f"CASE {m} WHEN 2 THEN CASE WHEN {leap} THEN 29 ELSE 28 END WHEN 4 THEN 30 WHEN 6 THEN 30 " \
           f"WHEN 9 THEN 30 WHEN 11 THEN 30 ELSE 31 END"
    return f"CAST(substr({t}, 9, 2) AS INTEGER) = {days}"


def _at_or_after_months(o: str, f: str, months: str) -> str:
    """o >= add_months(f, months): the same calendar day N months on, the month's last day when it is short."""
    target = f"{_month_index(f)} + {months}"
    same_month = f"(substr({o}, 9) >= substr({f}, 9) OR ({_on_last_day(o)} AND substr({o}, 9, 2) < substr({f}, 9, 2)" \
                 f" AND substr({o}, 12) >= substr({f}, 12)))"
    return f"({_month_index(o)} > {target} OR ({_month_index(o)} = {target} AND {same_month}))"


def _candidates(dialect: str, *, refresh: bool, overrides: bool, first: bool, python_months: bool) -> str:
    """SELECT of each conversion's commission: the new ones (refresh False) or the pending ones (True)."""
    ot = utc_text(dialect, "c.occurred_at")

    def pick(o: str, volume: str, other: str) -> str:
        by_kind = f"WHEN c.kind IN {VOLUME} THEN {volume} ELSE {other} END"
        return f"CASE WHEN o.pos IS NOT NULL THEN {o} {by_kind}" if overrides else f"CASE {by_kind}"

    reasons = ["WHEN c.amount_minor < 0 THEN 'not qualifying: negative amount'"]
    if first:
        reasons.append(f"WHEN t.first_only = 1 AND c.kind IN {VOLUME} AND (c.kind = 'recurring' OR "
                       "(f.first_id IS NOT NULL AND f.first_id <> c.id)) "
                       "THEN 'not qualifying: not the customer''s first purchase'")
    reasons.append("WHEN c.kind = 'recurring' AND t.recurring_months = 0 "
                   "THEN 'not qualifying: recurring payments do not earn'")
    if first:
        late = _at_or_after_months(ot, utc_text(dialect, "f.first_at"), "t.recurring_months")
        reasons.append("WHEN c.kind = 'recurring' AND t.recurring_months > 0 AND f.first_id IS NOT NULL "
                       f"AND {late} THEN t.late_rule")
    no_override = "o.pos IS NULL AND " if overrides else ""
    reasons.append(f"WHEN {no_override}c.kind NOT IN {VOLUME} AND t.n_ok = 0 "
                   "THEN 'not qualifying: ' || c.kind || ' earns only under flat terms'")
    joins = ["JOIN pf_sql_partner p ON p.partner_id = c.partner_id", "JOIN pf_sql_terms t ON t.grp = p.grp",
             "JOIN commission cm ON cm.conversion_id = c.id AND cm.status = 'pending'" if refresh
             else "LEFT JOIN commission cm ON cm.conversion_id = c.id"]
    if first:
        joins.append(
            "LEFT JOIN (SELECT customer_ref, occurred_at AS first_at, id AS first_id FROM (SELECT customer_ref, "
            "occurred_at, id, ROW_NUMBER() OVER (PARTITION BY customer_ref ORDER BY occurred_at, id) AS rn "
            f"FROM conversion WHERE kind IN {VOLUME} AND customer_ref IS NOT NULL AND customer_ref <> '') fr "
            "WHERE rn = 1) f ON f.customer_ref = c.customer_ref")
    if overrides:
        joins.append("LEFT JOIN pf_sql_override o ON o.grp = t.grp AND o.pos = (SELECT MIN(o2.pos) FROM "
                     "pf_sql_override o2 WHERE o2.grp = t.grp AND (o2.product = c.product OR "
                     "o2.category = c.category))")
    where = [f"c.kind IN {PAYING}"] + ([] if refresh else ["cm.id IS NULL"])
    if python_months:
        where.append("NOT EXISTS (SELECT 1 FROM pf_sql_python_month m WHERE m.partner_id = c.partner_id "
                     f"AND m.period = {period_sql(dialect, 'c.occurred_at')})")
    inner = (
        f"SELECT c.id AS conversion_id, c.partner_id, c.currency, c.amount_minor, cm.id AS commission_id, "
        f"{period_sql(dialect, 'c.occurred_at')} AS period, "
        f"{_plus_days(dialect, 'c.occurred_at', 't.lock_days')} AS payable_at, "
        f"CASE {' '.join(reasons)} END AS reason, "
        f"{pick('o.flat', 't.m_flat', 't.n_flat')} AS flat, {pick('o.num', 't.m_num', '0')} AS num, "
        f"{pick('o.den', 't.m_den', '1')} AS den, {pick('o.rule', 't.m_rule', 't.n_rule')} AS rule "
        f"FROM conversion c {' '.join(joins)} WHERE {' AND '.join(where)}")
    exact = "(b.flat * b.den + b.amount_minor * b.num)"
    q, r = f"({exact} / b.den)", f"({exact} % b.den)"
    half_even = f"{q} + CASE WHEN 2 * {r} > b.den OR (2 * {r} = b.den AND {q} % 2 = 1) THEN 1 ELSE 0 END"
    return (
        f"SELECT b.conversion_id, b.partner_id, b.currency, b.period, b.payable_at, b.commission_id, "
        f"CASE WHEN b.reason IS NULL THEN {half_even} ELSE 0 END AS amount_minor, "
        f"COALESCE(b.reason, b.rule) AS rule, "
        f"CASE WHEN b.reason IS NULL THEN '{CommissionStatus.PENDING}' ELSE '{CommissionStatus.CANCELLED}' END "
        f"AS status FROM ({inner}) b")


def _create_temp_tables(conn: Connection) -> None:
    pg = conn.dialect.name == "postgresql"
    tail = " ON COMMIT DROP" if pg else ""
    for name in TEMP_TABLES:
        conn.execute(text(f"DROP TABLE IF EXISTS {'' if pg else 'temp.'}{name}"))
    conn.execute(text(
        "CREATE TEMP TABLE pf_sql_terms (grp INTEGER PRIMARY KEY, currency VARCHAR(3), first_only INTEGER, "
        "recurring_months INTEGER, lock_days INTEGER, late_rule TEXT, n_ok INTEGER, n_flat BIGINT, n_rule TEXT, "
        f"m_flat BIGINT, m_num BIGINT, m_den BIGINT, m_rule TEXT){tail}"))
    conn.execute(text(f"CREATE TEMP TABLE pf_sql_partner (partner_id INTEGER PRIMARY KEY, grp INTEGER){tail}"))
    conn.execute(text(
        "CREATE TEMP TABLE pf_sql_override (grp INTEGER, pos INTEGER, product TEXT, category TEXT, flat BIGINT, "
        f"num BIGINT, den BIGINT, rule TEXT, PRIMARY KEY (grp, pos)){tail}"))
    conn.execute(text(
        f"CREATE TEMP TABLE pf_sql_python_month (partner_id INTEGER, period VARCHAR(7), "
        f"PRIMARY KEY (partner_id, period)){tail}"))


def _drop_temp_tables(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":  # PostgreSQL drops them at commit
        for name in TEMP_TABLES:
            conn.execute(text(f"DROP TABLE IF EXISTS temp.{name}"))


def _classify(session: Session, todo: Todo) -> tuple[dict[int, int], dict[int, tuple[dict, list]]]:
    """(partner -> terms group, group -> its rows) for the partners whose terms SQL computes."""
    groups: dict[str, int] = {}
    rows: dict[int, tuple[dict, list]] = {}
    partner_group: dict[int, int] = {}
    ids = sorted(todo)
    for i in range(0, len(ids), 900):
        for pid, raw, partner_type, tier in session.execute(
                text("SELECT id, commission_terms, partner_type, tier FROM partner WHERE id IN :ids")
                .bindparams(bindparam("ids", expanding=True)), {"ids": ids[i:i + 900]}):
            data = json.loads(raw) if isinstance(raw, str) else raw
            try:
                terms = CommissionTerms.parse(data) or default_for(partner_type, tier)
            except ValueError:  # the Python pass reports it
                continue
            found = sql_terms(terms)
            if found is None:
                continue
            key = json.dumps(found, sort_keys=True, default=str)
            if key not in groups:
                groups[key] = len(groups) + 1
                rows[groups[key]] = found
            partner_group[pid] = groups[key]
    return partner_group, rows


def compute_in_sql(session: Session, todo: Todo, now: datetime, stats: dict[str, Any]) -> Todo:
    """Create and refresh, in SQL, the commissions of the partner-months it can compute; returns the rest
    of `todo` (partner -> periods) for the Python engine."""
    partner_group, groups = _classify(session, todo)
    if not partner_group:
        return todo
    conn = session.connection()
    dialect = conn.dialect.name
    _create_temp_tables(conn)
    conn.execute(text(
        "INSERT INTO pf_sql_terms VALUES (:grp, :currency, :first_only, :recurring_months, :lock_days, :late_rule, "
        ":n_ok, :n_flat, :n_rule, :m_flat, :m_num, :m_den, :m_rule)"), [{"grp": g, **row} for g, (row, _) in
                                                                       groups.items()])
    conn.execute(text("INSERT INTO pf_sql_partner VALUES (:p, :g)"),
                 [{"p": p, "g": g} for p, g in partner_group.items()])
    overrides = [{"grp": g, **o} for g, (_, os) in groups.items() for o in os]
    if overrides:
        conn.execute(text("INSERT INTO pf_sql_override VALUES (:grp, :pos, :product, :category, :flat, :num, :den, "
                          ":rule)"), overrides)
    # Partner-months the Python engine keeps: a conversion in another currency, or too large an amount.
    conn.execute(text(
        f"INSERT INTO pf_sql_python_month (partner_id, period) SELECT DISTINCT c.partner_id, "
        f"{period_sql(dialect, 'c.occurred_at')} FROM conversion c JOIN pf_sql_partner p ON p.partner_id = "
        f"c.partner_id JOIN pf_sql_terms t ON t.grp = p.grp WHERE c.kind IN {PAYING} AND (c.currency <> t.currency "
        f"OR c.amount_minor > {MAX_MINOR})"))
    python_months = {(pid, period) for pid, period in conn.execute(
        text("SELECT partner_id, period FROM pf_sql_python_month"))}
    shape = {"overrides": bool(overrides), "python_months": bool(python_months),
             "first": any(row["first_only"] or row["recurring_months"] for row, _ in groups.values())}
    # Pending ones first, so the rows this run creates are not computed twice.
    updated = conn.execute(text(
        "UPDATE commission SET amount_minor = z.amount_minor, rule = z.rule "
        f"FROM ({_candidates(dialect, refresh=True, **shape)}) z WHERE commission.id = z.commission_id "
        f"AND commission.status = '{CommissionStatus.PENDING}' AND commission.amount_minor <> z.amount_minor"))
    created = conn.execute(text(
        "INSERT INTO commission (conversion_id, partner_id, amount_minor, currency, rule, period, status, "
        "payable_at, created_at, kind) SELECT z.conversion_id, z.partner_id, z.amount_minor, z.currency, z.rule, "
        f"z.period, z.status, z.payable_at, :now, '{CommissionKind.CONVERSION}' "
        f"FROM ({_candidates(dialect, refresh=False, **shape)}) z")
        .bindparams(bindparam("now", type_=UTCDateTime())), {"now": now})
    stats["created"] += created.rowcount or 0
    stats["updated"] += updated.rowcount or 0
    _drop_temp_tables(conn)
    rest: Todo = defaultdict(set)
    for pid, periods in todo.items():
        for period in periods:
            if pid not in partner_group or (pid, period) in python_months:
                rest[pid].add(period)
    return dict(rest)
