"""Generalisation actions: keep a coarser value instead of removing it.

Dates to a year or year-month, ages to bands (90+ as one band), numbers to bins, text to
a category through a mapping table, a fixed value, or Laplace noise with clamping. Each is
valid only for the VRs the policy validator allows (see ``medveil.policy.POLICY_ACTIONS``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue

from medveil.engine.decide import age_years
from medveil.policy.standard import Rule


def _each(elem: DataElement, fn: Callable[[Any], object]) -> None:
    value = elem.value
    if value is None or value == "":
        return
    if isinstance(value, (list, MultiValue)):
        elem.value = [fn(v) for v in value]
    else:
        elem.value = fn(value)


def date_to_year(value: str, vr: str) -> str:
    """'20210317' -> '20210101' (DA) or '2021' (DT): keep only the year."""
    year = str(value)[:4]
    if not year.isdigit():
        return ""
    return year + "0101" if vr == "DA" else year


def date_to_year_month(value: str, vr: str) -> str:
    """'20210317' -> '20210301' (DA) or '202103' (DT): keep year and month."""
    ym = str(value)[:6]
    if not ym.isdigit() or len(ym) < 6:
        return date_to_year(value, vr)
    return ym + "01" if vr == "DA" else ym


def age_band(value: str, width: int = 5, top: int = 90) -> str:
    """Age string to the lower edge of its band in years, e.g. '047Y' -> '045Y'; >= top -> top."""
    years = age_years(str(value))
    if years is None:
        return ""
    if years >= top:
        return f"{int(top):03d}Y"
    return f"{int(years // width * width):03d}Y"


def to_bin(value: float, width: float) -> float:
    """The centre of value's bin of the given width (0-based bins)."""
    return math.floor(float(value) / width) * width + width / 2


def apply(
    elem: DataElement,
    rule: Rule,
    action: str,
    *,
    rng_for: Callable[[float], object] | None = None,
) -> None:
    """Apply a policy action (year, year_month, age_band, bin, map, value, noise) in place.

    ``rng_for(value)`` gives the noise generator for one value (see medveil.dp.keyed_rng).
    """
    vr = elem.VR
    if action == "year":
        _each(elem, lambda v: date_to_year(str(v), vr))
    elif action == "year_month":
        _each(elem, lambda v: date_to_year_month(str(v), vr))
    elif action == "age_band":
        band = int(_number_param(rule, "width", 5))
        top = int(_number_param(rule, "top", 90))
        _each(elem, lambda v: age_band(str(v), band, top))
    elif action == "bin":
        width = _number_param(rule, "width")
        _each(elem, lambda v: _number(vr, to_bin(float(v), width)))
    elif action == "map":
        given = rule.param("table")
        if not isinstance(given, Mapping):
            raise ValueError("a map action needs a table")
        table = {str(k).upper(): v for k, v in given.items()}
        default = rule.param("default", "OTHER")
        _each(elem, lambda v: table.get(str(v).strip().upper(), default))
    elif action == "value":
        elem.value = rule.param("value")
    elif action == "noise":
        from medveil.privacy.dp import noisy_value

        eps = _number_param(rule, "epsilon")
        sens = _number_param(rule, "sensitivity")
        lo, hi = _number_param(rule, "lower"), _number_param(rule, "upper")
        _each(
            elem,
            lambda v: _number(
                vr,
                noisy_value(
                    float(v), sens, eps, lo, hi, rng=rng_for(float(v)) if rng_for else None
                ),
            ),
        )
    else:
        raise ValueError(f"unknown policy action {action!r}")


def _number_param(rule: Rule, name: str, default: float | None = None) -> float:
    """A numeric parameter of a policy action (the validator made sure it is one)."""
    value = rule.param(name, default)
    if not isinstance(value, (int, float, str)):
        raise ValueError(f"policy action parameter {name} is not a number")
    return float(value)


def _number(vr: str, x: float) -> object:
    if vr in ("IS", "US", "SS", "UL", "SL", "UV", "SV"):
        return round(x)
    if vr == "DS":
        return f"{x:.6g}"
    return float(x)
