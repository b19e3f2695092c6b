"""The shipped demo model (armor_ab/assets/models/armor-demo) against issue 6's acceptance bar, measured here.

`armor-ab eval` regenerates every held-out answer with the committed weights (greedy, so deterministic) and
judges the pictures with the committed classifier; the test also ties the weights to the recipe that made them.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from armor_ab.assets import DEMO_CATALOG, DEMO_MODEL, training_recipe
from armor_ab.catalog import load_catalog
from armor_ab.cli import app
from armor_ab.training.data import build_datasets, data_hash
from armor_ab.training.training_recipe import TrainingRecipe

MODEL = DEMO_MODEL
RECIPE = training_recipe("armor-demo")


@pytest.fixture(scope="module")
def record() -> dict:
    return json.loads((MODEL / "training.json").read_text())


def test_shipped_model_was_made_by_the_shipped_recipe(record) -> None:
    recipe = TrainingRecipe.load(RECIPE)
    assert record["recipe_sha256"] == recipe.sha256()
    sets = build_datasets(load_catalog(DEMO_CATALOG), recipe.data)
    assert record["data"]["data_sha256"] == data_hash(sets)
    assert all(stage["frozen_unchanged"] for stage in record["stages"].values())
    size = sum(f.stat().st_size for f in MODEL.iterdir() if f.is_file())
    assert size <= 20 * 1024 * 1024  # weights, tokenizer, judge and VQ decoder together


def test_shipped_model_meets_the_acceptance_bar_on_held_out_prompts(record) -> None:
    result = CliRunner().invoke(app, ["eval", "--model", str(MODEL), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    figures = out["figures"]
    assert figures["n"] == 4 * 42  # every held-out prompt of every task type
    failing = {key: row for key, row in out["acceptance"].items() if row["pass"] is False}
    assert not failing, failing
    for key in ("modality_accuracy", "image_category_accuracy", "spec_accuracy", "ti2t_category_accuracy"):
        assert out["acceptance"][key]["pass"] is True, key
    assert out["acceptance"]["ti2t_drop_points"]["pass"] is True  # against the base model before WoHG
    # The one-stage alternative, measured on the same run from the same base model, is printed beside it.
    assert out["one_stage"]["figures"]["n"] == figures["n"]
    assert out["base"]["figures"]["ti2t_category_accuracy"] == record["base_eval"]["ti2t_category_accuracy"]
    # The figures docs/training.md quotes are the ones this run reproduces.
    for key in ("modality_accuracy", "image_category_accuracy", "spec_accuracy", "ti2t_category_accuracy"):
        assert figures[key] == pytest.approx(record["eval"][key], abs=0.025), key
