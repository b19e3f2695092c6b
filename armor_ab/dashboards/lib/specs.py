"""Experiment specs as YAML for the Design page: the same model as the files (``ExperimentSpec``)."""

from __future__ import annotations

from typing import Any

import yaml

from armor_ab.dashboards.lib import fmt
from armor_ab.experiments.loader import ExperimentFileError, parse_experiment_yaml

TEMPLATE = """\
key: my-experiment
name: ARMOR pages for one more category
hypothesis: Generated text with pictures raises dwell time and inquiries.
owner: pm@example.com
coverage: 1.0
variants:
  - {key: control, weight: 0.5, content: {source: catalog}}
  - {key: armor, weight: 0.5, content: {source: armor, prompt: "Describe {name} for our catalog, with pictures."}}
metrics: {primary: dwell_time_per_view, secondary: [inquiry_rate], guardrails: []}
alpha: 0.05
mde: 0.05
roi:
  monthly_visitors: 50000
  inquiry_to_order: 0.2
  margin_per_order: 1500
"""


def _drop_none(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _drop_none(v) for k, v in x.items() if v is not None}
    if isinstance(x, list):
        return [_drop_none(v) for v in x]
    return x


def to_yaml(spec: dict) -> str:
    """A stored spec (the API's JSON) as YAML in the file's field order; unset (null) fields left out."""
    return yaml.safe_dump(_drop_none(spec), sort_keys=False, allow_unicode=True, width=110)


def validate_yaml(text: str) -> tuple[dict | None, str | None]:
    """(the spec as JSON, None) or (None, what is wrong, naming the field) — the API's own validation."""
    try:
        return parse_experiment_yaml(text, "YAML").model_dump(mode="json"), None
    except ExperimentFileError as exc:
        return None, (f"field `{exc.field}`: {exc.message}" if exc.field else exc.message)


def summary(spec: dict) -> str:
    variants = ", ".join(f"{v['key']} {fmt.share(v['weight'])} ({v['content']['source']})" for v in spec["variants"])
    m = spec["metrics"]
    extra = f"; secondary {', '.join(m['secondary'])}" if m.get("secondary") else ""
    return (f"`{spec['key']}`: {variants}; primary metric {m['primary']}{extra}; alpha {fmt.share(spec['alpha'])}, "
            f"MDE {fmt.share(spec['mde'])}; ROI block {'yes' if spec.get('roi') else 'no'}.")
