"""Brand and claims rules from the policy, evaluated on the text of a partner's fetched page."""

from __future__ import annotations

import re

from partnerflow.models.compliance import FindingKind
from partnerflow.tasks.compliance.disclosure import PageText, find_word, phrase_regex
from partnerflow.tasks.compliance.findings import Detected


def compile_rules(policy: dict) -> list[dict]:
    """Each rule with its compiled phrase and pattern regexes (done once per run)."""
    compiled = []
    for rule in policy.get("brand_rules") or []:
        patterns = [re.compile(p, re.I) for p in rule.get("patterns", [])]
        phrases = phrase_regex(rule.get("phrases", []))
        compiled.append({**rule, "_patterns": ([phrases] if phrases else []) + patterns})
    return compiled


def check_brand_rules(page: PageText, *, partner_id: int, partner_type: str, coupon_code: str | None, url: str,
                      rules: list[dict]) -> list[Detected]:
    out: list[Detected] = []
    for rule in rules:
        if rule.get("kind") == "coupon_listing":
            if partner_type in (rule.get("allowed_partner_types") or []) or not coupon_code:
                continue
            if not find_word(page.text, coupon_code.lower()):
                continue
        match = None
        for regex in rule["_patterns"]:
            match = regex.search(page.text)
            if match:
                break
        if not match:
            continue
        evidence = {"matched": page.display[match.start():match.end()], "excerpt": page.excerpt(match.start()),
                    "rule": rule.get("description", rule["id"]),
                    "reason": f"the page says {page.display[match.start():match.end()]!r}"}
        if rule.get("kind") == "coupon_listing":
            evidence["reason"] += f" next to the partner's coupon code {coupon_code}"
        out.append(Detected(partner_id, FindingKind.BRAND_RULE, rule["id"], rule["severity"],
                            rule.get("description", rule["id"]), evidence, url=url))
    return out
