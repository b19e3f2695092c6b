"""Numbers with units in free text, normalised with pint so that "5.5 kW", "5,5 kW" and "5500 W" compare equal.

What counts as a quantity: a number, optionally a range (``0-6 bar``, ``4 to 20 mA``), then a unit
(``kW``, ``m3/h``, ``°C``, ``%``, ``litres per minute``) separated by nothing, one space or a hyphen
(``5.5-kW motor``). The unit must be one pint knows, or one of the few spellings of ``ALIASES``.

Numbers:

* A dot is always a decimal point ("1.500" is one and a half).
* A comma followed by exactly three digits and then a non-digit is a thousands separator
  ("1,500 rpm" is 1500, "12,000,000" is 12 million), when the part before it is 1-3 digits not
  starting with 0; any other comma between digits is a decimal comma ("5,5 kW", "0,125 kW").
* A number glued to letters or a hyphen after a letter is part of a name, not a quantity: "DN25",
  "IP55", "M12", "P-01". Ratios and times ("1:50", "10:30") are not quantities either.
* A number without a unit (model numbers, counts such as "3 working days") is not a quantity: the
  checks cannot tell what it measures, so they leave it alone.

Units: pint's registry, with three guards against English words pint also reads as units: the
words of ``NOT_UNITS`` ("in", "at", "a", "point", ...) are never units, prefixes that turn words into
units ("as" as attosecond, "PS" as petasiemens, "us" as microsecond, "units" as micro-nit) are refused
(``REFUSED_PREFIXES``; micro only as µ, μ or "micro"), letters glued to a number that name rather than
measure ("3D", "4K", "5G", "2nd", "1990s": ``GLUED_NOT_UNITS``) are not units, and ``ALIASES`` maps the
spellings pint lacks or misreads ("m3/h" digit exponents are read as powers, "Nm" as newton metre, not
number-metre). Durations are quantities like any other ("2 years", "7 days").
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cache

import pint

# Spellings pint lacks or reads as something else -> a pint expression.
ALIASES: dict[str, str] = {
    "Nm": "newton * meter", "kNm": "kilonewton * meter", "N·m": "newton * meter",
    "KW": "kilowatt", "Kw": "kilowatt", "HP": "horsepower", "PS": "metric_horsepower",
    "cfm": "foot ** 3 / minute", "gpm": "gallon / minute", "lpm": "liter / minute",
    "barg": "bar", "bara": "bar", "psig": "psi", "rev": "turn", "revs": "turn", "°": "degree",
    "deg": "degree", "mWC": "meter_H2O",
}
# English words pint would read as units.
NOT_UNITS = frozenset({"in", "at", "a", "as", "am", "pm", "us", "he", "me", "point", "points", "hand", "hands",
                       "pole", "poles", "count", "unit", "units", "drop", "grade", "pi", "pc", "pcs", "cycle",
                       "cycles", "dpi"})
# Glued to a number these are names or ordinals, not units: 3D, 4K, 5G, 2nd, the 1990s.
GLUED_NOT_UNITS = frozenset({"D", "K", "G", "P", "st", "nd", "rd", "th", "s"})
REFUSED_PREFIXES = frozenset({"atto", "zepto", "yocto", "femto", "peta", "exa", "zetta", "yotta", "ronna",
                              "quetta", "ronto", "quecto"})
_MICRO_SPELLINGS = ("µ", "μ", "micro")
_SUPERSCRIPTS = str.maketrans({"²": "2", "³": "3", "·": "*", "⋅": "*", "μ": "µ"})

_NUM = r"(?:[1-9]\d{0,2}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d+(?:[.,]\d+)?)"
_WORD = r"[^\W\d_][^\W_]*"
_UNIT = (rf"%|°\s?[CFK](?![^\W_])|°|{_WORD}(?:[/·⋅*]{_WORD})*(?:\s+per\s+{_WORD})?")
_SPACE = r"[ \u00a0\u202f]"
QUANTITY = re.compile(
    rf"(?<![\w.,:/\-−–])(?P<neg>[-−](?=\d))?(?P<a>{_NUM})"
    rf"(?:(?:{_SPACE}*[-–—]{_SPACE}*|\s+to\s+)(?P<b>{_NUM}))?"
    rf"(?:(?P<sep>{_SPACE}?-?{_SPACE}?)(?P<unit>{_UNIT}))?"
)

# Names for the kinds of quantity a reviewer reads in a reason; the first match wins.
_KINDS = {"length": "[length]", "mass": "[mass]", "time": "[time]", "temperature": "[temperature]",
          "current": "[current]", "area": "[area]", "volume": "[volume]", "power": "[power]",
          "pressure": "[pressure]", "force": "[force]", "energy or torque": "[energy]",
          "rotational speed or frequency": "[frequency]", "speed": "[velocity]", "voltage": "[electric_potential]",
          "flow": "[volumetric_flow_rate]", "mass flow": "[mass] / [time]", "density": "[density]",
          "luminous intensity": "[luminosity]"}


@cache
def registry() -> pint.UnitRegistry:
    """One registry for the process (building one takes a fraction of a second)."""
    return pint.UnitRegistry()


@dataclass(frozen=True)
class Quantity:
    """A number (or range) with a unit found in text: ``values`` are in SI base units, ``kind`` is its
    dimensionality (equal kinds compare); ``start``/``end`` are offsets into the text it was found in."""

    text: str
    start: int
    end: int
    values: tuple[float, ...]  # one value, or a range's two ends
    kind: str

    def matches(self, value: float, rel_tolerance: float) -> bool:
        """Whether any of this quantity's values equals ``value`` within ``rel_tolerance``."""
        return any(close(v, value, rel_tolerance) for v in self.values)


def close(a: float, b: float, rel_tolerance: float) -> bool:
    return math.isclose(a, b, rel_tol=rel_tolerance, abs_tol=1e-12)


def parse_number(text: str) -> float:
    """A number as ``QUANTITY`` matched it (see the module docstring for the comma rule)."""
    if re.fullmatch(r"[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?", text):
        return float(text.replace(",", ""))
    return float(text.replace(",", "."))


def _word_unit(word: str) -> str | None:
    """One unit word (no operators) -> a pint expression, or None when it is not a unit."""
    if word in ALIASES:
        return ALIASES[word]
    power = ""
    m = re.fullmatch(r"([^\W\d_]+)([23])", word)
    if m and m.group(1) not in NOT_UNITS:
        word, power = m.group(1), f" ** {m.group(2)}"
    if word in NOT_UNITS:
        return None
    if word in ALIASES:
        return f"({ALIASES[word]}){power}"
    try:
        candidates = registry().parse_unit_name(word)
    except (pint.errors.PintError, ValueError, TypeError):
        return None
    for prefix, unit, _suffix in candidates:
        if prefix in REFUSED_PREFIXES or (prefix == "micro" and not word.startswith(_MICRO_SPELLINGS)):
            continue
        return f"{prefix}{unit}{power}"
    return None


@cache
def parse_unit(token: str) -> pint.Unit | None:
    """A unit as written in text ("kW", "m3/h", "litres per minute", "°C") -> a pint unit, or None."""
    token = re.sub(r"\s+per\s+", "/", token.strip()).translate(_SUPERSCRIPTS)
    token = re.sub(r"°\s+", "°", token)
    if token in ALIASES:
        return _units(ALIASES[token])
    parts = re.split(r"([/*])", token)
    expr = []
    for part in parts:
        if part in ("/", "*"):
            expr.append(f" {part} ")
            continue
        unit = _word_unit(part)
        if unit is None:
            return None
        expr.append(f"({unit})")
    return _units("".join(expr))


def _units(expr: str) -> pint.Unit | None:
    try:
        return registry().parse_units(expr)
    except (pint.errors.PintError, ValueError, TypeError, AttributeError, SyntaxError):
        return None


def _kind(dimensionality) -> str:
    """A canonical text for a dimensionality (pint's own ``str`` depends on how the unit was written)."""
    items = sorted((str(k), float(v)) for k, v in dict(dimensionality).items() if v)
    return " * ".join(f"{k}^{v:g}" for k, v in items) or "dimensionless"


def kind_name(kind: str) -> str:
    """A quantity kind as a reviewer reads it: "power", "pressure", else the dimensionality itself."""
    if kind == "dimensionless":
        return "ratio or percentage"
    ureg = registry()
    for name, dims in _KINDS.items():
        if _kind(ureg.get_dimensionality(dims)) == kind:
            return name
    return kind


def find_quantities(text: str) -> list[Quantity]:
    """Every number-with-unit in ``text``, in order (numbers without a recognised unit are skipped)."""
    out = []
    ureg = registry()
    for m in QUANTITY.finditer(text):
        token = m.group("unit")
        glued = not m.group("sep") and token in GLUED_NOT_UNITS
        unit = parse_unit(token) if token and not glued else None
        if unit is None:
            continue
        sign = -1.0 if m.group("neg") else 1.0
        numbers = [sign * parse_number(m.group("a"))] + ([parse_number(m.group("b"))] if m.group("b") else [])
        try:
            values = tuple(float(ureg.Quantity(n, unit).to_base_units().magnitude) for n in numbers)
        except (pint.errors.PintError, ValueError, TypeError):
            continue
        out.append(Quantity(m.group(0), m.start(), m.end(), values, _kind(registry().get_dimensionality(unit))))
    return out
