"""Exact money: integer minor units plus an ISO 4217 code; Decimal for rates. No floats."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

# Minor-unit exponents that differ from 2 (ISO 4217).
_EXPONENTS = {"JPY": 0, "KRW": 0, "ISK": 0, "CLP": 0, "VND": 0, "HUF": 2,
              "BHD": 3, "KWD": 3, "JOD": 3, "OMR": 3, "TND": 3}


def exponent(currency: str) -> int:
    return _EXPONENTS.get(currency.upper(), 2)


def check_currency(currency: str) -> str:
    code = (currency or "").strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise ValueError(f"not an ISO 4217 currency code: {currency!r}")
    return code


def to_minor(amount: str | Decimal | int, currency: str) -> int:
    """'12.34' USD -> 1234. Refuses floats and amounts finer than the currency's minor unit."""
    if isinstance(amount, float):
        raise TypeError("amounts must not be floats; pass a string or Decimal")
    try:
        value = Decimal(str(amount).strip().replace(",", "")) if not isinstance(amount, Decimal) else amount
    except InvalidOperation:
        raise ValueError(f"not an amount: {amount!r}") from None
    if not value.is_finite():
        raise ValueError(f"not an amount: {amount!r}")
    scaled = value.scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} has more decimals than {currency} allows")
    return int(scaled)


def round_minor(value: Decimal) -> int:
    """The project's one rounding rule: half-even to the minor unit."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def format_money(amount_minor: int, currency: str) -> str:
    """1234, 'USD' -> '12.34 USD'."""
    exp = exponent(currency)
    value = Decimal(amount_minor).scaleb(-exp)
    return f"{value:,.{exp}f} {currency.upper()}"
