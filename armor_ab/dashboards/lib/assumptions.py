"""The ROI what-if form's fields, read from the one model of them (``RoiAssumptions``).

Each numeric assumption has a likely value and, where it may be uncertain, an optional low and
high (both empty: a plain number; both set: a ``{low, likely, high}`` range). Widget keys:
``roi_<name>``, ``roi_<name>_low``, ``roi_<name>_high``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from armor_ab.roi.assumptions import GROUPS, LABELS, SPECS, RoiAssumptions


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    help: str
    default: Any
    kind: str  # "number" | "integer" | "bool"
    rangeable: bool
    group: str  # a key of GROUPS
    unit: str
    minimum: float | None
    maximum: float | None

    @property
    def integer(self) -> bool:
        return self.kind == "integer"


def fields() -> list[Field]:
    """Every assumption in the model's order, with its label, help, default, group and bounds."""
    out = []
    for name, info in RoiAssumptions.model_fields.items():
        spec = SPECS.get(name)
        if spec is None:  # the boolean switch
            out.append(Field(name, LABELS.get(name, name), info.description or "", info.default, "bool", False,
                             "savings", "", None, None))
            continue
        minimum = spec.ge if spec.ge is not None else spec.gt
        out.append(Field(name, spec.label, info.description or "", info.default,
                         "integer" if info.annotation is int else "number", spec.rangeable, spec.group, spec.unit,
                         minimum, spec.le))
    return out


def groups() -> dict[str, list[Field]]:
    """The fields by form section, in the sections' order."""
    by: dict[str, list[Field]] = {g: [] for g in GROUPS}
    for f in fields():
        by[f.group].append(f)
    return by


def defaults_from(roi_block: dict | None) -> dict[str, Any]:
    """The experiment's assumptions (its ``roi`` block, as the API echoes it; old keys mapped), else the
    model's defaults; ranges as ``{low, likely, high}`` dicts."""
    if roi_block:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                return RoiAssumptions.model_validate(roi_block).model_dump(mode="json")
            except ValueError:
                pass
    return RoiAssumptions().model_dump(mode="json")


def widget_values(assumptions: dict[str, Any]) -> dict[str, Any]:
    """Session-state values of the form's widgets for a set of assumptions."""
    out: dict[str, Any] = {}
    for f in fields():
        v = assumptions.get(f.name, f.default)
        if f.kind == "bool":
            out[f"roi_{f.name}"] = bool(v)
            continue
        if isinstance(v, dict):
            likely, low, high = v.get("likely"), v.get("low"), v.get("high")
        else:
            likely, low, high = v, None, None
        cast = int if f.integer else float
        out[f"roi_{f.name}"] = None if likely is None else cast(likely)
        if f.rangeable:
            out[f"roi_{f.name}_low"] = None if low is None else float(low)
            out[f"roi_{f.name}_high"] = None if high is None else float(high)
    return out


def collect(state: Any) -> tuple[dict[str, Any], str | None]:
    """The assumptions the widgets hold (``state``: session state or a dict), and the first problem."""
    values: dict[str, Any] = {}
    for f in fields():
        likely = state.get(f"roi_{f.name}")
        if f.kind == "bool" or not f.rangeable:
            values[f.name] = likely
            continue
        low, high = state.get(f"roi_{f.name}_low"), state.get(f"roi_{f.name}_high")
        if low is None and high is None:
            values[f.name] = likely
        elif low is None or high is None:
            return values, f"{f.label}: give both low and high, or neither"
        else:
            values[f.name] = {"low": low, "likely": likely, "high": high}
    return values, None


def validate(values: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """(the validated assumptions, None) or (None, the first problem in words)."""
    from pydantic import ValidationError

    try:
        return RoiAssumptions.model_validate(values).model_dump(mode="json"), None
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else ""
        msg = err["msg"].removeprefix("Value error, ")
        return None, f"{LABELS.get(name, name)}: {msg}"


def changed(values: dict[str, Any], defaults: dict[str, Any]) -> list[str]:
    """The assumptions that differ from the experiment's."""
    return [k for k in defaults if values.get(k) != defaults[k]]
