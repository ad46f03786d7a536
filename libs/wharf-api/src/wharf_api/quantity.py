"""Kubernetes resource quantities (`100m`, `1Gi`, `1e9`, or a bare number) in canonical form.

The API server reads a quantity written as a string or as a JSON number and prints it in
canonical form (k8s.io/apimachinery `resource.Quantity`): a number becomes the string Kubernetes
would print, so `cpu: 0.1` reads back as `100m` and `memory: 1000000000` as `1G`. The rules:

- the format comes from the suffix: binary (`Ki` ... `Ei`), decimal exponent (`e3`, `E-6`) or
  decimal SI (`n`, `u`, `m`, none, `k`, `M` ... `E`; also a bare number);
- the value is rounded up (away from zero) to nano precision;
- binary values print with the largest power of 1024 that divides them; a binary value under
  1024 or with a fraction prints as decimal SI;
- decimal values print with the largest exponent, a multiple of 3, that leaves an integer.
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_UP, Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

# The pattern of the CRD schemas that Kubernetes' code generators write for a Quantity.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
QUANTITY_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "integer"}, {"type": "string"}],
    "pattern": QUANTITY_PATTERN,
    "x-kubernetes-int-or-string": True,
}

_PARSE = re.compile(
    r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>[KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
)
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_SUFFIX = {exponent: suffix for suffix, exponent in _DECIMAL.items()}
_NANO = Decimal("1e-9")


def _number_text(value: int | float) -> str:
    """A JSON number as Go's encoder writes it (positional unless tiny or huge)."""
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity")
    if value != 0 and (abs(value) < 1e-6 or abs(value) >= 1e21):
        return repr(value).replace("e+", "e")
    return format(Decimal(repr(value)), "f")


def canonical_quantity(value: str | int | float) -> str:
    """`value` as Kubernetes prints it; ValueError naming it when it is not a quantity."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (like 500m, 2Gi or 1e9)")
    text = value.strip() if isinstance(value, str) else _number_text(value)
    match = _PARSE.match(text)
    if match is None:
        raise ValueError(f"{value!r} is not a Kubernetes quantity (like 500m, 2Gi or 1e9)")
    suffix = match.group("suffix") or ""
    try:
        number = Decimal(match.group("number"))
    except InvalidOperation as exc:  # pragma: no cover - the pattern admits only numbers
        raise ValueError(f"{value!r} is not a Kubernetes quantity") from exc
    if suffix in _BINARY:
        amount, kind = number * Decimal(1024) ** _BINARY[suffix], "binary"
    elif suffix in _DECIMAL:
        amount, kind = number.scaleb(_DECIMAL[suffix]), "decimal"
    else:
        amount, kind = number.scaleb(int(suffix[1:])), "exponent"
    if amount.as_tuple().exponent < -9:  # type: ignore[operator]
        amount = amount.quantize(_NANO, rounding=ROUND_UP)
    if amount == 0:
        return "0"
    if kind == "binary":
        if abs(amount) >= 1024 and amount == amount.to_integral_value():
            return _binary(int(amount))
        kind = "decimal"
    return _decimal(amount, exponent_form=kind == "exponent")


def _binary(amount: int) -> str:
    power = 0
    while power < 6 and amount % 1024 == 0:
        amount //= 1024
        power += 1
    suffix = {0: "", 1: "Ki", 2: "Mi", 3: "Gi", 4: "Ti", 5: "Pi", 6: "Ei"}[power]
    return f"{amount}{suffix}"


def _decimal(amount: Decimal, exponent_form: bool) -> str:
    sign, digits, exponent = amount.normalize().as_tuple()
    assert isinstance(exponent, int)
    mantissa = int("".join(map(str, digits)))
    aligned = (exponent // 3) * 3  # down to a multiple of 3: the mantissa stays an integer
    mantissa *= 10 ** (exponent - aligned)
    text = f"{'-' if sign else ''}{mantissa}"
    if exponent_form:
        return text if aligned == 0 else f"{text}e{aligned}"
    if aligned in _DECIMAL_SUFFIX:
        return text + _DECIMAL_SUFFIX[aligned]
    return f"{text}e{aligned}"


def _validate(value: Any) -> Any:
    if isinstance(value, str) and "{{" in value:
        return value  # a Go template in a runtime (`{{.GPUs}}`), rendered before use
    return canonical_quantity(value)


# A quantity field: reads a string or a number, holds and writes the canonical string (a Go
# template is kept as written), and has the CRD schema Kubernetes' generators give a Quantity.
Quantity = Annotated[str, BeforeValidator(_validate), WithJsonSchema(QUANTITY_SCHEMA)]
