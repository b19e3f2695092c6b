"""The editable business assumptions behind the ROI: the ``roi:`` block of an experiment YAML."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RoiAssumptions(BaseModel):
    """Every figure the ROI depends on; all are editable in the dashboard's what-if view."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    monthly_visitors: float = Field(default=50_000, ge=0, description="visitors in scope per month")
    inquiry_to_order: float = Field(default=0.2, ge=0, le=1, description="share of inquiries that become orders")
    margin_per_order: float = Field(default=1_500.0, ge=0, description="average margin per order")
    content_hours_saved_per_page: float = Field(default=0.5, ge=0)
    pages: float = Field(default=40, ge=0)
    hourly_rate: float = Field(default=60.0, ge=0)
    finetune_gpu_hours: float = Field(default=160 * 24 / 100, ge=0, description="one-off fine-tuning GPU-hours")
    gpu_hour_price: float = Field(default=2.5, ge=0)
    serving_gpu_hours_per_month: float | None = Field(default=None, ge=0)
    cost_per_1000_generations: float | None = Field(default=0.8, ge=0)
    generations_per_month: float = Field(default=5_000, ge=0)
    monthly_operations_cost: float = Field(default=500.0, ge=0)
    horizon_months: int = Field(default=12, ge=1, le=120)
    annual_discount_rate: float = Field(default=0.08, ge=0, le=1)
