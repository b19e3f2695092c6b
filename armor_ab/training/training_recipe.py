"""The training recipe (``armor_ab/assets/recipes/training/armor-demo.yaml``): everything a run needs, in one
file, hashed into the artifact so that a model says what made it.

Paths in a recipe (``catalog``, the input; ``export``, the output) are relative to the recipe file's own
directory (to the working directory for a recipe built from a dict without a file). The shipped recipe reads
the demo catalog (``../../catalog``) and exports to the shipped model's directory (``../../models/armor-demo``),
so a full run replaces the model in place; ``armor-ab train --no-export`` writes nothing there. Without a
``catalog`` field a recipe reads the demo catalog (``armor_ab.assets.DEMO_CATALOG``).

``TrainingRecipe.sha256()`` hashes the recipe as written, less those two locations: where the files are is not
what was trained (the catalog's bytes are hashed separately, ``data.catalog_sha256`` in training.json), so the
hash is the same wherever the recipe, the catalog or the checkout live.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import yaml

from armor_ab.assets import DEMO_CATALOG

from .classifier import ClassifierConfig
from .data import TASKS, DataConfig
from .vq import VQTrainConfig

LOCATIONS = ("catalog", "export")  # fields that say where files are, not what is trained: not hashed


@dataclass(frozen=True)
class StageConfig:
    """One training stage. ``wohg`` is the model's ``set_wohg_stage`` index (what is trainable)."""

    stage: int | str  # 0-3, or "one-stage"
    name: str
    wohg: int
    split: str = "train"
    tasks: tuple[str, ...] = TASKS
    task_weights: dict[str, float] = field(default_factory=dict)
    hq_only: bool = False
    steps: int = 100
    batch_size: int = 16
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup: int = 20
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    alpha: float = 1.0  # text loss weight
    beta: float = 1.0  # image loss weight
    switch_weight: float = 1.0  # text loss multiplier at the modality decisions (trainer.decision_positions)
    cfg_dropout: float = 0.0  # share of picture answers trained without their condition (for CFG)
    log_every: int = 10
    val_every: int = 100
    val_batches: int = 2
    checkpoint_every: int = 100
    # How a step is computed (docs/training.md, "Distributed, bf16, accumulation"); none of these changes what
    # a step trains on: ``batch_size`` is the global batch of one optimizer step, whatever the process count.
    micro_batch_size: int = 0  # rows per forward/backward in each process (gradient accumulation); 0: all at once
    precision: str = "fp32"  # "fp32", or "bf16": bfloat16 autocast, fp32 master weights and optimizer state
    gradient_checkpointing: bool = False  # recompute the LM, adapter and ViT blocks in backward (less memory)
    PRECISIONS: ClassVar[tuple[str, ...]] = ("fp32", "bf16")

    def __post_init__(self) -> None:
        if self.precision not in self.PRECISIONS:
            raise ValueError(f"stage {self.stage}: precision {self.precision!r}, not one of {self.PRECISIONS}")
        if self.micro_batch_size < 0:
            raise ValueError(f"stage {self.stage}: micro_batch_size must be >= 0 (0: no accumulation)")

    @classmethod
    def from_dict(cls, data: dict) -> StageConfig:
        data = dict(data)
        if "tasks" in data:
            data["tasks"] = tuple(data["tasks"])
        unknown = set(data.get("tasks", ())) - set(TASKS)
        if unknown:
            raise ValueError(f"stage {data.get('stage')}: unknown task types {sorted(unknown)}")
        return cls(**data)

    @property
    def dirname(self) -> str:
        return f"stage{self.stage}" if isinstance(self.stage, int) else str(self.stage)


@dataclass(frozen=True)
class EvalConfig:
    per_task: int = 42  # held-out prompts per task type (one per product)
    batch_size: int = 42
    temperature: float = 0.0  # text: greedy
    max_new_tokens: int = 48
    guidance: float = 3.0
    image_temperature: float = 0.7
    image_top_k: int = 0
    seed: int = 0

    @classmethod
    def from_dict(cls, data: dict | None) -> EvalConfig:
        return cls(**(data or {}))


@dataclass(frozen=True)
class TrainingRecipe:
    name: str
    config: str  # named model configuration (armor_ab.model.presets)
    seed: int
    threads: int
    catalog: Path  # input: the catalog directory (resolved)
    export: Path | None  # output: where the export phase writes the model (resolved), None: no export
    data: DataConfig
    classifier: ClassifierConfig
    vq: VQTrainConfig
    stages: tuple[StageConfig, ...]
    one_stage: StageConfig
    eval: EvalConfig
    source: dict  # the YAML as read, for the artifact
    path: Path | None = None

    @classmethod
    def load(cls, path: str | Path) -> TrainingRecipe:
        path = Path(path)
        raw = yaml.safe_load(path.read_text())
        return cls.from_dict(raw, path)

    @classmethod
    def from_dict(cls, raw: dict, path: Path | None = None) -> TrainingRecipe:
        stages = tuple(StageConfig.from_dict(s) for s in raw["stages"])
        if [s.stage for s in stages] != list(range(len(stages))):
            raise ValueError("stages must be listed in order 0, 1, 2, 3")
        one = dict(raw.get("one_stage") or {})
        if one.get("steps", "auto") == "auto":  # the same total steps as the WoHG stages 1-3
            one["steps"] = sum(s.steps for s in stages[1:])
        one.setdefault("stage", "one-stage")
        one.setdefault("name", "one-stage")
        one.setdefault("wohg", 0)
        return cls(
            name=raw["name"],
            config=raw["config"],
            seed=int(raw.get("seed", 0)),
            threads=int(raw.get("threads", 2)),
            catalog=_path(raw["catalog"], path) if raw.get("catalog") else DEMO_CATALOG,
            export=_path(raw["export"], path) if raw.get("export") else None,
            data=DataConfig.from_dict(raw.get("data")),
            classifier=ClassifierConfig.from_dict(raw.get("classifier")),
            vq=VQTrainConfig.from_dict(raw.get("vq")),
            stages=stages,
            one_stage=StageConfig.from_dict(one),
            eval=EvalConfig.from_dict(raw.get("eval")),
            source=raw,
            path=path,
        )

    def sha256(self) -> str:
        """The recipe's hash: the YAML as read, less ``LOCATIONS`` (see the module docstring)."""
        content = {key: value for key, value in self.source.items() if key not in LOCATIONS}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()

    def scaled(self, factor: float) -> TrainingRecipe:
        """The same recipe with every step count multiplied by ``factor`` (smoke tests)."""

        def n(steps: int) -> int:
            return max(2, int(steps * factor))

        return replace(
            self,
            classifier=replace(self.classifier, steps=n(self.classifier.steps)),
            vq=replace(self.vq, steps=n(self.vq.steps), ae_steps=max(1, int(self.vq.ae_steps * factor))),
            stages=tuple(replace(s, steps=n(s.steps)) for s in self.stages),
            one_stage=replace(self.one_stage, steps=n(self.one_stage.steps)),
        )

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "config": self.config,
            "seed": self.seed,
            "threads": self.threads,
            "catalog": str(self.catalog),
            "data": asdict(self.data),
            "classifier": asdict(self.classifier),
            "vq": asdict(self.vq),
            "stages": [asdict(s) for s in self.stages],
            "one_stage": asdict(self.one_stage),
            "eval": asdict(self.eval),
        }


def _path(value: str | Path, recipe_file: Path | None) -> Path:
    """A path written in the recipe: absolute as is, else relative to the recipe file's directory."""
    path = Path(value)
    if path.is_absolute() or recipe_file is None:
        return path
    return (Path(recipe_file).parent / path).resolve()
