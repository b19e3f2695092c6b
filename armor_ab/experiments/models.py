"""The experiment definition product managers write as YAML, validated by pydantic.

``ExperimentSpec`` is the one schema for an experiment: the YAML file, the admin API body
(``ExperimentCreate`` is an alias) and the ``spec`` column in DuckDB all hold it.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from armor_ab.experiments.content_checks import ContentChecks, Expects, HealthSpec
from armor_ab.experiments.limits import (
    MAX_LABEL_CHARS,
    MAX_NAME_CHARS,
    MAX_SEGMENT_CHARS,
    MAX_SEGMENTS,
    MAX_TEXT_CHARS,
    MAX_VARIANTS,
    MIN_VARIANTS,
    SEGMENT_PATTERN,
)
from armor_ab.roi.assumptions import RoiAssumptions

METRICS = (
    "dwell_time_per_view",
    "dwell_time_per_visitor",
    "inquiry_rate",
    "inquiries_per_visitor",
    "inquiry_value_per_visitor",
)
MetricName = Literal[
    "dwell_time_per_view",
    "dwell_time_per_visitor",
    "inquiry_rate",
    "inquiries_per_visitor",
    "inquiry_value_per_visitor",
]
Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
# A segment is a top-level key of an exposure's properties; each is a column of the report's query.
SegmentName = Annotated[str, Field(min_length=1, max_length=MAX_SEGMENT_CHARS, pattern=SEGMENT_PATTERN)]
Label = Annotated[str, Field(max_length=MAX_LABEL_CHARS)]

log = logging.getLogger("armor_ab.experiments")

# Renamed keys of the experiment schema: (*path of the mapping, old key) -> new key, e.g.
# ("analysis", "min_days"): "min_runtime_days", or ("variants", "*", "content", "images"): "max_images"
# ("*": every item of a list). An old key is read as the new one with a DeprecationWarning and a log
# line; both names at once is an error. Keep an entry for as long as old files or stored specs may
# use it (docs/migrations.md).
RENAMED_KEYS: dict[tuple[str, ...], str] = {}


class RenamedKeyError(ValueError):
    """A key given under its old and its new name; ``field`` is the new name's dotted path."""

    def __init__(self, old: str, new: str) -> None:
        self.old, self.field = old, new
        super().__init__(f"'{old}' is the old name of '{new}'; both are given, keep only '{new}'")


def _dotted(path: tuple[str, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out


def apply_renamed_keys(data: Any, source: str = "experiment spec",
                       renames: dict[tuple[str, ...], str] | None = None) -> Any:
    """``data`` with every old key of ``RENAMED_KEYS`` under its new name (a copy; ``data`` is kept).

    Each rename warns (``DeprecationWarning``) and logs, naming ``source``, the old and the new field.
    Raises ``RenamedKeyError`` when a mapping holds both names.
    """
    table = RENAMED_KEYS if renames is None else renames
    if not table or not isinstance(data, dict):
        return data

    def walk(node: Any, pattern: tuple[str, ...], at: tuple[str, ...], old: str, new: str) -> Any:
        if pattern:
            head, rest = pattern[0], pattern[1:]
            if head == "*" and isinstance(node, list):
                items = [walk(v, rest, (*at, str(i)), old, new) for i, v in enumerate(node)]
                return items if any(a is not b for a, b in zip(items, node, strict=True)) else node
            if isinstance(node, dict) and head != "*" and head in node:
                child = walk(node[head], rest, (*at, head), old, new)
                return node if child is node[head] else {**node, head: child}
            return node
        if not isinstance(node, dict) or old not in node:
            return node
        old_path, new_path = _dotted((*at, old)), _dotted((*at, new))
        if new in node:
            raise RenamedKeyError(old_path, new_path)
        message = f"{source}: field '{old_path}' is renamed '{new_path}'; read as '{new_path}', please rename it"
        warnings.warn(message, DeprecationWarning, stacklevel=4)
        log.warning(message)
        return {(new if k == old else k): v for k, v in node.items()}  # same position, new name

    for (*where, old), new in table.items():
        data = walk(data, tuple(where), (), old, new)
    return data


class _Strict(BaseModel):
    # allow_inf_nan=False: every float of a spec is finite (NaN and infinities are refused naming the
    # field; a stored NaN reads back as null, which no longer validates).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ContentSpec(_Strict):
    """Where a variant's page copy comes from: the catalog's own text or the ARMOR model."""

    source: Literal["catalog", "armor"]
    prompt: str | None = Field(default=None, max_length=MAX_TEXT_CHARS)
    model: Label = "armor-demo"
    max_images: int = Field(default=2, ge=0, le=8)
    seed: int = Field(default=0, ge=-(2**63), lt=2**63)
    # Generate a missing page while the visitor waits (up to the server's timeout; control copy
    # meanwhile). Such pages go live unreviewed (approved, no review time); reject them to stop.
    on_demand: bool = False
    # What each page must hold (checked by the modality guardrail); None: read from the prompt template.
    expects: Expects | None = None

    @model_validator(mode="after")
    def _armor_needs_prompt(self) -> ContentSpec:
        if self.source == "armor" and not self.prompt:
            raise ValueError("an 'armor' content source needs a prompt template")
        return self


class Variant(_Strict):
    key: Slug
    weight: float = Field(ge=0.0, le=1.0)
    name: Label | None = None
    content: ContentSpec = ContentSpec(source="catalog")


class Guardrail(_Strict):
    """A metric that must not get worse than ``margin`` (relative, e.g. 0.02 = 2%)."""

    metric: MetricName
    margin: float = Field(default=0.02, ge=0.0, lt=1.0)


class MetricsSpec(_Strict):
    primary: MetricName
    secondary: list[MetricName] = []
    guardrails: list[Guardrail] = []

    @field_validator("guardrails", mode="before")
    @classmethod
    def _guardrail_shorthand(cls, value: object) -> object:
        # "guardrails: [inquiry_rate]" is shorthand for the default margin.
        if isinstance(value, list):
            return [{"metric": v} if isinstance(v, str) else v for v in value]
        return value

    def all(self) -> list[str]:
        """Every metric named, primary first, without repeats."""
        seen: dict[str, None] = {self.primary: None}
        for name in [*self.secondary, *(g.metric for g in self.guardrails)]:
            seen.setdefault(name, None)
        return list(seen)


class Capping(_Strict):
    """Per-visitor capping of a metric's variables (Statsig's winsorisation at visitor level).

    ``percentile``: each visitor's total is capped at that quantile of all visitors' totals in the
    experiment (pooled over variants, computed after bots and multi-variant visitors are excluded);
    ``absolute``: capped at ``value`` in the variable's own unit (ms of dwell, views, inquiries, money).
    A ratio metric caps its numerator and its denominator.
    """

    type: Literal["percentile", "absolute"] = "percentile"
    value: float = Field(default=0.999, gt=0.0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _check_value(self) -> Capping:
        if self.type == "percentile" and not 0.5 < self.value <= 1.0:
            raise ValueError(f"a percentile cap must be in (0.5, 1], got {self.value:g}")
        return self


# The per-visitor variables each metric reads (inquiry_rate's 0/1 variable is never capped).
CAPPED_VARIABLES: dict[str, tuple[str, ...]] = {
    "dwell_time_per_view": ("dwell", "views"),
    "dwell_time_per_visitor": ("dwell",),
    "inquiry_rate": (),
    "inquiries_per_visitor": ("inq",),
    "inquiry_value_per_visitor": ("inqv",),
}
CAPPABLE = ("views", "dwell", "inq", "inqv")


class BotFilter(_Strict):
    """Visitors excluded as bots (and counted): a known bot User-Agent, flagged when the request
    arrives, or more page views in one UTC day than ``max_views_per_day``."""

    user_agents: bool = True
    max_views_per_day: int | None = Field(default=300, ge=1)


class AnalysisSpec(_Strict):
    """Settings of the statistics engine; every field has a sensible default."""

    mode: Literal["sequential", "fixed", "hybrid"] = "sequential"
    # hybrid: always-valid looks at alpha * share before the planned horizon, one fixed-horizon test
    # at alpha * (1 - share) at it (Bonferroni: the two together keep the false-positive rate <= alpha).
    hybrid_sequential_share: float = Field(default=0.5, gt=0.0, lt=1.0)
    # An optional cap on single dwell events (the old event-level cap); per-visitor capping is ``capping``.
    dwell_cap_percentile: float | None = Field(default=None, gt=0.5, le=1.0)
    capping: dict[MetricName, Capping | None] = {}  # per metric; None turns capping off for it
    capping_default: Capping | None = Capping()
    bots: BotFilter = BotFilter()
    multi_exposure_warn_share: float = Field(default=0.01, ge=0.0, le=1.0)
    srm_alpha: float = Field(default=0.001, gt=0.0, lt=0.5)
    min_runtime_days: float = Field(default=7.0, ge=0.0, allow_inf_nan=False)
    min_visitors_per_variant: int = Field(default=100, ge=2)
    # Events count from a visitor's first exposure for this many UTC calendar days (the exposure
    # day is day 1); None: to the end of the analysis window.
    conversion_window_days: int | None = Field(default=None, ge=1, le=365)
    # The ROI's effect: inquiries per visitor within this many calendar days of first exposure,
    # over visitors whose window has closed, so it does not depend on how long the test ran.
    roi_window_days: int = Field(default=3, ge=1, le=90)
    # The sd of the Normal(0, sd^2) prior the ROI shrinks the relative inquiry lift with; None: the
    # documented default (0.1). `armor-ab roi prior` estimates it from the database's past experiments.
    roi_prior_sd: float | None = Field(default=None, gt=0.0, le=10.0, allow_inf_nan=False)
    cuped: bool = True
    cuped_pre_days: int = Field(default=14, ge=1, le=365)
    sequential_tuning: float = Field(default=5000.0, gt=0, allow_inf_nan=False)
    prior_mean: float = Field(default=0.0, allow_inf_nan=False)
    prior_stddev: float = Field(default=0.3, gt=0, allow_inf_nan=False)
    prior_proper: bool = False  # False: flat prior (gbstats' default); True: Normal(prior_mean, prior_stddev) on the relative lift
    correction: Literal["holm", "fdr_bh", "none"] = "holm"
    # Which exposures let a visitor in (docs/events.md): "server" needs one not posted with the public
    # client key (the server's own, or an import), so made-up visitors add nothing; "any" counts all.
    exposures: Literal["server", "any"] = "server"
    power: float = Field(default=0.8, gt=0.0, lt=1.0)

    def variable_caps(self, metrics: list[str]) -> dict[str, Capping | None]:
        """The cap of each per-visitor variable: the metric's own setting, else ``capping_default``.

        Two metrics that read the same variable must not ask for different caps.
        """
        caps: dict[str, Capping | None] = dict.fromkeys(CAPPABLE, self.capping_default)
        set_by: dict[str, str] = {}
        for metric, cap in self.capping.items():
            for var in CAPPED_VARIABLES[metric]:
                if var in set_by and caps[var] != cap:
                    raise ValueError(
                        f"analysis.capping: {set_by[var]} and {metric} both read {var!r} but ask for different caps"
                    )
                caps[var], set_by[var] = cap, metric
        return caps

    @model_validator(mode="after")
    def _check_caps(self) -> AnalysisSpec:
        self.variable_caps(list(self.capping))
        return self


class ExperimentSpec(_Strict):
    key: Slug
    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    hypothesis: str = Field(default="", max_length=MAX_TEXT_CHARS)
    owner: Label = ""
    coverage: float = Field(default=1.0, ge=0.0, le=1.0)
    hash_seed: Label | None = None
    hash_version: Literal[1, 2] = 2
    variants: list[Variant] = Field(min_length=MIN_VARIANTS, max_length=MAX_VARIANTS)
    control: str | None = None
    metrics: MetricsSpec
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)
    mde: float = Field(default=0.05, gt=0.0)
    # Each segment is a column of the report's query: a bounded number of bounded names.
    segments: list[SegmentName] = Field(default=[], max_length=MAX_SEGMENTS)
    roi: RoiAssumptions | None = None
    analysis: AnalysisSpec = AnalysisSpec()
    # Guardrails every generated page passes before it can be approved or served (docs/guardrails.md).
    content_checks: ContentChecks = ContentChecks()
    # Live health: what warns, and whether a critical state pauses the ARMOR arms (docs/guardrails.md).
    health: HealthSpec = HealthSpec()

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data: Any) -> Any:
        # Old key names (RENAMED_KEYS) in a YAML file, an API body or a spec stored by older code.
        if isinstance(data, dict):
            key = data.get("key")
            return apply_renamed_keys(data, f"experiment {key!r}" if isinstance(key, str) else "experiment spec")
        return data

    @field_validator("segments")
    @classmethod
    def _unique_segments(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"segments must be unique, got {value}")
        return value

    @model_validator(mode="after")
    def _check_variants(self) -> ExperimentSpec:
        keys = [v.key for v in self.variants]
        if len(set(keys)) != len(keys):
            raise ValueError(f"variant keys must be unique, got {keys}")
        total = math.fsum(v.weight for v in self.variants)
        if abs(total - 1.0) > 0.01:
            raise ValueError(f"variant weights must sum to 1, got {total:g}")
        if self.control is not None and self.control not in keys:
            raise ValueError(f"control {self.control!r} is not one of the variants {keys}")
        return self

    @property
    def seed(self) -> str:
        """The hashing seed: ``hash_seed`` when given, else the key."""
        return self.hash_seed or self.key

    @property
    def control_key(self) -> str:
        """The baseline variant: ``control`` when given, else the first variant."""
        return self.control or self.variants[0].key

    @property
    def weights(self) -> list[float]:
        return [v.weight for v in self.variants]

    def variant(self, key: str) -> Variant | None:
        return next((v for v in self.variants if v.key == key), None)

    def assignment_fields(self) -> tuple:
        """What decides who sees what; changing it on a running experiment needs a new bucket version."""
        return (self.seed, self.hash_version, tuple((v.key, v.weight) for v in self.variants))


ExperimentCreate = ExperimentSpec
