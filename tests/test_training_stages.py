"""The WoHG trainer on armor-tiny: what each stage trains and freezes, the loss, resuming, the CLI smoke run."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from armor_ab.assets import DEMO_CATALOG, training_recipe
from armor_ab.catalog import load_catalog
from armor_ab.cli import app
from armor_ab.model import ArmorForInterleavedGeneration, ByteTokenizer, get_config
from armor_ab.training.batches import PictureStore, TaskSampler, answer_picture_keys, collate
from armor_ab.training.data import DataConfig, build_datasets
from armor_ab.training.trainer import StageTrainer, compute_losses, make_optimizer
from armor_ab.training.training_recipe import StageConfig, TrainingRecipe

# The paper's table (ARMOR-notes.md): trained in each stage; everything else frozen. Stage 0 (not in the paper)
# is the base model's own training.
PAPER_TABLE = {
    1: {"new_rows", "text_head"},
    2: {"new_rows", "adapter", "visual_head"},
    3: {"new_rows", "adapter", "visual_head", "text_head"},
}
ALPHA_BETA = {0: (1.0, 0.0), 1: (1.0, 0.0), 2: (0.0, 1.0), 3: (1.0, 1.0)}


@pytest.fixture(scope="module")
def setup():
    products = load_catalog(DEMO_CATALOG)
    cfg, tok = get_config("armor-tiny"), ByteTokenizer()
    sets = build_datasets(products, DataConfig(ti2t_train_variants=2))
    store = PictureStore(products, cfg)
    keys = answer_picture_keys(sets["train"])
    # Stand-in codes (a VQ is not needed to test freezing): a different code pattern per product.
    for n, key in enumerate(sorted(set(keys))):
        store.codes[key] = [(n * 7 + i) % cfg.num_image_codes for i in range(cfg.codes_per_image)]
    return cfg, tok, sets, store


def _model(cfg) -> ArmorForInterleavedGeneration:
    torch.manual_seed(0)
    return ArmorForInterleavedGeneration(cfg)


def _groups_of(model: ArmorForInterleavedGeneration) -> dict[str, list[torch.Tensor]]:
    groups = model.parameter_groups()
    groups.pop("vqgan")  # trained on its own, never by the LM loss
    return groups


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_each_stage_trains_its_groups_and_nothing_else(setup, stage: int) -> None:
    cfg, tok, sets, store = setup
    model = _model(cfg)
    stage_cfg = StageConfig(
        stage=stage, name="t", wohg=stage, alpha=ALPHA_BETA[stage][0], beta=ALPHA_BETA[stage][1]
    )
    model.set_wohg_stage(stage)
    trained = PAPER_TABLE.get(stage, {"base", "new_rows", "text_head"})  # stage 0 with beta = 0
    for name, params in model.parameter_groups().items():
        expected = name in (
            PAPER_TABLE.get(stage) or {"base", "new_rows", "text_head", "adapter", "visual_head"}
        )
        assert all(p.requires_grad == expected for p in params), (stage, name)
    # Original embedding rows and decoder layers: frozen in every WoHG stage.
    if stage > 0:
        assert not model.model.language_model.embed_tokens.weight.requires_grad
        assert not any(p.requires_grad for p in model.model.language_model.layers.parameters())
        assert not any(p.requires_grad for p in model.model.vision_tower.parameters())

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = make_optimizer(model, stage_cfg)
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {
        id(p) for p in model.parameters() if p.requires_grad
    }
    sampler = TaskSampler(sets["train"], None, seed=1)
    model.train()
    for step in range(3):
        batch = collate(sampler.batch(step, 8), tok, cfg, store)
        loss, _, _ = compute_losses(model, batch, *ALPHA_BETA[stage])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    after = dict(model.named_parameters())
    names = {id(p): n for n, p in model.named_parameters()}
    for group, params in _groups_of(model).items():
        changed = [not torch.equal(before[names[id(p)]], after[names[id(p)]]) for p in params]
        if group in trained:
            assert any(changed), f"stage {stage}: {group} should learn"
        elif stage > 0 or group not in ("adapter", "visual_head"):
            assert not any(changed), f"stage {stage}: {group} must stay frozen"
    for n, p in model.vqgan.named_parameters():
        assert torch.equal(before[f"vqgan.{n}"], p)
    # The text head includes the original text rows of lm_head (the notes' table): stage 1 moves them.
    if stage in (1, 3):
        assert not torch.equal(before["lm_head.weight"], model.lm_head.weight)


def test_compute_losses_is_the_model_forward(setup) -> None:
    cfg, tok, sets, store = setup
    model = _model(cfg).eval()
    batch = collate(TaskSampler(sets["train"], None, seed=2).batch(0, 8), tok, cfg, store)
    with torch.no_grad():
        ref = model(batch.input_ids, batch.attention_mask, batch.pixel_values, batch.labels)
        loss, text, image = compute_losses(model, batch, 1.0, 1.0)
        assert torch.allclose(loss, ref.loss) and torch.allclose(text, ref.text_loss)
        assert torch.allclose(image, ref.image_loss)
        only_text, _, unmeasured = compute_losses(model, batch, 1.0, 0.0)
        assert torch.allclose(only_text, ref.text_loss) and torch.isnan(unmeasured)
        only_image, unmeasured, _ = compute_losses(model, batch, 0.0, 1.0)
        assert torch.allclose(only_image, ref.image_loss) and torch.isnan(unmeasured)


class _Interrupt(Exception):
    pass


def test_resume_continues_exactly_where_the_checkpoint_was(setup, tmp_path: Path) -> None:
    cfg, tok, sets, store = setup
    stage = StageConfig(stage=3, name="t", wohg=3, steps=4, batch_size=4, checkpoint_every=2, log_every=1)
    sampler = TaskSampler(sets["train"], None, seed=4)

    def make(out: Path, fail_at: int | None = None) -> StageTrainer:
        calls = {"n": 0}

        def collate_fn(samples):
            calls["n"] += 1
            if fail_at is not None and calls["n"] > fail_at:
                raise _Interrupt  # the machine goes away mid-stage
            return collate(samples, tok, cfg, store)

        return StageTrainer(_model(cfg), tok, stage, sampler, collate_fn, out, progress=False)

    straight = make(tmp_path / "a").run()
    with pytest.raises(_Interrupt):
        make(tmp_path / "b", fail_at=3).run()
    assert (tmp_path / "b" / "checkpoint.pt").exists()
    resumed = make(tmp_path / "b").run(resume=True)
    assert straight["frozen_unchanged"] and resumed["frozen_unchanged"]
    a = ArmorForInterleavedGeneration.from_pretrained(tmp_path / "a" / "model")
    b = ArmorForInterleavedGeneration.from_pretrained(tmp_path / "b" / "model")
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb), name
    log = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert not (tmp_path / "b" / "checkpoint.pt").exists()  # the finished stage keeps only its model


def _tiny_recipe(tmp_path: Path) -> Path:
    raw = yaml.safe_load((training_recipe("armor-demo")).read_text())
    raw["config"] = "armor-tiny"
    raw["catalog"] = str(DEMO_CATALOG)  # the shipped recipe's ../../catalog is relative to its own directory
    raw["export"] = str(tmp_path / "export")
    raw["data"]["ti2t_train_variants"] = 2
    raw["classifier"] = {"steps": 3, "pool_per_category": 3, "eval_per_category": 2}
    raw["vq"] = {"steps": 4, "ae_steps": 2, "batch_size": 4, "redraws_per_product": 1, "kmeans_iters": 1}
    for stage in raw["stages"]:
        stage.update(steps=3, batch_size=4, log_every=1, val_every=3, val_batches=1, checkpoint_every=2)
    raw["one_stage"].update(batch_size=4)
    raw["eval"] = {"per_task": 2, "batch_size": 8, "max_new_tokens": 6}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_cli_smoke_runs_every_stage_and_exports(tmp_path: Path) -> None:
    recipe = _tiny_recipe(tmp_path)
    out = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--recipe", str(recipe), "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert set(report["stages"]) == {"0", "1", "2", "3"}
    for key, summary in report["stages"].items():
        assert summary["frozen_unchanged"], key
        assert (out / f"stage{key}" / "log.jsonl").exists()
    assert report["stages"]["2"]["final"]["text_loss"] is None  # alpha = 0: not measured
    assert report["stages"]["1"]["final"]["image_loss"] is None  # beta = 0
    assert report["data"]["data_sha256"] and report["versions"]["torch"]
    shipped = tmp_path / "export"
    for name in (
        "config.json",
        "model.safetensors",
        "armor_tokenizer.json",
        "classifier.safetensors",
        "training.json",
    ):
        assert (shipped / name).exists(), name
    record = json.loads((shipped / "training.json").read_text())
    assert (
        record["recipe_sha256"] == TrainingRecipe.load(recipe).sha256() and "eval" in record and "base_eval" in record
    )

    # One stage alone, then the comparison run; both land in the shipped training.json.
    result = runner.invoke(app, ["train", "--recipe", str(recipe), "--out", str(out), "--stage", "one-stage"])
    assert result.exit_code == 0, result.output
    assert json.loads((shipped / "training.json").read_text())["one_stage"]["stage"]["trainable_groups"]

    result = runner.invoke(app, ["eval", "--model", str(shipped), "--json", "--per-task", "2"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["figures"]["n"] == 8
    assert set(figures["acceptance"]) >= {"modality_accuracy", "spec_accuracy", "ti2t_category_accuracy"}
    assert figures["one_stage"]["figures"] is not None
    result = runner.invoke(app, ["eval", "--model", str(shipped), "--per-task", "1"])
    assert result.exit_code == 0 and "modality" in result.output


def test_unknown_stage_and_bad_recipe_fail_cleanly(tmp_path: Path) -> None:
    recipe = _tiny_recipe(tmp_path)
    runner = CliRunner()
    result = runner.invoke(
        app, ["train", "--recipe", str(recipe), "--out", str(tmp_path / "r"), "--stage", "7"]
    )
    assert result.exit_code == 2 and "unknown stage" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\n")
    result = runner.invoke(app, ["train", "--recipe", str(bad)])
    assert result.exit_code == 2 and "--recipe" in result.output


def test_recipe_one_stage_has_the_same_total_steps() -> None:
    recipe = TrainingRecipe.load(training_recipe("armor-demo"))
    assert [s.wohg for s in recipe.stages] == [0, 1, 2, 3]
    assert [(s.alpha, s.beta) for s in recipe.stages] == [ALPHA_BETA[i] for i in range(4)]
    assert recipe.one_stage.steps == sum(s.steps for s in recipe.stages[1:])
    assert recipe.stages[3].hq_only and set(recipe.stages[2].tasks) == {"t2i", "t2ti"}
    assert recipe.one_stage.wohg == 0  # everything trainable at once
    small = recipe.scaled(0.01)
    assert all(s.steps >= 2 for s in small.stages) and replace(small, name="x").name == "x"


def test_base_model_refusal_after_a_text_is_a_decision(setup) -> None:
    """Stage 0's answer to a text + picture request is "<specs> I cannot draw pictures.": the refusal's first
    token is where that model chooses "picture", and the <eos> of a plain text answer its "no picture"."""
    from armor_ab.training.data import REFUSAL
    from armor_ab.training.trainer import decision_positions

    cfg, tok, sets, store = setup
    t2ti = next(s for s in sets["base"] if s["segments"][-1]["text"].endswith(" " + REFUSAL))
    t2t = next(s for s in sets["base"] if s["task"] == "t2t" and REFUSAL not in s["segments"][-1]["text"])
    batch = collate([t2ti, t2t], tok, cfg, store)
    decision = decision_positions(batch.labels, cfg)
    target = batch.labels[:, 1:]
    answer = t2ti["segments"][-1]["text"]
    first = int((target[0] != -100).nonzero()[0])
    refusal_at = first + len(tok.encode(answer[: answer.index(" " + REFUSAL)]))
    assert decision[0].nonzero().flatten().tolist() == [first, refusal_at, first + len(tok.encode(answer))]
    assert target[0, refusal_at] == tok.encode(" ")[0] and target[0, refusal_at + 1] == tok.encode("I")[0]
    assert decision[1].sum() == 2  # answer start and <eos>: no refusal in a text answer


def test_switch_weight_scales_only_the_decision_positions(setup) -> None:
    """switch_weight multiplies the text loss at the modality decisions (answer start, <imgbos>, <eos>) and
    nowhere else; 1.0 is exactly the plain loss."""
    from armor_ab.training.trainer import decision_positions, weighted_text_loss

    cfg, tok, sets, store = setup
    model = _model(cfg).eval()
    by_task = {}
    for s in sets["train"]:
        by_task.setdefault(s["task"], s)
    samples = [by_task[t] for t in ("t2t", "t2ti", "t2i", "ti2t")]
    batch = collate(samples, tok, cfg, store)
    decision = decision_positions(batch.labels, cfg)
    target = batch.labels[:, 1:]
    # Where the decisions are: per row, the answer's first target, every <imgbos>, the final <eos>.
    for row, sample in enumerate(samples):
        picked = target[row][decision[row]].tolist()
        assert picked[-1] == tok.eos_id
        first = int((target[row] != -100).nonzero()[0])
        assert decision[row, first]
        if sample["task"] == "t2ti":
            assert picked == [picked[0], cfg.imgbos_id, tok.eos_id]
        elif sample["task"] == "t2i":
            assert picked == [cfg.imgbos_id, tok.eos_id]
        else:
            assert len(picked) == 2 and picked[0] != cfg.imgbos_id
    with torch.no_grad():
        loss, text, image = compute_losses(model, batch, 1.0, 1.0)
        ref = model(batch.input_ids, batch.attention_mask, batch.pixel_values, batch.labels)
        assert torch.equal(text, compute_losses(model, batch, 1.0, 1.0, 1.0)[1])
        assert torch.allclose(text, ref.text_loss)
        logits = model.text_logits(ref.hidden_states)
        assert torch.allclose(weighted_text_loss(model, logits, batch.labels, 1.0), ref.text_loss, atol=1e-6)
        # Per-position terms: the weighted loss moves by exactly (w - 1) * (the decision terms) / n_text.
        vocab = cfg.text_vocab_size
        is_text = (target >= 0) & ((target < vocab) | (target == cfg.imgbos_id))
        tt = torch.where(target == cfg.imgbos_id, vocab, target)
        ce = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]),
            torch.where(is_text, tt, -100).reshape(-1),
            ignore_index=-100,
            reduction="none",
        ).view_as(target)
        n = is_text.sum()
        at_decisions = (ce * (decision & is_text)).sum()
        _, heavy, heavy_image = compute_losses(model, batch, 1.0, 1.0, 8.0)
        assert torch.allclose(heavy, text + 7.0 * at_decisions / n, atol=1e-5)
        assert torch.equal(heavy_image, image)  # the image loss is untouched
        # Changing a logit off the decision positions moves both losses alike.
        off = (~decision & is_text).nonzero()[0]
        bumped = logits.clone()
        bumped[off[0], off[1], 0] += 3.0
        d1 = weighted_text_loss(model, bumped, batch.labels, 8.0) - weighted_text_loss(
            model, logits, batch.labels, 8.0
        )
        d0 = weighted_text_loss(model, bumped, batch.labels, 1.0) - weighted_text_loss(
            model, logits, batch.labels, 1.0
        )
        assert torch.allclose(d1, d0, rtol=1e-3, atol=1e-6)
    with pytest.raises(TypeError):
        StageConfig(stage=1, name="t", wohg=1, switch_weights=2.0)  # a typo is an error, not a default
    assert StageConfig.from_dict({"stage": 1, "name": "t", "wohg": 1, "switch_weight": 6}).switch_weight == 6


def test_recipe_paths_are_relative_to_the_recipe_file_and_not_hashed(tmp_path: Path) -> None:
    from armor_ab.assets import DEMO_MODEL

    shipped = TrainingRecipe.load(training_recipe("armor-demo"))
    assert shipped.catalog == DEMO_CATALOG.resolve()  # input: ../../catalog from recipes/training/
    assert shipped.export == DEMO_MODEL.resolve()  # output: the shipped model's directory, by default
    raw = yaml.safe_load(training_recipe("armor-demo").read_text())
    (tmp_path / "recipes").mkdir()
    moved = tmp_path / "recipes" / "moved.yaml"
    moved.write_text(yaml.safe_dump({**raw, "catalog": "../catalog", "export": "../out"}))
    recipe = TrainingRecipe.load(moved)
    assert recipe.catalog == (tmp_path / "catalog").resolve() and recipe.export == (tmp_path / "out").resolve()
    assert recipe.sha256() == shipped.sha256()  # where the files are is not what is trained
    moved.write_text(yaml.safe_dump({**raw, "seed": raw["seed"] + 1}))
    assert TrainingRecipe.load(moved).sha256() != shipped.sha256()
