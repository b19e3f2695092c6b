"""`armor-ab engine build|verify`: build ARMOR engines (ONNX, TensorRT) from a recipe, and check one.

    armor-ab engine build --recipe armor_ab/assets/recipes/build/armor-tiny.yaml --backend onnx
    armor-ab engine build --recipe armor-demo --backend tensorrt                   # a shipped recipe by name; CUDA only
    armor-ab engine build --recipe own-model --model armor-mine --out engines      # -> engines/armor-mine/onnx
    armor-ab engine verify engine/build/armor-tiny/onnx

A build writes ``engine/build/NAME/BACKEND/`` in the working directory (``--out`` moves it) (manifest.json + one
file per graph + the model's tokenizer files); ``own-model`` names NAME after the ``--model`` directory. See
docs/engine.md. Exit codes: 0 ok, 2 bad input (a recipe, a model the engine cannot export or that does not fit
the recipe's sizes) or a backend this machine cannot run (no CUDA / TensorRT), 1 a build that failed
(exporter error, parity over tolerance).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ._common import fail

engine_app = typer.Typer(help="Build and check ARMOR engines (ONNX Runtime, TensorRT).", no_args_is_help=True)

BUILD_BACKENDS = ("onnx", "tensorrt")


@engine_app.command("build")
def build(
    recipe: Annotated[
        str,
        typer.Option(
            "--recipe",
            help="A recipe file, or a shipped recipe's name: armor-tiny, armor-demo, own-model (your own model "
            "directory, given with --model; the engine is named after it)",
        ),
    ],
    backend: Annotated[str, typer.Option("--backend", help="onnx | tensorrt")] = "onnx",
    model: Annotated[
        str | None, typer.Option("--model", help="Model directory or named config (default: the recipe's)")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Build root (default engine/build); writes OUT/NAME/BACKEND")
    ] = None,
    threads: Annotated[int, typer.Option("--threads", help="torch CPU threads while exporting")] = 2,
    parity: Annotated[bool, typer.Option("--parity/--no-parity", help="Measure parity vs PyTorch")] = True,
    log_level: Annotated[str, typer.Option("--log-level")] = "INFO",
) -> None:
    """Export every graph, check it, measure parity against PyTorch and write the manifest."""
    if backend not in BUILD_BACKENDS:
        fail(f"--backend {backend!r}: expected one of {', '.join(BUILD_BACKENDS)}")
    from armor_ab.engine.build_recipe import RecipeError, load_recipe, resolve_recipe_path

    try:
        spec = load_recipe(resolve_recipe_path(recipe))
        if model is None:
            spec.model_source()  # a recipe without a model (own-model) needs --model
    except RecipeError as exc:
        fail(str(exc))
    if backend == "tensorrt":
        from armor_ab.engine.backends.tensorrt import tensorrt_missing_reason

        reason = tensorrt_missing_reason()
        if reason:
            fail(f"--backend tensorrt: CUDA/TensorRT is missing: {reason}", code=2)

    import logging

    import torch
    from tqdm.contrib.logging import logging_redirect_tqdm

    from armor_ab.engine.build import BuildError, build_onnx, build_tensorrt
    from armor_ab.engine.errors import BackendUnavailable, EngineError, UnsupportedModel
    from armor_ab.logs import setup_logging

    torch.set_num_threads(threads)
    setup_logging(log_level.upper())
    builder = build_onnx if backend == "onnx" else build_tensorrt
    try:
        with logging_redirect_tqdm(loggers=[logging.getLogger("armor_ab")]):
            directory = builder(spec, model=model, out_root=out, progress=True, check_parity=parity)
    except BackendUnavailable as exc:
        fail(f"--backend tensorrt: CUDA/TensorRT is missing: {exc}", code=2)
    except UnsupportedModel as exc:
        fail(f"--model {model or spec.model_source()[0]}: {exc}")
    except BuildError as exc:
        fail(str(exc), code=2 if exc.bad_input else 1)
    except (ValueError, OSError) as exc:
        fail(f"--model {model or spec.model_source()[0]}: {exc}")
    except EngineError as exc:
        fail(str(exc), code=1)
    manifest = json.loads((directory / "manifest.json").read_text())
    _summary(directory, manifest)


@engine_app.command("verify")
def verify(
    engine_dir: Annotated[Path, typer.Argument(help="engine/build/NAME/BACKEND")],
    model: Annotated[
        str | None, typer.Option("--model", help="Also check the engine matches this model's config")
    ] = None,
) -> None:
    """Load an engine as a request would: manifest, config, SHA-256 of every file, graph I/O shapes."""
    from armor_ab.engine.errors import BackendUnavailable, EngineError
    from armor_ab.engine.loader import open_engine_backend
    from armor_ab.engine.manifest import read_manifest

    try:
        manifest = read_manifest(engine_dir)
        expected = _model_config(model) if model else None
        backend = open_engine_backend(
            engine_dir, "onnxruntime" if manifest.backend == "onnx" else "tensorrt", expected_config=expected
        )
    except EngineError as exc:
        fail(str(exc))
    except BackendUnavailable as exc:
        fail(f"CUDA/TensorRT is missing: {exc}")
    backend.close()
    _summary(engine_dir, json.loads((engine_dir / "manifest.json").read_text()), verified=True)


def _model_config(model: str):
    """The config of a model directory or named configuration, without loading weights."""
    from armor_ab.model import get_config
    from armor_ab.model.configuration import ArmorConfig

    path = Path(model)
    try:
        return ArmorConfig.from_pretrained(path) if path.is_dir() else get_config(model)
    except (KeyError, OSError, ValueError) as exc:
        fail(f"--model {model}: {exc}")



def _tolerance(tol: object) -> str:
    """The parity tolerance as written: one number (older manifests) or one per kind of output."""
    if isinstance(tol, dict):
        return ", ".join(f"{k} {v:g}" if isinstance(v, int | float) else f"{k} {v}" for k, v in tol.items())
    return str(tol)

def _summary(directory: Path, manifest: dict, verified: bool = False) -> None:
    parity = manifest.get("parity", {})
    diffs = parity.get("max_abs_diff", {})
    worst = max(diffs.values()) if diffs else None
    greedy = parity.get("greedy_generation", {})
    typer.echo(f"{'verified' if verified else 'built'} {directory}")
    typer.echo(
        f"  {manifest['name']} ({manifest['backend']}, {manifest['precision']}, opset {manifest['opset']}), "
        f"config {manifest['config_hash']}, {len(manifest['graphs'])} graphs: {', '.join(manifest['graphs'])}"
    )
    if worst is not None:
        typer.echo(
            f"  parity vs PyTorch: max |diff| {worst:.2e} (tolerance {_tolerance(parity.get('tolerance'))}), "
            f"greedy tokens identical: {greedy.get('identical_tokens')}, codes identical: {greedy.get('identical_codes')}"
        )
    if manifest["model"].get("random_weights"):
        typer.echo(
            f"  warning: {manifest['model']['source']} has RANDOM weights (no trained model directory)",
            err=True,
        )


def register(app: typer.Typer) -> None:
    """Add this module's commands to the CLI."""
    app.add_typer(engine_app, name="engine")
