"""The editable business assumptions behind the ROI: the ``roi:`` block of an experiment YAML.

Money is in one currency throughout (the dashboard shows it as $). Time is in months: month 0 is
launch, months 1..``horizon_months`` carry the recurring cash flows (booked at month end).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class RoiAssumptions(BaseModel):
    """Every figure the ROI depends on; all are editable in the dashboard's what-if view.

    Serving cost per month is ``serving_gpu_hours_per_month * gpu_hour_price`` when
    ``serving_gpu_hours_per_month`` is set (dedicated GPUs: the cost does not scale with traffic);
    otherwise ``cost_per_1000_generations * generations_per_month / 1000`` (pay per use); with
    neither set, serving is free (pages generated once, offline).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    monthly_visitors: float = Field(default=50_000, ge=0, description="visitors in scope per month")
    inquiry_to_order: float = Field(
        default=0.2, ge=0, le=1, description="share of inquiries that become orders"
    )
    margin_per_order: float = Field(default=1_500.0, ge=0, description="average margin per order")
    content_hours_saved_per_page: float = Field(
        default=0.5, ge=0, description="copywriting hours the generated content saves per catalog page"
    )
    pages: float = Field(default=40, ge=0, description="catalog pages the generated content replaces")
    hourly_rate: float = Field(default=60.0, ge=0, description="cost of one copywriting hour")
    content_refresh_months: int | None = Field(
        default=None,
        ge=1,
        description=(
            "if set, the pages would be rewritten by hand every this many months, so the content "
            "saving recurs at months 0, k, 2k, ... before the horizon ends; unset = one-off at month 0"
        ),
    )
    finetune_gpu_hours: float = Field(
        default=160 * 24 / 100, ge=0, description="one-off fine-tuning GPU-hours"
    )
    gpu_hour_price: float = Field(default=2.5, ge=0, description="price of one GPU-hour")
    serving_gpu_hours_per_month: float | None = Field(
        default=None,
        ge=0,
        description="dedicated serving GPU-hours per month; wins over the per-generation price",
    )
    cost_per_1000_generations: float | None = Field(
        default=0.8, ge=0, description="pay-per-use serving price per 1,000 generations"
    )
    generations_per_month: float = Field(
        default=5_000, ge=0, description="generations per month (used with cost_per_1000_generations)"
    )
    monthly_operations_cost: float = Field(
        default=500.0, ge=0, description="monitoring, on-call, storage and other running costs per month"
    )
    horizon_months: int = Field(default=12, ge=1, le=120, description="months the NPV and payback look ahead")
    annual_discount_rate: float = Field(
        default=0.08, ge=0, le=1, description="yearly cost of capital; compounded monthly as (1+r)^(1/12)-1"
    )

    def with_updates(self, **updates: Any) -> RoiAssumptions:
        """A what-if copy with some figures changed, validated.

        ``model_copy(update=...)`` skips validation, so a what-if typo such as a negative
        price would flow silently into the ROI; this re-validates and raises instead.
        """
        return type(self).model_validate({**self.model_dump(), **updates})
