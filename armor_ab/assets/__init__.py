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
    """A shipped training recipe by name (``armor-demo``)."""
    return TRAINING_RECIPES / f"{name}.yaml"
