"""Build engines: export every graph to ONNX (dynamo exporter), check it, measure parity, write the manifest;
and build TensorRT engines from those ONNX files where CUDA is present.

    build_onnx(recipe)      -> engine/build/NAME/onnx/{manifest.json, <graph>.onnx, tokenizer file(s)}
    build_tensorrt(recipe)  -> engine/build/NAME/tensorrt/{manifest.json, <graph>.plan, tokenizer file(s)}

``engine/build`` is ``armor_ab.config.DEFAULT_ENGINE_ROOT``, relative to the working directory (``out_root``
moves it). NAME is the recipe's, ``{model}`` in it replaced by the model's name (``BuildRecipe.for_model``).
The tokenizer files are what the model's tokenizer saves: ``armor_tokenizer.json`` for the byte tokenizer
(armor-tiny, armor-demo), the Hugging Face files (``tokenizer.json``, ``tokenizer_config.json``,
``chat_template.jinja``) for a model made by ``armor-ab model init``; the manifest lists and hashes them all,
and the build's greedy parity runs with the tokenizer loaded back from the engine directory.

Before exporting anything a build checks the model (``graphs.check_exportable``: no sliding-window attention,
no length-dependent RoPE) and the recipe's sizes against it (``check_recipe_fits``).

Building is separate from loading (``loader.open_engine_backend``): a build writes files and a manifest that
describes them; a load verifies the manifest against the files before it runs anything.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from armor_ab.config import DEFAULT_ENGINE_ROOT
from armor_ab.model.loading import LoadedModel, load_model
from armor_ab.model.modeling import ArmorForInterleavedGeneration
from armor_ab.model.tokenizer import TextTokenizer

from .build_recipe import BuildRecipe
from .graphs import GRAPH_MODULES, GRAPH_NAMES, check_exportable, example_inputs, graph_specs
from .manifest import (
    EngineError,
    GraphEntry,
    Manifest,
    file_record,
    load_engine_tokenizer,
    sha256_file,
    tool_versions,
    verify_engine_dir,
)

log = logging.getLogger("armor_ab.engine")

KV_LAYOUT = {
    "layout": "(layers, 2, rows, kv_heads, cache, head_dim); dim 1: 0 = key, 1 = value",
    "inputs": "past_key_i / past_value_i = kv[i, 0 / 1, rows] (contiguous, bound by pointer), masked by past_valid",
    "outputs": "new_kv (layers, 2, rows, kv_heads, tokens, head_dim), written by the runtime to "
    "kv[:, :, rows, :, start:start+tokens]",
    "alignment": "cache padded so every kv[i, k|v, rows] starts at a multiple of 256 bytes; past_valid "
    "buffers per row range",
}


def kv_dtype_for(backend: str, precision: str) -> str:
    """The KV cache's I/O dtype: fp16 for fp16 TensorRT engines (their layers read fp16), else fp32."""
    return "float16" if backend == "tensorrt" and precision == "fp16" else "float32"


Progress = Callable[[str], None]  # called once per finished step with its name


class BuildError(RuntimeError):
    """A build that cannot produce a valid engine (parity over tolerance, exporter failure)."""

    bad_input = False  # True: the recipe does not fit the model (the CLI exits 2, as for other bad input)


class RecipeDoesNotFit(BuildError):
    """The recipe's sizes cannot serve the model (``check_recipe_fits``); raised before any export."""

    bad_input = True


def engine_dir(recipe: BuildRecipe, backend: str, root: Path | None = None) -> Path:
    return (root or DEFAULT_ENGINE_ROOT) / recipe.name / backend


def load_recipe_model(recipe: BuildRecipe, model: str | None = None) -> LoadedModel:
    """The model a recipe names (its trained directory if present), or ``model`` if given, in fp32 eval mode."""
    source = model if model is not None else recipe.model_source()[0]
    loaded = load_model(source, dtype=torch.float32)
    loaded.model.eval()
    return loaded


def check_recipe_fits(recipe: BuildRecipe, loaded: LoadedModel) -> None:
    """The recipe's ``max_seq_len`` (and its TensorRT cache profile) holds the smallest image request (an
    empty prompt in the chat template with an input image, one text token, one generated image) and the
    build's own parity request; ``RecipeDoesNotFit`` before anything is exported otherwise (a TensorRT engine
    could serve neither)."""
    from .parity import PROMPTS, greedy_settings

    config = loaded.model.config
    image = config.codes_per_image + 1  # codes + <imgend>
    empty = len(loaded.tokenizer.chat_prompt("", config.image_seq_length))
    smallest = empty + 1 + image
    greedy = greedy_settings(config)  # the parity request: the longer prompt with an input image
    parity = max(len(loaded.tokenizer.chat_prompt(p, config.image_seq_length)) for p in PROMPTS)
    parity += greedy.max_new_tokens + greedy.max_images * image
    needed = max(smallest, parity)
    limit = min(recipe.max_seq_len, recipe.profile("cache")[2])  # the TensorRT cache profile, if smaller
    if limit < needed:
        raise RecipeDoesNotFit(
            f"{recipe.path or recipe.name}: max_seq_len {limit} is too small for "
            f"{loaded.name}: its chat template with an input image takes {empty} positions, a generated image "
            f"{image}, and the build's parity request {parity}; set max_seq_len (and the tokens and cache "
            f"profiles) to at least {needed}, more for real prompts"
        )


def _prepare(recipe: BuildRecipe, model: str | None) -> tuple[BuildRecipe, LoadedModel]:
    """Load the model, name the recipe after it (``{model}``) and check both before any export."""
    loaded = load_recipe_model(recipe, model)
    recipe = recipe.for_model(loaded.name)
    check_exportable(loaded.model)
    check_recipe_fits(recipe, loaded)
    return recipe, loaded


def _save_tokenizer(tokenizer: TextTokenizer, directory: Path) -> list[str]:
    """Write the tokenizer's files into the engine directory; their names, relative to it."""
    before = {p for p in directory.rglob("*") if p.is_file()}
    tokenizer.save_pretrained(directory)
    after = (p for p in directory.rglob("*") if p.is_file() and p not in before)
    return sorted(p.relative_to(directory).as_posix() for p in after)


@contextlib.contextmanager
def _quiet_exporter():
    """The dynamo exporter prints progress and warnings of its own; the build shows one progress bar instead."""
    names = ("torch.onnx", "torch.export", "torch._dynamo", "torch.fx", "onnxscript")
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            for n, level in levels.items():
                logging.getLogger(n).setLevel(level)


def export_graph(model: ArmorForInterleavedGeneration, name: str, path: Path, opset: int) -> None:
    """``torch.onnx.export(..., dynamo=True)`` of one graph with named dynamic axes, then ``onnx.checker``."""
    import onnx
    from torch.export import Dim

    config = model.config
    spec = graph_specs(config)[name]
    module = GRAPH_MODULES[name](model).eval()
    example = example_inputs(spec, config)
    dims = {axis: Dim(axis) for axis in ("rows", "tokens", "cache", "images")}
    per_input = {
        t.name: {i: dims[s] for i, s in enumerate(t.shape) if isinstance(s, str)} for t in spec.inputs
    }
    # The KV inputs are the graph's ``*past`` varargs: one nested tuple in export's view of the arguments.
    dynamic = {k: v for k, v in per_input.items() if not _is_kv(k)}
    past = tuple(v for k, v in per_input.items() if _is_kv(k))
    if past:
        dynamic["past"] = past
    try:
        with _quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(
                module,
                tuple(example.values()),
                input_names=[t.name for t in spec.inputs],
                output_names=[t.name for t in spec.outputs],
                dynamic_shapes=dynamic,
                opset_version=opset,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
            program.save(str(path), external_data=False)
    except Exception as exc:  # noqa: BLE001 - the exporter raises many types; the build reports which graph
        raise BuildError(f"graph {name!r}: the dynamo exporter failed: {exc}") from exc
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise BuildError(f"{path}: onnx.checker rejected the exported graph: {exc}") from exc


def _progress_bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", disable=not enabled, leave=False)


def build_onnx(
    recipe: BuildRecipe,
    model: str | None = None,
    out_root: Path | None = None,
    progress: bool = True,
    check_parity: bool = True,
) -> Path:
    """Export all graphs of the recipe's model to ``out_root/NAME/onnx`` and write the manifest."""
    from .backends.onnxruntime import OnnxRuntimeBackend
    from .parity import greedy_parity, step_parity, tolerances

    precision = recipe.precision.get("onnx", "fp32")
    if precision != "fp32":
        raise BuildError(
            f"{recipe.path}: the ONNX engine is exported in fp32 (precision.onnx = {precision!r})"
        )
    started = time.perf_counter()
    recipe, loaded = _prepare(recipe, model)
    config = loaded.model.config
    out = engine_dir(recipe, "onnx", out_root)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    log.info("engine build started", extra={"recipe": recipe.name, "backend": "onnx", "model": loaded.name})

    specs = graph_specs(config)
    graphs: dict[str, GraphEntry] = {}
    steps = len(GRAPH_NAMES) + (2 if check_parity else 0)
    with _progress_bar(steps, f"{recipe.name}: onnx", progress) as bar:
        for name in GRAPH_NAMES:
            bar.set_postfix_str(f"export {name}")
            t = time.perf_counter()
            export_graph(loaded.model, name, staging / f"{name}.onnx", recipe.opset)
            graphs[name] = GraphEntry(name, f"{name}.onnx", specs[name].inputs, specs[name].outputs)
            log.info("graph exported", extra={"graph": name, "seconds": round(time.perf_counter() - t, 2)})
            bar.update(1)
        tokenizer_files = _save_tokenizer(loaded.tokenizer, staging)
        manifest = _manifest(recipe, "onnx", precision, loaded, graphs, staging, tokenizer_files)
        manifest.save(staging)
        tokenizer = load_engine_tokenizer(staging, manifest, config)  # the engine's own, loaded back

        hidden_tol, logits_tol = tolerances(recipe.tolerance, "fp32")
        parity: dict[str, Any] = {
            "reference": "PyTorch eager fp32 (TorchBackend)",
            "tolerance": {"hidden": hidden_tol, "logits": logits_tol},
            "tolerance_rule": "max |onnx - torch| <= tolerance per graph, hidden states and logits apart; "
            "greedy generation identical",
        }
        if check_parity:
            bar.set_postfix_str("parity: steps")
            backend = OnnxRuntimeBackend(manifest, config, staging, threads=None)
            report = step_parity(loaded.model, backend)
            parity.update(report.to_json())
            bar.update(1)
            bar.set_postfix_str("parity: greedy generation")
            greedy = greedy_parity(loaded.model, tokenizer, backend, reference_tokenizer=loaded.tokenizer)
            parity["greedy_generation"] = {
                k: greedy[k] for k in ("identical_tokens", "identical_codes", "tokens", "images")
            }
            bar.update(1)
            failures = report.failures(hidden_tol, logits_tol)
            if failures or not (greedy["identical_tokens"] and greedy["identical_codes"]):
                raise BuildError(
                    f"{recipe.name}: ONNX Runtime does not match PyTorch (over the tolerance, hidden "
                    f"{hidden_tol} / logits {logits_tol}: {failures}; greedy tokens identical: "
                    f"{greedy['identical_tokens']}); engine left in {staging}"
                )
    manifest.parity = parity
    manifest.build["seconds"] = round(time.perf_counter() - started, 1)
    manifest.save(staging)
    _replace(staging, out)
    verify_engine_dir(out, config, backend="onnx")
    log.info("engine build done", extra={"dir": str(out), "seconds": manifest.build["seconds"]})
    return out


def build_tensorrt(
    recipe: BuildRecipe,
    model: str | None = None,
    out_root: Path | None = None,
    progress: bool = True,
    check_parity: bool = True,
) -> Path:
    """TensorRT engines from the recipe's ONNX engine (built first if missing or stale)."""
    from .backends.tensorrt import TensorRTBackend, build_plan, require_tensorrt
    from .parity import TOP1_MIN, greedy_parity, step_parity, tolerances

    require_tensorrt()  # BackendUnavailable before any work when there is no CUDA / tensorrt (or not TRT 10)
    precision = recipe.precision.get("tensorrt", "fp16")
    kv_dtype = kv_dtype_for("tensorrt", precision)
    started = time.perf_counter()
    recipe, loaded = _prepare(recipe, model)
    config = loaded.model.config
    onnx_dir = engine_dir(recipe, "onnx", out_root)
    try:
        onnx_manifest, _ = verify_engine_dir(onnx_dir, config, backend="onnx")
    except EngineError:
        build_onnx(recipe, model, out_root, progress=progress, check_parity=check_parity)
        onnx_manifest, _ = verify_engine_dir(onnx_dir, config, backend="onnx")

    out = engine_dir(recipe, "tensorrt", out_root)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    profiles = {axis: recipe.profile(axis) for axis in ("rows", "tokens", "cache", "images")}
    specs = graph_specs(config, kv_dtype)  # the ONNX graphs' I/O, with the engine's KV dtype
    graphs: dict[str, GraphEntry] = {}
    with _progress_bar(
        len(GRAPH_NAMES) + (2 if check_parity else 0), f"{recipe.name}: tensorrt", progress
    ) as bar:
        for name, entry in onnx_manifest.graphs.items():
            bar.set_postfix_str(f"build {name}")
            t = time.perf_counter()
            build_plan(
                onnx_dir / entry.file,
                staging / f"{name}.plan",
                entry.spec,
                profiles,
                precision,
                recipe.tensorrt_optimization_level,
                kv_dtype=kv_dtype,
            )
            graphs[name] = GraphEntry(name, f"{name}.plan", specs[name].inputs, specs[name].outputs)
            log.info(
                "tensorrt engine built", extra={"graph": name, "seconds": round(time.perf_counter() - t, 2)}
            )
            bar.update(1)
        tokenizer_files = _save_tokenizer(loaded.tokenizer, staging)
        manifest = _manifest(
            recipe, "tensorrt", precision, loaded, graphs, staging, tokenizer_files, kv_dtype
        )
        tokenizer = load_engine_tokenizer(staging, manifest, config)
        manifest.profiles = profiles
        manifest.build["onnx_manifest_sha256"] = file_record(onnx_dir / "manifest.json")["sha256"]
        manifest.save(staging)
        hidden_tol, logits_tol = tolerances(recipe.tolerance, precision)
        parity: dict[str, Any] = {
            "reference": "PyTorch eager fp32 (TorchBackend)",
            "tolerance": {"hidden": hidden_tol, "logits": logits_tol, "top1_min": TOP1_MIN},
            "tolerance_rule": "max |trt - torch| <= tolerance * max(1, max |torch|) per graph, hidden states "
            "and logits apart, and top-1 agreement >= top1_min on every logits graph; greedy generation "
            "is reported, not required",
        }
        if check_parity:
            backend = TensorRTBackend(manifest, config, staging)
            report = step_parity(loaded.model, backend)
            parity.update(report.to_json())
            failures = report.failures(hidden_tol, logits_tol, relative=True) | report.top1_failures(TOP1_MIN)
            parity["failures"] = failures
            parity["within_tolerance"] = not failures
            bar.update(1)
            greedy = greedy_parity(loaded.model, tokenizer, backend, reference_tokenizer=loaded.tokenizer)
            parity["greedy_generation"] = {
                k: greedy[k]
                for k in (
                    "identical_tokens",
                    "identical_codes",
                    "token_agreement",
                    "first_divergence",
                    "tokens",
                    "images",
                )
            }
            bar.update(1)
    manifest.parity = parity
    manifest.build["seconds"] = round(time.perf_counter() - started, 1)
    manifest.save(staging)
    _replace(staging, out)
    verify_engine_dir(out, config, backend="tensorrt")
    return out


def _manifest(
    recipe: BuildRecipe,
    backend: str,
    precision: str,
    loaded: LoadedModel,
    graphs: dict[str, GraphEntry],
    directory: Path,
    tokenizer_files: list[str],
    kv_dtype: str = "float32",
) -> Manifest:
    config = loaded.model.config
    files = {
        p.relative_to(directory).as_posix(): file_record(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }
    # The main file: the byte tokenizer's only one, or the Hugging Face tokenizer.json.
    tokenizer_file = next((n for n in tokenizer_files if n.endswith("tokenizer.json")), None)
    return Manifest(
        name=recipe.name,
        backend=backend,
        precision=precision,
        opset=recipe.opset,
        config=config.to_dict(),
        config_hash=config.config_hash(),
        model={
            "source": loaded.name,
            "model_name": config.model_name,
            "random_weights": loaded.random_weights,
            "note": "named configuration with RANDOM weights (seed 0): the output is noise"
            if loaded.random_weights
            else "trained weights",
            "parameters": sum(p.numel() for p in loaded.model.parameters()),
            # Which weights: a rebuilt engine is needed when the model directory's weights change.
            "weights_sha256": weights_sha256(loaded.name),
        },
        graphs=graphs,
        files=files,
        tokenizer={"kind": config.tokenizer_kind, "file": tokenizer_file, "files": tokenizer_files},
        recipe=recipe.to_json(),
        profiles={axis: recipe.profile(axis) for axis in ("rows", "tokens", "cache", "images")},
        kv_cache=KV_LAYOUT | {"dtype": kv_dtype},
        versions=tool_versions(),
        build={
            "exporter": "torch.onnx.export(dynamo=True) + onnx.checker.check_model(full_check=True)",
            "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    )


def _replace(staging: Path, out: Path) -> None:
    """Swap the finished build in (a failed build never leaves a half-written engine under the real name)."""
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)


def _is_kv(name: str) -> bool:
    return name.startswith(("past_key_", "past_value_"))


def weights_sha256(source: str) -> str | None:
    """SHA-256 of a model directory's safetensors weights, the files transformers loads (None for a named
    random config): ``model.safetensors`` when there is one; else, for a sharded model, the SHA-256 of its
    index followed by each shard's name and SHA-256, in the index's order of files."""
    import hashlib
    import json

    directory = Path(source)
    single, index = directory / "model.safetensors", directory / "model.safetensors.index.json"
    if single.is_file():
        return sha256_file(single)
    if not index.is_file():
        return None
    h = hashlib.sha256(index.read_bytes())
    for name in sorted(set(json.loads(index.read_text())["weight_map"].values())):
        h.update(f"\n{name} {sha256_file(directory / name)}".encode())
    return h.hexdigest()
