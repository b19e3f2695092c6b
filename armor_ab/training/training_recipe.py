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

An own-catalog recipe (``armor_ab/assets/recipes/training/own-catalog.yaml``) is one with a ``base`` field: a
model directory made by ``armor-ab model init`` from a pretrained InternVL checkpoint. It names the user's
catalog instead of the demo grammar, as ``catalog_db`` (a DuckDB file ``armor-ab catalog import`` filled) or
``catalog_file`` (a CSV / JSON lines / Parquet file, photos under ``catalog_images``, default the file's
directory); ``catalog_data`` and ``phrasings`` shape its samples (``catalog_data.py``). It has no ``config``,
``catalog``, ``data``, ``classifier``, ``vq`` or ``one_stage``: the base is stage 0's result, its VQGAN is
frozen, so only WoHG stages 1-3 run (a listed stage 0 is skipped). These paths are locations too: not hashed;
the base's and the catalog's identities are recorded on their own in training.json. ``armor-ab train`` can set
them on the command line (``--base``, ``--catalog-db``, ``--catalog-file``, ``--images``, ``--export``).

Errors in a recipe are ``RecipeError``s that name the file and the field.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import yaml

from armor_ab.assets import DEMO_CATALOG

from .catalog_data import CatalogDataConfig, FieldError
from .classifier import ClassifierConfig
from .data import TASKS, DataConfig
from .vq import VQTrainConfig

# Fields that say where files are, not what is trained: not hashed.
LOCATIONS = ("catalog", "export", "base", "catalog_db", "catalog_file", "catalog_images")
# What an own-catalog recipe (one with ``base``) may hold.
OWN_FIELDS = (
    "name", "seed", "threads", "base", "catalog_db", "catalog_file", "catalog_images", "export",
    "catalog_data", "phrasings", "stages", "eval",
)
# Fields of a demo recipe an own-catalog recipe has no use for, and why.
NOT_OWN = {
    "config": "the base model directory is the configuration",
    "catalog": "the demo catalog directory; name your catalog with catalog_db or catalog_file",
    "data": "the demo grammar's settings; an own-catalog recipe sets catalog_data (and phrasings)",
    "classifier": "the demo's judge; own catalogs are judged by the model's own understanding path",
    "vq": "no VQ training: the base's VQGAN (from `armor-ab model init`) is frozen",
    "one_stage": "the one-stage comparison trains the whole base; it runs on the demo recipe only",
}


class RecipeError(ValueError):
    """A bad recipe; the message names the file and the field (``own.yaml: field 'stages[1].wohg': ...``)."""

    def __init__(self, recipe_file: Path | str | None, field_name: str, message: str) -> None:
        super().__init__(f"{recipe_file or 'recipe'}: field '{field_name}': {message}")
        self.file, self.field, self.message = recipe_file, field_name, message


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
    config: str | None  # named model configuration (armor_ab.model.presets); None with a pretrained base
    seed: int
    threads: int
    catalog: Path | None  # input: the demo catalog directory (resolved); None for an own catalog
    export: Path | None  # output: where the export phase writes the model (resolved), None: no export
    data: DataConfig
    classifier: ClassifierConfig
    vq: VQTrainConfig
    stages: tuple[StageConfig, ...]
    one_stage: StageConfig
    eval: EvalConfig
    source: dict  # the YAML as read, for the artifact
    path: Path | None = None
    # An own-catalog recipe (see the module docstring); all None for the demo recipe.
    base: Path | None = None  # a model directory made by `armor-ab model init`
    catalog_db: Path | None = None  # a DuckDB file holding an imported catalog
    catalog_file: Path | None = None  # or a catalog file, parsed like `armor-ab catalog import` does
    catalog_images: Path | None = None  # where the catalog file's image paths start (default: its directory)
    catalog_data: CatalogDataConfig | None = None

    @property
    def own_catalog(self) -> bool:
        """True for a recipe that fine-tunes a pretrained base on the user's own catalog."""
        return self.base is not None

    @classmethod
    def load(cls, path: str | Path, overrides: dict | None = None) -> TrainingRecipe:
        """Read a recipe file; ``overrides`` (e.g. ``{"base": "/abs/dir"}`` from the command line) replace
        its top-level fields before it is checked."""
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise RecipeError(path, "(file)", f"not valid YAML ({exc})") from None
        if not isinstance(raw, dict):
            raise RecipeError(path, "(file)", "a recipe is a YAML mapping of fields")
        if overrides:
            raw = {**raw, **overrides}
        return cls.from_dict(raw, path)

    @classmethod
    def from_dict(cls, raw: dict, path: Path | None = None) -> TrainingRecipe:
        if "base" in raw:
            return cls._own_catalog(raw, path)
        for key in ("name", "config", "stages"):
            if key not in raw:
                raise RecipeError(path, key, "missing")
        stages = _stages(raw, path)
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

    @classmethod
    def _own_catalog(cls, raw: dict, path: Path | None) -> TrainingRecipe:
        """An own-catalog recipe: a pretrained base, the user's catalog, WoHG stages 1-3."""
        for key in raw:
            if key in NOT_OWN:
                raise RecipeError(path, key, f"not part of an own-catalog recipe: {NOT_OWN[key]}")
            if key not in OWN_FIELDS:
                raise RecipeError(path, key, f"unknown field (an own-catalog recipe has {', '.join(OWN_FIELDS)})")
        if not isinstance(raw.get("name"), str) or not raw["name"].strip():
            raise RecipeError(path, "name", "missing: the run's name")
        if not raw.get("base"):
            raise RecipeError(path, "base", "not set: the model directory `armor-ab model init` made from your "
                                            "InternVL checkpoint (armor-ab train --base DIR)")
        base = _path(raw["base"], path)
        if not (base / "config.json").is_file():
            raise RecipeError(path, "base", f"{base}: not a model directory (no config.json); make one with "
                                            "`armor-ab model init --base CHECKPOINT --vqgan DIR --out DIR`")
        db, file = raw.get("catalog_db"), raw.get("catalog_file")
        if bool(db) == bool(file):
            raise RecipeError(path, "catalog_db" if not file else "catalog_file",
                              "name exactly one catalog: catalog_db (a database `armor-ab catalog import` filled; "
                              "--catalog-db FILE) or catalog_file (a CSV, JSON lines or Parquet file; "
                              "--catalog-file FILE)")
        catalog_db = _path(db, path) if db else None
        catalog_file = _path(file, path) if file else None
        images = _path(raw["catalog_images"], path) if raw.get("catalog_images") else None
        for key, value, kind in (("catalog_db", catalog_db, "file"), ("catalog_file", catalog_file, "file"),
                                 ("catalog_images", images, "dir")):
            if value is not None and not (value.is_file() if kind == "file" else value.is_dir()):
                raise RecipeError(path, key, f"{value}: no such {'file' if kind == 'file' else 'directory'}")
        if images is not None and catalog_db is not None:
            raise RecipeError(path, "catalog_images", "only with catalog_file: an imported catalog's photos are "
                                                      "in the database's image store")
        if "stages" not in raw:
            raise RecipeError(path, "stages", "missing: WoHG stages 1, 2, 3")
        stages = tuple(s for s in _stages(raw, path) if s.stage != 0)  # the base is stage 0's result
        if [s.stage for s in stages] != [1, 2, 3]:
            raise RecipeError(path, "stages", "an own-catalog recipe runs WoHG stages 1, 2, 3, in that order "
                                              "(stage 0 is the pretrained base)")
        for i, stage in enumerate(raw["stages"]):
            if stage.get("stage") != 0 and stage.get("wohg") not in (1, 2, 3):
                raise RecipeError(path, f"stages[{i}].wohg", f"{stage.get('wohg')!r}: must be 1, 2 or 3 (the "
                                                             "paper's table; 0 would train the pretrained base)")
        try:
            catalog_data = CatalogDataConfig.from_dict(raw.get("catalog_data"), raw.get("phrasings"))
        except FieldError as exc:
            raise RecipeError(path, exc.field, exc.message) from None
        try:
            eval_config = EvalConfig.from_dict(raw.get("eval"))
        except TypeError as exc:
            raise RecipeError(path, "eval", str(exc)) from None
        steps = sum(s.steps for s in stages)
        return cls(
            name=raw["name"],
            config=None,
            seed=_int(raw, "seed", 0, path),
            threads=_int(raw, "threads", 2, path),
            catalog=None,
            export=_path(raw["export"], path) if raw.get("export") else None,
            data=DataConfig(),
            classifier=ClassifierConfig(),
            vq=VQTrainConfig(),
            stages=stages,
            one_stage=StageConfig(stage="one-stage", name="one-stage", wohg=0, steps=steps),  # not run
            eval=eval_config,
            source=raw,
            path=path,
            base=base,
            catalog_db=catalog_db,
            catalog_file=catalog_file,
            catalog_images=images,
            catalog_data=catalog_data,
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
        if self.own_catalog:
            return {
                "name": self.name,
                "base": str(self.base),
                "catalog_db": str(self.catalog_db) if self.catalog_db else None,
                "catalog_file": str(self.catalog_file) if self.catalog_file else None,
                "catalog_images": str(self.catalog_images) if self.catalog_images else None,
                "seed": self.seed,
                "threads": self.threads,
                "catalog_data": self.catalog_data.to_json() if self.catalog_data else None,
                "stages": [asdict(s) for s in self.stages],
                "skipped": {"vq": "the base's VQGAN is frozen", "0": "the pretrained base is stage 0's result"},
                "eval": asdict(self.eval),
            }
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


def _stages(raw: dict, path: Path | None) -> tuple[StageConfig, ...]:
    """The ``stages`` list, each entry checked by ``StageConfig.from_dict``; an error names the entry."""
    if not isinstance(raw["stages"], list) or not raw["stages"]:
        raise RecipeError(path, "stages", "must be a list of stages")
    stages = []
    for i, entry in enumerate(raw["stages"]):
        if not isinstance(entry, dict):
            raise RecipeError(path, f"stages[{i}]", "must be a mapping of stage settings")
        try:
            stages.append(StageConfig.from_dict(entry))
        except (TypeError, ValueError) as exc:
            raise RecipeError(path, f"stages[{i}]", str(exc)) from None
    return tuple(stages)


def _int(raw: dict, key: str, default: int, path: Path | None) -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise RecipeError(path, key, f"{value!r}: must be a whole number")
    return value


def _path(value: str | Path, recipe_file: Path | None) -> Path:
    """A path written in the recipe: absolute as is, else relative to the recipe file's directory."""
    path = Path(value)
    if path.is_absolute() or recipe_file is None:
        return path
    return (Path(recipe_file).parent / path).resolve()
