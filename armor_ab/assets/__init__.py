"""Files that ship in the wheel: the demo catalog, the demo model, the demo experiment and the recipes.

Code finds them here, never relative to a source checkout, so ``pip install armor-ab`` has them too.
Build recipes (``recipes/build``) make engines; training recipes (``recipes/training``) make models.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

ASSETS = Path(str(files(__name__)))
DEMO_CATALOG = ASSETS / "catalog"
SHIPPED_MODELS = ASSETS / "models"
DEMO_MODEL = SHIPPED_MODELS / "armor-demo"
DEMO_EXPERIMENT = ASSETS / "experiments" / "catalog-interleaved.yaml"
BUILD_RECIPES = ASSETS / "recipes" / "build"
TRAINING_RECIPES = ASSETS / "recipes" / "training"


def build_recipe(name: str) -> Path:
    """A shipped build recipe by name (``armor-tiny``, ``armor-demo``, ``own-model`` for a model of your own)."""
    return BUILD_RECIPES / f"{name}.yaml"


def training_recipe(name: str) -> Path:
    """A shipped training recipe by name (``armor-demo``, ``own-catalog``, ``armor-1b``)."""
    return TRAINING_RECIPES / f"{name}.yaml"


def recipe_file(value: str | Path, folder: Path) -> Path:
    """``--recipe``: a recipe file's path, or the name of a shipped recipe in ``folder`` (``BUILD_RECIPES`` or
    ``TRAINING_RECIPES``). A path that exists, ends in .yaml/.yml or has a directory wins over a name;
    ``FileNotFoundError`` lists the shipped names when neither fits."""
    path = Path(value)
    if path.exists() or path.suffix in (".yaml", ".yml") or len(path.parts) != 1:
        return path
    shipped = folder / f"{path.name}.yaml"
    if shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
    raise FileNotFoundError(f"{value}: no such recipe file, and no shipped recipe of that name (shipped: {names})")
