"""Which partner a conversion is credited to: by the click it came from (click_id, our own record of the
click), else the tracking code, else the coupon. A click or tracking code counts only within the attribution
window after the click; a coupon carries no click, so it has no window. Each conversion stores which way won.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from partnerflow.models import Partner
from partnerflow.models.tracking import Click
from partnerflow.settings import get_settings

# Shop and tracker clocks differ: a sale stamped a little before its click still belongs to it.
CLOCK_SKEW = timedelta(minutes=10)


class Attribution(StrEnum):
    CLICK = "click"
    TRACKING_CODE = "tracking_code"
    COUPON = "coupon"


@dataclass(frozen=True)
class Credit:
    partner_id: int | None
    attribution: str | None
    clicked_at: datetime | None


class Attributor:
    """Looks the chunk's click ids, tracking codes and coupons up once, then credits each conversion."""

    def __init__(self, session: Session, values: Iterable[dict[str, Any]]) -> None:
        values = list(values)
        click_ids = {v["click_id"] for v in values if v.get("click_id")}
        codes = {v["tracking_code"] for v in values if v.get("tracking_code")}
        coupons = {v["coupon_code"] for v in values if v.get("coupon_code")}
        self.clicks = {row.click_id: row for row in session.execute(
            select(Click.click_id, Click.partner_id, Click.clicked_at).where(Click.click_id.in_(click_ids)))} \
            if click_ids else {}
        self.by_code = dict(session.execute(select(Partner.tracking_code, Partner.id)
                                            .where(Partner.tracking_code.in_(codes))).all()) if codes else {}
        self.by_coupon = dict(session.execute(select(Partner.coupon_code, Partner.id)
                                              .where(Partner.coupon_code.in_(coupons))).all()) if coupons else {}
        self.window = timedelta(days=get_settings().onboarding.attribution_window_days)

    def _in_window(self, occurred_at: datetime, clicked_at: datetime) -> bool:
        return -CLOCK_SKEW <= occurred_at - clicked_at <= self.window

    def credit(self, v: dict[str, Any]) -> Credit:
        occurred_at, clicked_at = v["occurred_at"], v.get("clicked_at")
        click = self.clicks.get(v.get("click_id"))
        if click is not None and self._in_window(occurred_at, click.clicked_at):
            # Our own record of the click time, not the source's: the click-speed fraud check relies on it.
            return Credit(click.partner_id, Attribution.CLICK, click.clicked_at)
        code_partner = self.by_code.get(v.get("tracking_code"))
        if code_partner is not None and (clicked_at is None or self._in_window(occurred_at, clicked_at)):
            return Credit(code_partner, Attribution.TRACKING_CODE, clicked_at)
        coupon_partner = self.by_coupon.get(v.get("coupon_code"))
        if coupon_partner is not None:
            return Credit(coupon_partner, Attribution.COUPON, clicked_at)
        return Credit(None, None, clicked_at)
