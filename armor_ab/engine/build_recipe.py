"""Build recipes (``armor_ab/assets/recipes/build/NAME.yaml``): which model, and how to build its engines.

The shipped ones are ``armor_ab.assets.build_recipe(NAME)`` (``armor-tiny``, ``armor-demo``, ``own-model``);
``armor-ab engine build --recipe NAME`` takes a shipped recipe by its name, and any other YAML file with these
fields by its path (``resolve_recipe_path``). Fields (see ``armor_ab/assets/recipes/build/armor-demo.yaml``):

- ``name``: the engine's name; builds go to ``BUILD_ROOT/NAME/BACKEND`` (default ``engine/build`` in the
  working directory, ``armor_ab.config.DEFAULT_ENGINE_ROOT``). ``{model}`` in it is the model's name: the
  model directory's own name (``--model runs/armor-mine`` -> ``armor-mine``) or the named config
  (``BuildRecipe.for_model``); the shipped ``own-model`` recipe is ``name: "{model}"``.
- ``model``: a named config (random weights) or a model directory; ``model_dir``: a trained directory, used
  instead whenever it exists (has a config.json). Relative paths in a recipe (``model`` when it names a
  directory, ``model_dir``) are relative to the recipe file's own directory, never to the working directory
  or a checkout: the shipped armor-demo recipe says ``model_dir: ../../models/armor-demo``. A recipe without
  ``model`` (``own-model``) builds whatever ``--model`` names, and refuses to build without one.
- ``opset``: ONNX opset of the export; ``precision``: per backend, ``{onnx: fp32, tensorrt: fp16 | bf16}``.
- ``max_batch``: prompts per request (classifier-free guidance doubles the rows); ``max_seq_len``: KV positions
  of one request, prompt (chat template, input-image block) + text + images x (codes + 1). The build refuses a
  ``max_seq_len`` that cannot hold one input image, one text token and one generated image
  (``build.check_recipe_fits``); TensorRT engines refuse longer requests at run time.
- ``profiles``: TensorRT optimisation profile per dynamic axis (rows, tokens, cache, images) as
  ``[min, opt, max]``; missing axes default from ``max_batch`` and ``max_seq_len``.
- ``tolerance``: max |engine - PyTorch fp32| per precision (fp16/bf16 relative to max(1, max |reference|)).
- ``tensorrt_optimization_level``: the TensorRT builder's optimisation level (0-5).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

PRECISIONS = ("fp32", "fp16", "bf16")
AXES = ("rows", "tokens", "cache", "images")
MODEL_PLACEHOLDER = "{model}"  # in ``name``: the model's name (``for_model``)


class RecipeError(ValueError):
    """A recipe file that cannot be used (the message names the file and the field)."""


@dataclass
class BuildRecipe:
    name: str
    model: str | None = None  # None: the model comes from --model (``own-model``)
    model_dir: str | None = None
    opset: int = 18
    precision: dict[str, str] = field(default_factory=lambda: {"onnx": "fp32", "tensorrt": "fp16"})
    max_batch: int = 4
    max_seq_len: int = 512
    profiles: dict[str, list[int]] = field(default_factory=dict)
    tolerance: dict[str, float] = field(default_factory=lambda: {"fp32": 1e-4, "fp16": 2e-2, "bf16": 5e-2})
    tensorrt_optimization_level: int = 3
    path: str | None = None  # where it was read from (not a field of the file)

    def resolve(self, value: str) -> Path:
        """A path written in the recipe: absolute as is, else relative to the recipe file's directory (the
        working directory for a recipe built in code, without a file)."""
        path = Path(value)
        if path.is_absolute() or self.path is None:
            return path
        return (Path(self.path).parent / path).resolve()

    def model_source(self) -> tuple[str, bool]:
        """(name or directory to load, whether it is a model directory: trained weights, not a named config)."""
        if self.model is None:
            raise RecipeError(
                f"{self.path or self.name}: this recipe names no model: pass --model DIR (a model directory, "
                "e.g. one made by `armor-ab model init`)"
            )
        if self.model_dir:
            directory = self.resolve(self.model_dir)
            if (directory / "config.json").is_file():
                return str(directory), True
        if (self.resolve(self.model) / "config.json").is_file():
            return str(self.resolve(self.model)), True
        return self.model, False

    def for_model(self, source: str) -> BuildRecipe:
        """The recipe as used for the model ``source`` (a directory or a named config): ``{model}`` in its name
        becomes the model's name, the directory's own name for a directory (``runs/armor-mine/`` ->
        ``armor-mine``). A recipe without the placeholder is returned as it is."""
        if MODEL_PLACEHOLDER not in self.name:
            return self
        path = Path(source)
        label = path.resolve().name if path.is_dir() else str(source)
        name = self.name.replace(MODEL_PLACEHOLDER, label)
        if not label or any(sep in name for sep in ("/", "\\")) or name in (".", ".."):
            raise RecipeError(f"{self.path or self.name}: {source!r} gives no usable engine name ({name!r})")
        return replace(self, name=name)

    def profile(self, axis: str) -> list[int]:
        if axis in self.profiles:
            return list(self.profiles[axis])
        rows = 2 * self.max_batch
        defaults = {
            "rows": [1, 2, rows],
            "tokens": [1, 32, self.max_seq_len],
            "cache": [1, self.max_seq_len // 2, self.max_seq_len],
            "images": [1, 1, self.max_batch],
        }
        return defaults[axis]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["profiles"] = {axis: self.profile(axis) for axis in AXES}
        return d


def load_recipe(path: Path | str) -> BuildRecipe:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read the recipe ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of fields")
    known = set(BuildRecipe.__dataclass_fields__) - {"path"}
    unknown = set(data) - known
    if unknown:
        raise RecipeError(f"{path}: unknown field(s) {', '.join(sorted(unknown))}")
    if not data.get("name"):
        raise RecipeError(f"{path}: field 'name' is required")
    if "model" in data and not data["model"]:
        raise RecipeError(f"{path}: field 'model' is empty (leave it out to build whatever --model names)")
    try:
        recipe = BuildRecipe(**data, path=str(path))
    except TypeError as exc:
        raise RecipeError(f"{path}: {exc}") from exc
    for backend, precision in recipe.precision.items():
        if precision not in PRECISIONS:
            raise RecipeError(f"{path}: precision.{backend} = {precision!r}, expected one of {PRECISIONS}")
    for axis, prof in recipe.profiles.items():
        if axis not in AXES:
            raise RecipeError(f"{path}: profiles.{axis}: unknown axis (known: {', '.join(AXES)})")
        if len(prof) != 3 or not (1 <= prof[0] <= prof[1] <= prof[2]):
            raise RecipeError(f"{path}: profiles.{axis} must be [min, opt, max] with 1 <= min <= opt <= max")
    if recipe.max_batch < 1 or recipe.max_seq_len < 2:
        raise RecipeError(f"{path}: max_batch >= 1 and max_seq_len >= 2 are required")
    return recipe


def resolve_recipe_path(value: str | Path) -> Path:
    """``--recipe``: a recipe file's path, or the name of a shipped recipe (``armor-tiny``, ``armor-demo``,
    ``own-model``: ``armor_ab/assets/recipes/build/NAME.yaml``). A path that exists wins over a name."""
    from armor_ab.assets import BUILD_RECIPES, recipe_file

    try:
        return recipe_file(value, BUILD_RECIPES)
    except FileNotFoundError as exc:
        raise RecipeError(str(exc)) from None
