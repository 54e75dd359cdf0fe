"""Fraud signals on partners' recent conversions. Each signal explains itself with its numbers.

Signals (thresholds in the policy's `fraud` section):
- self_referral: the customer's email is the partner's own, or at the partner's own (non-free-mail) domain;
- click_to_conversion: too many conversions came faster after the click than a person buys;
- velocity: conversions in the recent window far above the partner's own baseline;
- duplicate_customer: the same customer credited to several partners;
- refund_rate: refunds and chargebacks above the allowed share of conversions.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from prefect import task
from sqlmodel import Session, select

from partnerflow.models import session_scope
from partnerflow.models.compliance import FindingKind, Severity
from partnerflow.models.partners import Partner
from partnerflow.models.payouts import Conversion
from partnerflow.models.types import utcnow
from partnerflow.secrets import mask
from partnerflow.tasks.compliance import findings as store
from partnerflow.tasks.compliance.findings import Detected
from partnerflow.tasks.compliance.policy import load_policy
from partnerflow.tasks.shared.customers import domain_hashes, email_hashes


def _domain(email: str | None) -> str:
    email = (email or "").strip().lower()
    return email.rsplit("@", 1)[1] if "@" in email else ""


def _registrable(domain: str) -> str:
    domain = domain.lower().strip(".")
    return domain[4:] if domain.startswith("www.") else domain


def _rate(num: int, den: int) -> str:
    return str((Decimal(num) / Decimal(den)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_EVEN)) if den else "0"


@task
def check_fraud(partner_ids: list[int]) -> dict:
    """Record the fraud signals of these partners' recent conversions as findings."""
    policy = load_policy()
    with session_scope() as session:
        found = fraud_signals(session, partner_ids, policy)
        return store.record(session, found, policy).as_dict()


def fraud_signals(session: Session, partner_ids: list[int], policy: dict,
                  now: datetime | None = None) -> list[Detected]:
    """Detected fraud signals for `partner_ids` (one query per batch, not per partner)."""
    conf = policy["fraud"]
    now = now or utcnow()
    window_start = now - timedelta(days=int(conf.get("window_days", 30)))
    counted = set(conf.get("counted_kinds", ["sale", "lead", "signup", "recurring"]))
    refunds = set(conf.get("refund_kinds", ["refund", "chargeback", "reversal"]))
    vel = conf.get("velocity", {})
    history_days = int(vel.get("recent_days", 1)) + int(vel.get("history_days", 90))
    history_start = min(window_start, now - timedelta(days=history_days))

    partners = {p.id: p for p in session.exec(select(Partner).where(Partner.id.in_(partner_ids))).all()}
    rows = session.exec(select(Conversion).where(Conversion.partner_id.in_(partner_ids),
                                                 Conversion.occurred_at >= history_start)).all()
    by_partner: dict[int, list[Conversion]] = defaultdict(list)
    for c in rows:
        by_partner[c.partner_id].append(c)

    out: list[Detected] = []
    for pid, partner in partners.items():
        convs = by_partner.get(pid, [])
        recent = [c for c in convs if c.occurred_at >= window_start]
        sales = [c for c in recent if c.kind in counted]
        if "self_referral" in conf:
            out += _self_referral(partner, sales, conf["self_referral"])
        if "click_to_conversion" in conf:
            out += _click_speed(partner, sales, conf["click_to_conversion"])
        if vel:
            out += _velocity(partner, [c for c in convs if c.kind in counted], vel, now)
        if "refund_rate" in conf:
            out += _refund_rate(partner, sales, [c for c in recent if c.kind in refunds], conf["refund_rate"])
    if "duplicate_customer" in conf:
        out += _duplicates(session, partners, window_start, counted, conf["duplicate_customer"])
    return out


def _self_referral(partner: Partner, sales: list[Conversion], conf: dict) -> list[Detected]:
    own_email = (partner.email or "").strip().lower()
    free = {d.lower() for d in conf.get("free_mail_domains", [])}
    own_domains = {d for d in {_registrable(partner.domain or ""), _domain(own_email)} if d and d not in free}
    # Conversion intake keeps only keyed hashes of the customer's email and domain: compare hash with hash
    # (under every listed key, so rows hashed before a key rotation still match).
    own_email_hashes = email_hashes(own_email) if own_email else set()
    own_domain_hashes = {h: d for d in own_domains for h in domain_hashes(d)}
    hits = []
    for c in sales:
        if c.customer_email_hash and c.customer_email_hash in own_email_hashes:
            hits.append((c, "the partner's own email"))
            continue
        if c.customer_domain_hash and c.customer_domain_hash in own_domain_hashes:
            hits.append((c, f"the partner's own domain {own_domain_hashes[c.customer_domain_hash]}"))
            continue
        email = (c.customer_email or (c.customer_ref if "@" in (c.customer_ref or "") else "") or "").strip().lower()
        if not email:
            continue
        if email == own_email:
            hits.append((c, "the partner's own email"))
        elif _domain(email) in own_domains:
            hits.append((c, f"the partner's own domain {_domain(email)}"))
    if not hits:
        return []
    ids = sorted(c.id for c, _ in hits)
    return [Detected(partner.id, FindingKind.FRAUD, "fraud.self_referral", conf.get("severity", Severity.HIGH),
                     f"{len(hits)} conversion(s) bought by the partner themself",
                     {"conversions": len(hits), "of_conversions": len(sales), "conversion_ids": ids[:50],
                      "examples": [{"conversion_id": c.id,
                                    "customer": mask(c.customer_email or c.customer_ref or "") or "(email hashed)",
                                    "why": why} for c, why in hits[:10]],
                      "reason": f"{len(hits)} of {len(sales)} recent conversions have the customer email "
                                f"matching {hits[0][1]}"}, detail=ids)]


def _click_speed(partner: Partner, sales: list[Conversion], conf: dict) -> list[Detected]:
    min_seconds = int(conf.get("min_seconds", 10))
    timed = [(c, (c.occurred_at - c.clicked_at).total_seconds()) for c in sales if c.clicked_at]
    fast = [(c, s) for c, s in timed if s < min_seconds]
    if len(fast) < int(conf.get("min_count", 3)):
        return []
    ids = sorted(c.id for c, _ in fast)
    seconds = sorted(s for _, s in fast)
    return [Detected(partner.id, FindingKind.FRAUD, "fraud.click_to_conversion", conf.get("severity", Severity.MEDIUM),
                     f"{len(fast)} conversion(s) less than {min_seconds} s after the click",
                     {"fast_conversions": len(fast), "timed_conversions": len(timed), "min_seconds": min_seconds,
                      "fastest_seconds": seconds[0], "median_fast_seconds": seconds[len(seconds) // 2],
                      "conversion_ids": ids[:50],
                      "reason": f"{len(fast)} of {len(timed)} conversions with a known click came under "
                                f"{min_seconds} s after it (fastest {seconds[0]:.1f} s)"}, detail=ids)]


def _velocity(partner: Partner, convs: list[Conversion], conf: dict, now: datetime) -> list[Detected]:
    recent_days = int(conf.get("recent_days", 1))
    history_days = int(conf.get("history_days", 90))
    spike_start = now - timedelta(days=recent_days)
    history_start = spike_start - timedelta(days=history_days)
    recent = sum(1 for c in convs if c.occurred_at >= spike_start)
    if recent < int(conf.get("min_count", 20)):
        return []
    history = sum(1 for c in convs if history_start <= c.occurred_at < spike_start)
    # Only days the partner existed count towards the baseline.
    first = partner.activated_at or partner.created_at
    days = max(1, min(history_days, (spike_start - max(first, history_start)).days)) if first else history_days
    per_day = max(Decimal(history) / Decimal(days), Decimal(str(conf.get("min_baseline_per_day", "1"))))
    expected = per_day * recent_days
    factor = Decimal(str(conf.get("factor", "5")))
    if Decimal(recent) <= factor * expected:
        return []
    ratio = (Decimal(recent) / expected).quantize(Decimal("0.1"))
    return [Detected(partner.id, FindingKind.FRAUD, "fraud.velocity", conf.get("severity", Severity.MEDIUM),
                     f"Conversion spike: {recent} in {recent_days} day(s), {ratio}x the partner's usual rate",
                     {"recent_conversions": recent, "recent_days": recent_days, "history_conversions": history,
                      "history_days": days, "baseline_per_day": str(per_day.quantize(Decimal("0.01"))),
                      "ratio": str(ratio), "factor": str(factor),
                      "reason": f"{recent} conversions in the last {recent_days} day(s) against a baseline of "
                                f"{per_day.quantize(Decimal('0.01'))}/day over {days} day(s) "
                                f"({ratio}x, limit {factor}x)"},
                     detail=[spike_start.date().isoformat()])]


def _refund_rate(partner: Partner, sales: list[Conversion], refunds: list[Conversion], conf: dict) -> list[Detected]:
    if len(sales) < int(conf.get("min_conversions", 10)):
        return []
    max_rate = Decimal(str(conf.get("max_rate", "0.25")))
    rate = Decimal(len(refunds)) / Decimal(len(sales))
    if rate <= max_rate:
        return []
    by_kind: dict[str, int] = defaultdict(int)
    for c in refunds:
        by_kind[c.kind] += 1
    return [Detected(partner.id, FindingKind.FRAUD, "fraud.refund_rate", conf.get("severity", Severity.HIGH),
                     f"Refund/chargeback rate {_rate(len(refunds), len(sales))} above {max_rate}",
                     {"refunds": len(refunds), "by_kind": dict(by_kind), "conversions": len(sales),
                      "rate": _rate(len(refunds), len(sales)), "max_rate": str(max_rate),
                      "reason": f"{len(refunds)} refunds/chargebacks against {len(sales)} conversions "
                                f"(rate {_rate(len(refunds), len(sales))}, allowed {max_rate})"},
                     detail=sorted(c.id for c in refunds))]


def _duplicates(session: Session, partners: dict[int, Partner], since: datetime, counted: set[str],
                conf: dict) -> list[Detected]:
    """Customers of these partners who were also credited to other partners in the window."""
    min_partners = int(conf.get("min_partners", 2))
    rows = session.exec(select(Conversion.partner_id, Conversion.customer_ref).where(
        Conversion.occurred_at >= since, Conversion.customer_ref.is_not(None), Conversion.partner_id.is_not(None),
        Conversion.kind.in_(counted))).all()  # one pass over the window: customers span all partners
    partners_of: dict[str, set[int]] = defaultdict(set)
    for pid, ref in rows:
        if ref and ref.strip():
            partners_of[ref.strip().lower()].add(pid)
    shared: dict[int, dict[str, list[int]]] = defaultdict(dict)
    for ref, pids in partners_of.items():
        if len(pids) >= min_partners:
            for pid in pids & partners.keys():
                shared[pid][ref] = sorted(pids - {pid})
    out = []
    for pid, refs in shared.items():
        others = sorted({o for v in refs.values() for o in v})
        out.append(Detected(pid, FindingKind.FRAUD, "fraud.duplicate_customer", conf.get("severity", Severity.MEDIUM),
                            f"{len(refs)} customer(s) also credited to other partners",
                            {"customers": len(refs), "other_partner_ids": others[:50],
                             "examples": [{"customer": mask(r), "other_partners": o}
                                          for r, o in list(refs.items())[:10]],
                             "reason": f"{len(refs)} customer id(s) of this partner were also credited to "
                                       f"{len(others)} other partner(s) in the window"},
                            detail=sorted(refs)))
    return out
