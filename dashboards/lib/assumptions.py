"""The ROI what-if form's fields, read from the one model of them (``RoiAssumptions``)."""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin

from armor_ab.roi.assumptions import RoiAssumptions
from armor_ab.roi.sensitivity import LABELS


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    help: str
    default: float | int | None
    optional: bool  # may be left empty (None)
    integer: bool
    minimum: float | None
    maximum: float | None


def _bound(meta: list, attr: str) -> float | None:
    for m in meta:
        if hasattr(m, attr):
            return getattr(m, attr)
    return None


def fields() -> list[Field]:
    """Every assumption in the model's order, with its label, help, default and bounds."""
    out = []
    for name, info in RoiAssumptions.model_fields.items():
        ann = info.annotation
        args = get_args(ann) if get_origin(ann) in (Union, types.UnionType) else (ann,)
        optional = type(None) in args
        integer = int in args and float not in args
        out.append(Field(name, LABELS.get(name, name.replace("_", " ").capitalize()), info.description or "",
                         info.default, optional, integer, _bound(info.metadata, "ge"), _bound(info.metadata, "le")))
    return out


def defaults_from(roi_block: dict | None) -> dict[str, Any]:
    """The experiment's assumptions (its ``roi`` block, as the report echoes them), else the model's defaults."""
    base = RoiAssumptions().model_dump()
    if roi_block:
        base.update({k: v for k, v in roi_block.items() if k in base})
    return base


def validate(values: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """(the validated assumptions, None) or (None, the first problem in words)."""
    from pydantic import ValidationError

    try:
        return RoiAssumptions.model_validate(values).model_dump(), None
    except ValidationError as exc:
        err = exc.errors()[0]
        name = ".".join(str(p) for p in err["loc"])
        return None, f"{LABELS.get(name, name)}: {err['msg']}"


def changed(values: dict[str, Any], defaults: dict[str, Any]) -> list[str]:
    """The assumptions that differ from the experiment's."""
    return [k for k in defaults if values.get(k) != defaults[k]]
