"""The editable business assumptions behind the ROI: the ``roi:`` block of an experiment YAML.

Money is in one currency throughout (the dashboard shows it as $). Time is in months: month 0 is
launch, months 1..``horizon_months`` carry the recurring cash flows (booked at month end).
The formulas are in ``docs/roi.md``.

Any numeric assumption marked *rangeable* below may be a number or ``{low, likely, high}``
(``armor_ab.roi.ranges.Range``); the Monte Carlo draws the ranged ones (PERT) jointly with the
effect. The horizon and the two decision thresholds (``material_investment``,
``max_expected_loss``) are not uncertain business facts and stay plain numbers.

Keys of the first ROI model still load (mapped where meaningful, with a
``DeprecatedAssumptionWarning`` and one log line): see ``LEGACY_KEYS``.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from armor_ab.roi.ranges import Range, likely, parts

log = logging.getLogger("armor_ab.roi")



def _kind(value: Any) -> str:
    return "range" if isinstance(value, dict | Range) else "number"


# A number, or {low, likely, high}; the discriminator keeps a bad value to one error message.
Num = Annotated[Annotated[float, Tag("number")] | Annotated[Range, Tag("range")], Discriminator(_kind)]


class DeprecatedAssumptionWarning(DeprecationWarning):
    """An old ``roi:`` key was read (and mapped, or dropped); rewrite the block with the new keys."""


@dataclass(frozen=True)
class Spec:
    """What the form, the tornado and the validation need to know about one numeric assumption."""

    label: str
    unit: str  # "$", "$/h", "share", "count", "months", "minutes", "GPU-hours", ...
    group: str  # value | one_off | monthly | savings | decision
    ge: float | None = 0.0
    le: float | None = None
    gt: float | None = None
    rangeable: bool = True


GROUPS = {
    "value": "Traffic and value",
    "one_off": "One-off costs",
    "monthly": "Monthly costs",
    "savings": "Content savings",
    "decision": "Decision thresholds",
}

SPECS: dict[str, Spec] = {
    "monthly_visitors": Spec("Monthly new visitors in scope", "count", "value"),
    "inquiry_to_order": Spec("Inquiry-to-order rate", "share", "value", le=1.0),
    "margin_per_order": Spec("Margin per order", "$", "value"),
    "effect_retention_per_month": Spec("Effect retention per month", "share", "value", ge=None, gt=0.0, le=1.0),
    "horizon_months": Spec("Horizon (months)", "months", "value", ge=1, le=120, rangeable=False),
    "annual_discount_rate": Spec("Annual discount rate", "share", "value", le=1.0),
    "engineering_cost": Spec("Engineering and integration", "$", "one_off"),
    "finetune_gpu_hours": Spec("Fine-tuning GPU-hours per run", "GPU-hours", "one_off"),
    "gpu_hour_price": Spec("GPU-hour price", "$/h", "one_off"),
    "finetune_runs": Spec("Fine-tuning runs", "count", "one_off"),
    "pages": Spec("Catalog pages", "count", "one_off"),
    "generated_variants_per_page": Spec("Generated variants per page", "count", "one_off"),
    "cost_per_generation": Spec("Cost per generation", "$", "one_off"),
    "review_minutes_per_page": Spec("Review minutes per page", "minutes", "one_off"),
    "reviewer_hourly_rate": Spec("Reviewer hourly rate", "$/h", "one_off"),
    "new_pages_per_month": Spec("New or changed pages per month", "count", "monthly"),
    "on_demand_generations_per_1000_visitors": Spec("On-demand generations per 1,000 visitors", "count", "monthly"),
    "maintenance_share_per_year": Spec("Maintenance (share of engineering per year)", "share", "monthly", le=1.0),
    "retrains_per_year": Spec("Re-trainings per year", "count", "monthly"),
    "storage_cdn_per_month": Spec("Storage and CDN per month", "$", "monthly"),
    "other_monthly_cost": Spec("Other running costs per month", "$", "monthly"),
    "content_hours_saved_per_page": Spec("Copywriting hours saved per page", "hours", "savings"),
    "copywriting_hourly_rate": Spec("Copywriting hourly rate", "$/h", "savings"),
    "material_investment": Spec("Material investment (ROI % shown from)", "$", "decision", rangeable=False),
    "max_expected_loss": Spec("Tolerated expected loss", "$", "decision", rangeable=False),
}
LABELS = {name: s.label for name, s in SPECS.items()} | {
    "content_would_be_handwritten": "Pages would otherwise be written by hand",
    "effect": "Effect (95% posterior interval)",
}
RANGEABLE = tuple(name for name, s in SPECS.items() if s.rangeable)

# Old key -> what it became (for the warning). The mapping itself is in ``_migrate``.
LEGACY_KEYS = {
    "hourly_rate": "copywriting_hourly_rate",
    "cost_per_1000_generations": "cost_per_generation (= value / 1000)",
    "generations_per_month": "on_demand_generations_per_1000_visitors (= value / monthly_visitors * 1000)",
    "monthly_operations_cost": "other_monthly_cost",
    "serving_gpu_hours_per_month": "other_monthly_cost (+= GPU-hours x gpu_hour_price; on-demand generations 0)",
    "content_refresh_months": "dropped (use new_pages_per_month and content_would_be_handwritten)",
}
_warned: set[tuple[str, ...]] = set()


def _migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Old keys -> new ones. Explicit new keys win over mapped old ones."""
    old = [k for k in LEGACY_KEYS if k in data]
    if not old:
        return data
    out = {k: v for k, v in data.items() if k not in LEGACY_KEYS}
    mapped: dict[str, Any] = {}
    if data.get("hourly_rate") is not None:
        mapped["copywriting_hourly_rate"] = data["hourly_rate"]
    gpu_serving = data.get("serving_gpu_hours_per_month")
    price = _raw_likely(out.get("gpu_hour_price", 2.5))
    ops = data.get("monthly_operations_cost")
    other = 0.0 if ops is None else _plain(ops)
    if gpu_serving is not None:
        other += _plain(gpu_serving) * price
    if "monthly_operations_cost" in data or gpu_serving is not None:
        mapped["other_monthly_cost"] = other
    per_1000 = data.get("cost_per_1000_generations")
    if "cost_per_1000_generations" in data:
        mapped["cost_per_generation"] = 0.0 if per_1000 is None else _plain(per_1000) / 1000.0
    if gpu_serving is not None:
        mapped["on_demand_generations_per_1000_visitors"] = 0.0  # a dedicated GPU serves them (cost above)
    elif data.get("generations_per_month") is not None:
        visitors = _raw_likely(out.get("monthly_visitors", 50_000))
        gens = _plain(data["generations_per_month"])
        mapped["on_demand_generations_per_1000_visitors"] = gens / visitors * 1000.0 if visitors > 0 else 0.0
    for k, v in mapped.items():
        out.setdefault(k, v)
    key = tuple(sorted(old))
    msg = ("roi: old assumption key(s) read and mapped: "
           + "; ".join(f"{k} -> {LEGACY_KEYS[k]}" for k in key)
           + ". Rewrite the roi block with the new keys (docs/roi.md).")
    warnings.warn(msg, DeprecatedAssumptionWarning, stacklevel=4)
    if key not in _warned:  # one log line per distinct set of old keys, not one per report
        _warned.add(key)
        log.warning(msg)
    return out


def _raw_likely(x: Any) -> float:
    """The likely value of a not-yet-validated number or range."""
    if isinstance(x, Range):
        return x.likely
    if isinstance(x, dict):
        return _plain(x.get("likely"))
    return _plain(x)


def _plain(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        raise ValueError(f"old roi key expects a number, got {x!r}") from None


class RoiAssumptions(BaseModel):
    """Every figure the ROI depends on; all are editable in the dashboard's what-if view."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # -- traffic and value
    monthly_visitors: Num = Field(
        default=50_000.0,
        description="NEW visitors in scope per month (first exposures); the lift is per such visitor",
    )
    inquiry_to_order: Num = Field(default=0.2, description="share of inquiries that become orders")
    margin_per_order: Num = Field(default=1_500.0, description="average margin per order, $")
    effect_retention_per_month: Num = Field(
        default=1.0, description="the effect in month t is the lift x this^(t-1); 1 = no decay"
    )
    horizon_months: int = Field(default=12, ge=1, le=120, description="months the NPV and payback look ahead")
    annual_discount_rate: Num = Field(
        default=0.08, description="yearly cost of capital; months are discounted by (1+r)^(-t/12)"
    )
    # -- one-off costs (month 0)
    engineering_cost: Num = Field(default=20_000.0, description="engineering and integration, one-off, $")
    finetune_gpu_hours: Num = Field(default=38.4, description="GPU-hours of one fine-tuning run")
    gpu_hour_price: Num = Field(default=2.5, description="price of one GPU-hour, $")
    finetune_runs: Num = Field(
        default=3.0, description="fine-tuning runs to reach the shipped model (sweeps and failed runs included)"
    )
    pages: Num = Field(default=40.0, description="catalog pages that get generated content")
    generated_variants_per_page: Num = Field(
        default=1.0, description="generated variants per page (each is generated and reviewed)"
    )
    cost_per_generation: Num = Field(
        default=0.02, description="cost of generating one page variant (text and pictures), $"
    )
    review_minutes_per_page: Num = Field(default=10.0, description="minutes a reviewer spends on one generated variant")
    reviewer_hourly_rate: Num = Field(default=60.0, description="cost of one reviewer hour, $")
    # -- monthly costs (months 1..H)
    new_pages_per_month: Num = Field(default=5.0, description="new or changed catalog pages per month")
    on_demand_generations_per_1000_visitors: Num = Field(
        default=0.0, description="generations made at request time per 1,000 visitors (0: pages generated once)"
    )
    maintenance_share_per_year: Num = Field(
        default=0.2, description="yearly maintenance as a share of the engineering cost (charged /12 a month)"
    )
    retrains_per_year: Num = Field(default=2.0, description="fine-tuning re-runs per year (amortised /12 a month)")
    storage_cdn_per_month: Num = Field(default=50.0, description="storage and CDN for the generated pages, $/month")
    other_monthly_cost: Num = Field(default=0.0, description="monitoring, on-call and other running costs, $/month")
    # -- content savings (only when the pages would otherwise be written by hand)
    content_would_be_handwritten: bool = Field(
        default=False,
        description="true only if, without ARMOR, these pages would be written by hand: then the copywriting "
        "it replaces counts as a saving",
    )
    content_hours_saved_per_page: Num = Field(default=0.5, description="copywriting hours one page would take")
    copywriting_hourly_rate: Num = Field(default=60.0, description="cost of one copywriting hour, $")
    # -- decision thresholds
    material_investment: float = Field(
        default=5_000.0, ge=0, description="ROI % is shown only when the one-off investment reaches this, $"
    )
    max_expected_loss: float = Field(
        default=2_000.0, ge=0, description="expected loss of shipping the verdict tolerates, $"
    )

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        return _migrate(data) if isinstance(data, dict) else data

    @field_validator(*RANGEABLE, mode="after")
    @classmethod
    def _bounds(cls, value: float | Range, info: ValidationInfo) -> float | Range:
        spec = SPECS[info.field_name or ""]
        for x in parts(value):
            if spec.ge is not None and x < spec.ge:
                raise ValueError(f"must be >= {spec.ge:g}, got {x:g}")
            if spec.gt is not None and x <= spec.gt:
                raise ValueError(f"must be > {spec.gt:g}, got {x:g}")
            if spec.le is not None and x > spec.le:
                raise ValueError(f"must be <= {spec.le:g}, got {x:g}")
        return value

    # ---- reading the values

    def likely_values(self) -> dict[str, float]:
        """Every numeric assumption at its likely value (the number, or the range's ``likely``)."""
        return {name: likely(getattr(self, name)) for name in RANGEABLE}

    def ranges(self) -> dict[str, Range]:
        """The assumptions given as a non-degenerate range, in the model's order."""
        return {n: v for n in RANGEABLE if isinstance(v := getattr(self, n), Range) and not v.fixed}

    def draw(self, rng: np.random.Generator, size: int) -> dict[str, float | np.ndarray]:
        """The values for ``size`` Monte Carlo draws: an array per ranged assumption, a float otherwise.

        Ranged assumptions are independent of each other (and of the effect); they are drawn in the
        model's field order, so equal assumptions and seed give equal draws.
        """
        values: dict[str, float | np.ndarray] = dict(self.likely_values())
        for name, r in self.ranges().items():
            values[name] = r.draw(rng, size)
        return values

    def with_updates(self, **updates: Any) -> RoiAssumptions:
        """A what-if copy with some figures changed, validated.

        ``model_copy(update=...)`` skips validation, so a what-if typo such as a negative
        price would flow silently into the ROI; this re-validates and raises instead.
        """
        return type(self).model_validate({**self.model_dump(), **updates})
