"""The commission engine: conversions -> commissions, by each partner's CommissionTerms.

Rounding rule (documented for partners in every contract): each commission is computed exactly in
Decimal and rounded once, half-to-even, to the minor unit of the conversion's currency
(`partnerflow.tasks.shared.money.round_minor`). Stored as integer minor units. No floats.

Periods are calendar months (UTC). Tiers and monthly caps look at the partner's whole month, so
commissions still inside their lock period (status `pending`) are recomputed on every run: once a
month is complete every pending commission of that month carries the final tier. Commissions that
are payable, paid or cancelled never change; their amounts count toward caps.

Reversals (refund, chargeback, reversal) point at an earlier conversion:
- the original commission not yet in a payout is cancelled (full refund) or reduced by a negative
  adjustment proportional to the refunded amount (partial refund);
- once the original is in a payout (paid or being paid), a negative commission is payable at once
  and is carried into the next batch (a balance below zero holds the partner's payout).
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

from sqlalchemy import and_, bindparam, insert, select, update
from sqlmodel import Session

from partnerflow.models import Commission, Conversion, Partner, session_scope, utcnow
from partnerflow.tasks.shared.money import round_minor
from partnerflow.tasks.shared.terms import CommissionTerms, default_for

PAYING_KINDS = ("sale", "recurring", "lead", "signup")
REVERSAL_KINDS = ("refund", "chargeback", "reversal")
PARTNER_CHUNK = 500

FxLookup = Callable[[str, str, datetime], Decimal]


@dataclass
class Row:
    """A conversion as the engine sees it (plain values, no ORM)."""

    id: int
    partner_id: int
    kind: str
    amount_minor: int
    currency: str
    occurred_at: datetime
    customer_ref: str | None = None
    product: str | None = None
    category: str | None = None
    # the existing commission, if any
    commission_id: int | None = None
    commission_minor: int | None = None
    commission_status: str | None = None


@dataclass
class Result:
    conversion_id: int
    amount_minor: int
    rule: str
    qualifies: bool


def period_of(at: datetime) -> str:
    return f"{at.year:04d}-{at.month:02d}"


def add_months(at: datetime, months: int) -> datetime:
    month = at.month - 1 + months
    year, month = at.year + month // 12, month % 12 + 1
    return at.replace(year=year, month=month, day=min(at.day, calendar.monthrange(year, month)[1]))


def _convert_exact(amount: Decimal, base: str, quote: str, at: datetime, fx: FxLookup | None) -> Decimal:
    """Minor units of base -> exact (unrounded) minor units of quote."""
    if base == quote:
        return amount
    if fx is None:
        raise LookupError(f"no exchange rate {base}/{quote}")
    from partnerflow.tasks.shared.money import exponent

    return (amount * fx(base, quote, at)).scaleb(exponent(quote) - exponent(base))


def compute_period(terms: CommissionTerms, rows: list[Row], *, first_purchase: dict[str, tuple[datetime, int]],
                   fx: FxLookup | None = None, frozen_statuses: Iterable[str] = ("payable", "paid", "cancelled"),
                   ) -> list[Result]:
    """Commissions for one partner's month. `rows` are that month's paying conversions, oldest first.

    `first_purchase` maps customer_ref -> (when, conversion id) of the customer's first sale anywhere.
    Rows whose commission is frozen keep their amount (it counts toward the monthly cap).
    """
    frozen_statuses = set(frozen_statuses)
    results: list[Result] = []
    with localcontext() as ctx:
        ctx.prec = 50
        # Volume for tiers: qualifying sale/recurring amounts not cancelled, in the terms' currency.
        qualifying: dict[int, str | None] = {r.id: _disqualified(terms, r, first_purchase) for r in rows}
        volume_rows = [r for r in rows if qualifying[r.id] is None and r.kind in ("sale", "recurring")
                       and r.commission_status != "cancelled"]
        total_volume = sum((_convert_exact(Decimal(r.amount_minor), r.currency, terms.currency, r.occurred_at, fx)
                            for r in volume_rows), Decimal(0))
        running_volume = Decimal(0)
        paid_in_period = Decimal(0)  # in terms.currency, for the monthly cap
        for r in rows:
            if r.commission_status in frozen_statuses and r.commission_minor is not None:
                if r.commission_status != "cancelled":
                    paid_in_period += _convert_exact(Decimal(r.commission_minor), r.currency, terms.currency,
                                                     r.occurred_at, fx)
                if r.kind in ("sale", "recurring") and qualifying[r.id] is None and r.commission_status != "cancelled":
                    running_volume += _convert_exact(Decimal(r.amount_minor), r.currency, terms.currency,
                                                     r.occurred_at, fx)
                continue
            reason = qualifying[r.id]
            if reason is not None:
                results.append(Result(r.id, 0, f"not qualifying: {reason}", False))
                continue
            amount = Decimal(r.amount_minor)
            volume_here = _convert_exact(amount, r.currency, terms.currency, r.occurred_at, fx)
            override = next((o for o in terms.overrides if o.matches(r.product, r.category)), None)
            if override is not None:
                if override.kind == "flat":
                    exact = _convert_exact(Decimal(override.flat_minor), terms.currency, r.currency, r.occurred_at, fx)
                    rule = f"flat {override.flat_minor} ({override.product or override.category})"
                else:
                    exact = amount * override.rate
                    rule = f"{override.rate} of sale ({override.product or override.category})"
            elif terms.kind == "flat" or r.kind in ("lead", "signup"):
                if terms.kind != "flat":
                    results.append(Result(r.id, 0, f"not qualifying: {r.kind} earns only under flat terms", False))
                    continue
                exact = _convert_exact(Decimal(terms.flat_minor), terms.currency, r.currency, r.occurred_at, fx)
                rule = f"flat {terms.flat_minor} {terms.currency}"
            elif terms.kind == "percentage":
                exact = amount * terms.rate
                rule = f"{terms.rate} of sale"
            elif terms.tier_mode == "whole":
                rate = _tier_rate(terms, total_volume)
                exact = amount * rate
                rule = f"tier {rate} (month volume {round_minor(total_volume)} {terms.currency})"
            else:
                start, end = running_volume, running_volume + volume_here
                earned = _marginal(terms, start, end)  # in terms.currency
                # Earned in the terms' currency; no division (earned/volume*amount would blur exact ties).
                exact = _convert_exact(earned, terms.currency, r.currency, r.occurred_at, fx)
                rule = "marginal tiers"
            if r.kind in ("sale", "recurring"):
                running_volume += volume_here
            if terms.cap_per_conversion_minor is not None:
                cap = _convert_exact(Decimal(terms.cap_per_conversion_minor), terms.currency, r.currency,
                                     r.occurred_at, fx)
                if exact > cap:
                    exact, rule = cap, rule + ", capped per conversion"
            commission = round_minor(exact)
            if terms.cap_per_period_minor is not None:
                room = Decimal(terms.cap_per_period_minor) - paid_in_period
                room_here = _convert_exact(max(room, Decimal(0)), terms.currency, r.currency, r.occurred_at, fx)
                if commission > room_here:
                    commission = max(0, int(room_here.to_integral_value(rounding="ROUND_FLOOR")))
                    rule += ", capped per month"
            paid_in_period += _convert_exact(Decimal(commission), r.currency, terms.currency, r.occurred_at, fx)
            results.append(Result(r.id, commission, rule, True))
    return results


def _disqualified(terms: CommissionTerms, r: Row, first_purchase: dict[str, tuple[datetime, int]]) -> str | None:
    if r.kind not in PAYING_KINDS:
        return f"{r.kind} does not earn"
    if r.amount_minor < 0:
        return "negative amount"
    first = first_purchase.get(r.customer_ref) if r.customer_ref else None
    if terms.first_purchase_only and r.kind in ("sale", "recurring"):
        if r.kind == "recurring" or (first is not None and first[1] != r.id):
            return "not the customer's first purchase"
    if r.kind == "recurring":
        if terms.recurring_months == 0:
            return "recurring payments do not earn"
        if terms.recurring_months is not None and first is not None:
            if r.occurred_at >= add_months(first[0], terms.recurring_months):
                return f"more than {terms.recurring_months} months after the first purchase"
    return None


def _tier_rate(terms: CommissionTerms, volume: Decimal) -> Decimal:
    rate = terms.tiers[0].rate
    for tier in terms.tiers:
        if volume >= tier.from_volume_minor:
            rate = tier.rate
    return rate


def _marginal(terms: CommissionTerms, start: Decimal, end: Decimal) -> Decimal:
    """Commission (exact) on the volume between start and end, each part at its tier's rate."""
    earned = Decimal(0)
    for i, tier in enumerate(terms.tiers):
        lo = Decimal(tier.from_volume_minor)
        hi = Decimal(terms.tiers[i + 1].from_volume_minor) if i + 1 < len(terms.tiers) else None
        a = max(start, lo)
        b = end if hi is None else min(end, hi)
        if b > a:
            earned += (b - a) * tier.rate
    return earned


# --- the database side ----------------------------------------------------------------------

def _terms_of(partner_terms: dict[str, Any] | None, partner_type: str, tier: str) -> CommissionTerms:
    return CommissionTerms.parse(partner_terms) or default_for(partner_type, tier)


def _db_fx(session: Session) -> FxLookup:
    from partnerflow.tasks.payouts.batches import fx_rate

    cache: dict[tuple[str, str, str], Decimal] = {}

    def lookup(base: str, quote: str, at: datetime) -> Decimal:
        key = (base, quote, at.date().isoformat())
        if key not in cache:
            cache[key] = fx_rate(session, base, quote, at)
        return cache[key]

    return lookup


def _month_bounds(period: str) -> tuple[datetime, datetime]:

    year, month = int(period[:4]), int(period[5:7])
    start = datetime(year, month, 1, tzinfo=UTC)
    return start, add_months(start, 1)


def _first_purchases(session: Session, refs: set[str]) -> dict[str, tuple[datetime, int]]:
    first: dict[str, tuple[datetime, int]] = {}
    refs_list = sorted(r for r in refs if r)
    for i in range(0, len(refs_list), 900):
        chunk = refs_list[i:i + 900]
        for ref, at, cid in session.execute(
            select(Conversion.customer_ref, Conversion.occurred_at, Conversion.id)
            .where(Conversion.customer_ref.in_(chunk), Conversion.kind.in_(("sale", "recurring")))
        ):
            if ref not in first or (at, cid) < first[ref]:
                first[ref] = (at, cid)
    return first


def _load_rows(session: Session, partner_ids: list[int], start: datetime, end: datetime) -> list[Row]:
    q = (
        select(Conversion.id, Conversion.partner_id, Conversion.kind, Conversion.amount_minor, Conversion.currency,
               Conversion.occurred_at, Conversion.customer_ref, Conversion.product, Conversion.category,
               Commission.id, Commission.amount_minor, Commission.status)
        .outerjoin(Commission, Commission.conversion_id == Conversion.id)
        .where(Conversion.partner_id.in_(partner_ids), Conversion.kind.in_(PAYING_KINDS),
               Conversion.occurred_at >= start, Conversion.occurred_at < end)
        .order_by(Conversion.partner_id, Conversion.occurred_at, Conversion.id)
    )
    return [Row(*values) for values in session.execute(q)]


def compute_commissions(now: datetime | None = None, *, partner_ids: list[int] | None = None) -> dict[str, Any]:
    """Create or refresh commissions for every attributed conversion; apply reversals; release locks."""
    from partnerflow.tasks.payouts.batches import release_locked

    now = now or utcnow()
    stats: dict[str, Any] = defaultdict(int)
    with session_scope() as session:
        # Which partner-months need work: conversions without a commission, and months with pending ones.
        todo: dict[int, set[str]] = defaultdict(set)
        q = (select(Conversion.partner_id, Conversion.occurred_at)
             .outerjoin(Commission, Commission.conversion_id == Conversion.id)
             .where(Commission.id.is_(None), Conversion.partner_id.is_not(None), Conversion.kind.in_(PAYING_KINDS)))
        if partner_ids:
            q = q.where(Conversion.partner_id.in_(partner_ids))
        for pid, at in session.execute(q):
            todo[pid].add(period_of(at))
        q2 = select(Commission.partner_id, Commission.period).where(Commission.status == "pending").distinct()
        if partner_ids:
            q2 = q2.where(Commission.partner_id.in_(partner_ids))
        for pid, period in session.execute(q2):
            if period:
                todo[pid].add(period)
    pids = sorted(todo)
    for i in range(0, len(pids), PARTNER_CHUNK):
        chunk = pids[i:i + PARTNER_CHUNK]
        with session_scope() as session:
            _compute_chunk(session, {p: todo[p] for p in chunk}, now, stats)
    with session_scope() as session:
        _apply_reversals(session, now, stats)
    stats["released"] = release_locked(now)
    return dict(stats)


def _compute_chunk(session: Session, todo: dict[int, set[str]], now: datetime, stats: dict[str, int]) -> None:
    partners = {p.id: p for p in session.exec(select(Partner).where(Partner.id.in_(list(todo)))).scalars()}
    periods = sorted({p for ps in todo.values() for p in ps})
    start, end = _month_bounds(periods[0])[0], _month_bounds(periods[-1])[1]
    rows = _load_rows(session, list(todo), start, end)
    first = _first_purchases(session, {r.customer_ref for r in rows if r.customer_ref})
    fx = _db_fx(session)
    by_key: dict[tuple[int, str], list[Row]] = defaultdict(list)
    for r in rows:
        period = period_of(r.occurred_at)
        if period in todo[r.partner_id]:
            by_key[(r.partner_id, period)].append(r)
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for (pid, period), period_rows in by_key.items():
        partner = partners[pid]
        try:
            terms = _terms_of(partner.commission_terms, partner.partner_type, partner.tier)
            results = compute_period(terms, period_rows, first_purchase=first, fx=fx)
        except (LookupError, ValueError) as exc:
            stats["skipped"] += len(period_rows)
            stats.setdefault("problems", [])  # type: ignore[arg-type]
            stats["problems"].append(f"partner {pid} {period}: {exc}")  # type: ignore[union-attr]
            continue
        lock = timedelta(days=terms.lock_days)
        row_of = {r.id: r for r in period_rows}
        for res in results:
            r = row_of[res.conversion_id]
            if r.commission_id is None:
                inserts.append({
                    "conversion_id": r.id, "partner_id": pid, "amount_minor": res.amount_minor,
                    "currency": r.currency, "rule": res.rule, "period": period,
                    "status": "pending" if res.qualifies else "cancelled",
                    "payable_at": r.occurred_at + lock, "created_at": now,
                })
            elif r.commission_status == "pending" and r.commission_minor != res.amount_minor:
                updates.append({"cid": r.commission_id, "amount": res.amount_minor, "rule_": res.rule})
    if inserts:  # Core executemany: the ORM's bulk path costs more than the insert itself
        session.connection().execute(Commission.__table__.insert(), inserts)
    if updates:
        session.execute(
            update(Commission.__table__).where(and_(Commission.__table__.c.id == bindparam("cid"),
                                                    Commission.__table__.c.status == "pending"))
            .values(amount_minor=bindparam("amount"), rule=bindparam("rule_")), updates)
    stats["created"] += len(inserts)
    stats["updated"] += len(updates)


def _apply_reversals(session: Session, now: datetime, stats: dict[str, int]) -> None:
    reversal = Conversion.__table__.alias("rev")
    original = Conversion.__table__.alias("orig")
    rows = session.execute(
        select(reversal.c.id, reversal.c.amount_minor, reversal.c.currency, reversal.c.kind,
               original.c.amount_minor, Commission.id, Commission.partner_id, Commission.amount_minor,
               Commission.status, Commission.payout_id, Commission.payable_at, Commission.period)
        .join(original, original.c.id == reversal.c.reverses_id)
        .join(Commission, Commission.conversion_id == original.c.id)
        .where(reversal.c.kind.in_(REVERSAL_KINDS))
    ).all()
    done = set(session.execute(select(Commission.conversion_id).join(
        Conversion, Conversion.id == Commission.conversion_id).where(Conversion.kind.in_(REVERSAL_KINDS))).scalars())
    for (rev_id, rev_amount, _cur, kind, orig_amount, cid, pid, c_amount, c_status, payout_id, payable_at,
         period) in rows:
        if rev_id in done:
            continue
        full = rev_amount == 0 or abs(rev_amount) >= orig_amount
        base = {"conversion_id": rev_id, "partner_id": pid, "currency": _cur, "period": period, "created_at": now}
        if c_status == "cancelled" or c_amount == 0:
            session.execute(insert(Commission), [{**base, "amount_minor": 0, "status": "cancelled",
                                                  "rule": f"{kind} of a conversion that earned nothing",
                                                  "payable_at": payable_at}])
        elif payout_id is None and c_status in ("pending", "payable") and full:
            session.execute(update(Commission).where(Commission.id == cid, Commission.payout_id.is_(None))
                            .values(status="cancelled", rule=Commission.rule + f" (cancelled by {kind} #{rev_id})"))
            session.execute(insert(Commission), [{**base, "amount_minor": 0, "status": "cancelled",
                                                  "rule": f"{kind}: cancels commission #{cid}",
                                                  "payable_at": payable_at}])
            stats["cancelled"] += 1
        else:
            with localcontext() as ctx:
                ctx.prec = 50
                share = Decimal(1) if full else Decimal(abs(rev_amount)) / Decimal(orig_amount)
                adjustment = -round_minor(Decimal(c_amount) * share)
            in_payout = payout_id is not None
            session.execute(insert(Commission), [{
                **base, "amount_minor": adjustment, "rule": f"{kind}: deducts from commission #{cid}",
                "status": "payable" if in_payout else c_status,
                "payable_at": now if in_payout else payable_at}])
            stats["deducted"] += 1


# --- dry run of a rule change ---------------------------------------------------------------

def load_rule_set(rules_path_or_json: str | dict) -> tuple[CommissionTerms | None, dict[int, CommissionTerms]]:
    """A proposed rule set: a terms object for everyone, or {"default": terms, "partners": {id: terms}}."""
    import json
    import os

    import yaml

    data: Any = rules_path_or_json
    if isinstance(data, str):
        text = open(data).read() if os.path.exists(data) else data
        data = yaml.safe_load(text) if not text.lstrip().startswith("{") else json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("a rule set is a JSON/YAML object")
    if "default" in data or "partners" in data:
        default = CommissionTerms.parse(data.get("default"))
        partners = {int(k): CommissionTerms.model_validate(v) for k, v in (data.get("partners") or {}).items()}
        return default, partners
    return CommissionTerms.model_validate(data), {}


def dry_run(rules_path_or_json: str | dict, period_start: datetime, period_end: datetime) -> list[dict[str, Any]]:
    """Per partner: commissions as computed vs under the proposed rules, for conversions in [start, end). Read-only."""
    default, per_partner = load_rule_set(rules_path_or_json)
    out: list[dict[str, Any]] = []
    with Session(_engine()) as session:
        pids = sorted(set(session.execute(select(Conversion.partner_id).where(
            Conversion.partner_id.is_not(None), Conversion.kind.in_(PAYING_KINDS),
            Conversion.occurred_at >= period_start, Conversion.occurred_at < period_end)).scalars()))
        reversed_ids = set(session.execute(select(Conversion.reverses_id).where(
            Conversion.reverses_id.is_not(None), Conversion.kind.in_(REVERSAL_KINDS))).scalars())
        fx = _db_fx(session)
        for i in range(0, len(pids), PARTNER_CHUNK):
            chunk = pids[i:i + PARTNER_CHUNK]
            partners = {p.id: p for p in session.execute(select(Partner).where(Partner.id.in_(chunk))).scalars()}
            rows = _load_rows(session, chunk, period_start, period_end)
            first = _first_purchases(session, {r.customer_ref for r in rows if r.customer_ref})
            by_key: dict[tuple[int, str], list[Row]] = defaultdict(list)
            for r in rows:
                by_key[(r.partner_id, period_of(r.occurred_at))].append(r)
            current: dict[tuple[int, str], int] = defaultdict(int)
            proposed: dict[tuple[int, str], int] = defaultdict(int)
            for (pid, _period), period_rows in by_key.items():
                p = partners[pid]
                terms = per_partner.get(pid) or default or _terms_of(p.commission_terms, p.partner_type, p.tier)
                fresh = [Row(**{**r.__dict__, "commission_id": None, "commission_minor": None,
                                "commission_status": "cancelled" if r.id in reversed_ids else None}) for r in period_rows]
                for r in period_rows:
                    if r.commission_status not in (None, "cancelled"):
                        current[(pid, r.currency)] += r.commission_minor or 0
                try:
                    results = compute_period(terms, [r for r in fresh if r.commission_status is None],
                                             first_purchase=first, fx=fx)
                except LookupError as exc:
                    out.append({"partner_id": pid, "partner": p.legal_name, "currency": "", "current_minor": 0,
                                "proposed_minor": 0, "difference_minor": 0, "note": str(exc)})
                    continue
                cur_of = {r.id: r.currency for r in period_rows}
                for res in results:
                    proposed[(pid, cur_of[res.conversion_id])] += res.amount_minor
            for key in sorted(set(current) | set(proposed)):
                pid, cur = key
                out.append({"partner_id": pid, "partner": partners[pid].legal_name, "currency": cur,
                            "current_minor": current[key], "proposed_minor": proposed[key],
                            "difference_minor": proposed[key] - current[key], "note": ""})
        session.rollback()  # nothing to keep: this is a read-only look
    return out


def _engine():
    from partnerflow.models import get_engine

    return get_engine()
