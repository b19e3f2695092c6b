"""The itemised costs and content savings of shipping the ARMOR pages.

Every function takes the assumptions' values by name (floats, or numpy arrays of Monte Carlo
draws: the arithmetic broadcasts) and returns items in money. The formulas are the ones in
``docs/roi.md``:

One-off (month 0)
* engineering        = engineering_cost
* fine_tuning        = finetune_runs x finetune_gpu_hours x gpu_hour_price
* first_generation   = pages x generated_variants_per_page x cost_per_generation
* review             = pages x generated_variants_per_page x review_minutes_per_page / 60 x reviewer_hourly_rate

Monthly (months 1..H)
* generation   = (new_pages_per_month x generated_variants_per_page
                  + on_demand_generations_per_1000_visitors x monthly_visitors / 1000) x cost_per_generation
* review       = new_pages_per_month x generated_variants_per_page x review_minutes_per_page / 60 x reviewer_hourly_rate
* maintenance  = engineering_cost x maintenance_share_per_year / 12
* retraining   = retrains_per_year x finetune_gpu_hours x gpu_hour_price / 12
* storage_cdn  = storage_cdn_per_month
* other        = other_monthly_cost

Content savings, only when ``content_would_be_handwritten``: one-off
``pages x content_hours_saved_per_page x copywriting_hourly_rate`` (month 0) and monthly
``new_pages_per_month x content_hours_saved_per_page x copywriting_hourly_rate``; else 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Values = Mapping[str, Any]  # name -> float or np.ndarray


def finetune_run_cost(v: Values) -> Any:
    return v["finetune_gpu_hours"] * v["gpu_hour_price"]


def one_off(v: Values) -> dict[str, Any]:
    variants = v["pages"] * v["generated_variants_per_page"]
    return {
        "engineering": v["engineering_cost"],
        "fine_tuning": v["finetune_runs"] * finetune_run_cost(v),
        "first_generation": variants * v["cost_per_generation"],
        "review": variants * v["review_minutes_per_page"] / 60.0 * v["reviewer_hourly_rate"],
    }


def monthly(v: Values) -> dict[str, Any]:
    new_variants = v["new_pages_per_month"] * v["generated_variants_per_page"]
    on_demand = v["on_demand_generations_per_1000_visitors"] * v["monthly_visitors"] / 1000.0
    return {
        "generation": (new_variants + on_demand) * v["cost_per_generation"],
        "review": new_variants * v["review_minutes_per_page"] / 60.0 * v["reviewer_hourly_rate"],
        "maintenance": v["engineering_cost"] * v["maintenance_share_per_year"] / 12.0,
        "retraining": v["retrains_per_year"] * finetune_run_cost(v) / 12.0,
        "storage_cdn": v["storage_cdn_per_month"],
        "other": v["other_monthly_cost"],
    }


def savings(v: Values, counted: bool) -> dict[str, Any]:
    """The copywriting the generated pages replace: counted only if the pages would be hand-written."""
    per_page = v["content_hours_saved_per_page"] * v["copywriting_hourly_rate"]
    if not counted:
        return {"one_off": 0.0 * per_page, "monthly": 0.0 * per_page}
    return {"one_off": v["pages"] * per_page, "monthly": v["new_pages_per_month"] * per_page}


def total(items: Mapping[str, Any]) -> Any:
    out = 0.0
    for x in items.values():
        out = out + x
    return out
