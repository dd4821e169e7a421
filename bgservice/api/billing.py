"""Billing: $0.06 per second of the trimmed segment.

``billed_seconds`` is the trimmed segment's length from the frames' exact timestamps (the engine's
``duration_seconds``: ``end`` clamped to the video), rounded *up* to the next 0.1 s (exactly 2.0 s bills
2.0); ``amount_usd`` = billed x 0.06 rounded to 4 decimals. Failed and cancelled jobs bill 0.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

UNIT_PRICE_USD = Decimal("0.06")


def billed_seconds(duration_seconds: float) -> float:
    # repr() of the float is the shortest decimal that round-trips: 2.0 stays 2.0, 2.0000001 bills 2.1
    exact = Decimal(repr(float(duration_seconds)))
    if exact <= 0:
        return 0.0
    return float(exact.quantize(Decimal("0.1"), rounding=ROUND_CEILING))


def amount_usd(billed: float) -> float:
    return float((Decimal(repr(billed)) * UNIT_PRICE_USD).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))
