"""Kubernetes resource quantities (``1.7T``, ``500Gi``, ``1e9``) as whole bytes."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

# Suffixes as the API server defines them (k8s.io/apimachinery resource.Quantity).
_SUFFIXES: dict[str, Decimal] = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
_QUANTITY = re.compile(
    r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|[mkMGTPE]?)$"
)


def parse_bytes(value: int | str) -> int:
    """Bytes in a quantity, rounded up as the API server rounds storage sizes.

    Raises ValueError naming the value when it is not a quantity or is negative.
    """
    if isinstance(value, int):
        number = Decimal(value)
    else:
        match = _QUANTITY.match(value.strip())
        if match is None:
            raise ValueError(f"{value!r} is not a Kubernetes quantity (like 500Gi or 1.7T)")
        try:
            number = Decimal(match.group(1)) * _SUFFIXES[match.group(2)]
        except InvalidOperation as exc:  # pragma: no cover - the regex admits only numbers
            raise ValueError(f"{value!r} is not a Kubernetes quantity") from exc
    if number < 0:
        raise ValueError(f"{value!r} is negative")
    whole = int(number.to_integral_value(rounding="ROUND_CEILING"))
    return whole
