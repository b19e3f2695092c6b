"""`armor-ab generate`: run ARMOR on one prompt (optionally with an input image) and write the content.

    armor-ab generate --model armor-tiny --prompt "a red running shoe" --out out/shoe
    armor-ab generate --model runs/armor-demo --prompt "What is this?" --image shoe.png --out out/qa

``--model`` is a named configuration (random weights, a warning says so) or a model directory: one written
by ``armor_ab.model.save_model`` (byte tokenizer) or by ``armor-ab model init`` from your own InternVL
checkpoint (its Hugging Face tokenizer and chat template). The output directory gets content.json and one
<sha256>.png per image.

``--backend onnxruntime|tensorrt --engine DIR`` runs the same generation loop over an engine built by
``armor-ab engine build`` (docs/engine.md); ``--model`` is then optional and, if given, must match the
engine's config. A bad engine (missing/corrupt file, config or shape mismatch) fails before generating.
``--backend torch-cuda`` runs ``--model`` itself with a static KV cache and a compiled decode step (CUDA
graphs, bfloat16 on a GPU; compiled float32 on the CPU), no engine.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ._common import fail


def generate(
    prompt: Annotated[str, typer.Option("--prompt", help="The user prompt")],
    out: Annotated[Path, typer.Option("--out", help="Output directory for content.json and the PNGs")],
    image: Annotated[
        Path | None, typer.Option("--image", help="Input image for the understanding path")
    ] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", help="Text tokens (images not counted)")
    ] = 128,
    max_images: Annotated[int, typer.Option("--max-images")] = 1,
    guidance: Annotated[float, typer.Option("--guidance", help="CFG scale on image codes (1 = none)")] = 5.0,
    temperature: Annotated[float, typer.Option("--temperature", help="Text temperature (0 = greedy)")] = 0.8,
    top_p: Annotated[float, typer.Option("--top-p")] = 0.95,
    top_k: Annotated[int, typer.Option("--top-k")] = 0,
    image_temperature: Annotated[float, typer.Option("--image-temperature")] = 1.0,
    threads: Annotated[
        int | None, typer.Option("--threads", help="torch CPU threads (and ONNX Runtime intra-op threads)")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", help="Named config (armor-tiny, armor-demo) or model directory"),
    ] = None,
    backend: Annotated[
        str,
        typer.Option(
            "--backend", help="torch | torch-cuda | onnxruntime | tensorrt (the last two need --engine)"
        ),
    ] = "torch",
    engine: Annotated[
        Path | None, typer.Option("--engine", help="Engine directory, e.g. engine/build/armor-tiny/onnx")
    ] = None,
) -> None:
    """Generate interleaved text and images with an ARMOR model."""
    # Heavy imports here, so that the rest of the CLI starts without torch.
    import torch
    from PIL import Image, UnidentifiedImageError
    from tqdm import tqdm

    from armor_ab.model import InterleavedGenerator, SamplingConfig, load_model

    if threads:
        torch.set_num_threads(threads)
    input_image = None
    if image is not None:
        try:
            input_image = Image.open(image).convert("RGB")
        except (OSError, UnidentifiedImageError) as exc:
            fail(f"--image {image}: cannot read the image ({exc})")
    if backend in ("torch", "torch-cuda"):
        if model is None:
            fail(f"--model is required with --backend {backend}")
        if engine is not None:
            fail(f"--engine runs with --backend onnxruntime or tensorrt, not {backend}")
        try:
            loaded = load_model(model)
        except (ValueError, OSError) as exc:
            fail(f"--model {model}: {exc}")
        if loaded.random_weights:
            typer.echo(
                f"warning: {model} is a named configuration: the weights are RANDOM, the output is noise",
                err=True,
            )
        config = loaded.model.config
        if backend == "torch-cuda":
            from armor_ab.engine.loader import open_torch_cuda_generator

            generator = open_torch_cuda_generator(loaded.model, loaded.tokenizer, loaded.name)
        else:
            generator = InterleavedGenerator.from_model(loaded.model, loaded.tokenizer, loaded.name)
    else:
        generator = _engine_generator(backend, engine, model, threads)
        config = generator.backend.config

    settings = SamplingConfig(
        max_new_tokens=max_new_tokens,
        max_images=max_images,
        guidance_scale=guidance,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        image_temperature=image_temperature,
        seed=seed,
    )
    total = max_new_tokens + max_images * (config.codes_per_image + 1)  # upper bound on steps
    with tqdm(total=total, desc="generating", unit="tok", file=sys.stderr, leave=False) as bar:

        def on_segment(_row: int, segment) -> None:
            bar.set_postfix_str(f"{segment.type} segment done")

        try:
            result = generator.generate(
                [prompt],
                [input_image] if input_image is not None else None,
                settings,
                on_segment=on_segment,
                on_step=lambda n: bar.update(n - bar.n),
            )
        except ValueError as exc:
            fail(str(exc))
    content = result.contents[0]
    path = content.save(out)
    typer.echo(f"wrote {path} ({len(content.segments)} segments, {len(content.images)} images)")
    for img in content.images:
        typer.echo(f"  {out / img.filename}")


def _engine_generator(backend: str, engine: Path | None, model: str | None, threads: int | None):
    """An ``InterleavedGenerator`` over an engine; every load-time check fails here, before generating."""
    from armor_ab.engine.errors import BackendUnavailable, EngineError
    from armor_ab.engine.loader import RUNTIME_BACKENDS, open_engine_generator

    if backend not in RUNTIME_BACKENDS:
        fail(f"--backend {backend!r}: expected one of {', '.join(RUNTIME_BACKENDS)}")
    if engine is None:
        fail(f"--backend {backend} needs --engine DIR (build one with `armor-ab engine build`)")
    expected = None
    if model is not None:
        from armor_ab.model import get_config
        from armor_ab.model.configuration import ArmorConfig

        try:
            expected = ArmorConfig.from_pretrained(model) if Path(model).is_dir() else get_config(model)
        except (KeyError, OSError, ValueError) as exc:
            fail(f"--model {model}: {exc}")
    try:
        generator = open_engine_generator(engine, backend, expected, threads=threads)
    except EngineError as exc:
        fail(f"--engine: {exc}")
    except BackendUnavailable as exc:
        fail(f"--backend {backend}: CUDA/TensorRT is missing: {exc}")
    info = generator.backend.manifest.model
    if info.get("random_weights"):
        typer.echo(
            f"warning: engine {engine} was built from {info.get('source')}: the weights are RANDOM, "
            "the output is noise",
            err=True,
        )
    return generator


def register(app: typer.Typer) -> None:
    """Add this module's commands to the CLI."""
    app.command("generate")(generate)
