"""The compliance policy (templates/compliance/policy.yaml, or PARTNERFLOW_COMPLIANCE_POLICY)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from partnerflow.models.compliance import SEVERITIES, FindingAction
from partnerflow.settings import ConfigError, get_settings

# What the policy may do by itself (dismissing or resolving takes a person).
ACTIONS = (FindingAction.WITHHOLD_PAYOUTS, FindingAction.SUSPEND_PARTNER, FindingAction.NOTIFY_PARTNER)
NO_ACTION = "nothing"  # actions.on_timeout: leave the findings as they are


def load_policy(path: Path | str | None = None) -> dict[str, Any]:
    """Read and check the policy; a mistake raises ConfigError naming the key."""
    path = path or get_settings().compliance.compliance_policy
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"PARTNERFLOW_COMPLIANCE_POLICY={path}: cannot read it ({exc.strerror}).") from None
        where = str(path)
    else:
        text = resources.files("partnerflow.templates").joinpath("compliance/policy.yaml").read_text("utf-8")
        where = "templates/compliance/policy.yaml"
    try:
        policy = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"compliance policy {where} is not valid YAML: {exc}.") from None
    _check(policy, where)
    return policy


def _severity(value: Any, key: str, where: str) -> None:
    if value not in SEVERITIES:
        raise ConfigError(f"compliance policy {where}: {key}={value!r} is not one of {', '.join(SEVERITIES)}.")


def _check(policy: dict, where: str) -> None:
    for name in ("disclosure", "fraud", "actions"):
        if not isinstance(policy.get(name), dict):
            raise ConfigError(f"compliance policy {where}: section {name!r} is missing.")
    for key, value in policy["disclosure"].get("severity", {}).items():
        _severity(value, f"disclosure.severity.{key}", where)
    for i, rule in enumerate(policy.get("brand_rules") or []):
        if not rule.get("id"):
            raise ConfigError(f"compliance policy {where}: brand_rules[{i}] has no id.")
        _severity(rule.get("severity"), f"brand_rules[{rule['id']}].severity", where)
    for signal, conf in policy["fraud"].items():
        if isinstance(conf, dict) and "severity" in conf:
            _severity(conf["severity"], f"fraud.{signal}.severity", where)
            for k, v in conf.items():
                if k in ("factor", "max_rate", "min_baseline_per_day"):
                    try:
                        Decimal(str(v))
                    except InvalidOperation:
                        raise ConfigError(
                            f"compliance policy {where}: fraud.{signal}.{k}={v!r} is not a number.") from None
    actions = policy["actions"]
    for sev in actions.get("ask_person", []):
        _severity(sev, "actions.ask_person", where)
    for sev, acts in (actions.get("auto") or {}).items():
        _severity(sev, "actions.auto", where)
        for act in acts or []:
            if act not in ACTIONS:
                raise ConfigError(f"compliance policy {where}: actions.auto.{sev} has unknown action {act!r}.")
    if actions.get("on_timeout", FindingAction.WITHHOLD_PAYOUTS) not in (*ACTIONS, NO_ACTION):
        raise ConfigError(f"compliance policy {where}: actions.on_timeout={actions.get('on_timeout')!r} is unknown.")
