"""Open an engine directory: pick a backend by name, verify the directory, build the generator.

    open_engine_backend(DIR, "onnxruntime" | "tensorrt")    -> a ``GraphBackend`` (the bare ``StepBackend``)
    open_engine_generator(DIR, "onnxruntime" | "tensorrt")  -> an ``InterleavedGenerator`` over it

Every load verifies the manifest against the files first (``manifest.verify_engine_dir``: hashes, config,
shapes) and loads the engine's own tokenizer (``manifest.load_engine_tokenizer``: byte or Hugging Face, as the
config says, with the config's special ids) into ``backend.tokenizer``; errors are ``EngineError`` (a bad
file, named) or ``BackendUnavailable`` (no CUDA / TensorRT).
``tensorrt`` is imported only when the TensorRT backend is asked for. The PyTorch path (``--backend torch``)
needs no engine: ``InterleavedGenerator.from_model`` (``armor_ab.content.generate.load_generator`` picks it).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from armor_ab.model.configuration import ArmorConfig

from .backends.base import GraphBackend
from .manifest import load_engine_tokenizer, verify_engine_dir

if TYPE_CHECKING:
    from armor_ab.model.generate import InterleavedGenerator

RUNTIME_BACKENDS = ("torch", "onnxruntime", "tensorrt")  # what `armor-ab generate --backend` accepts
ENGINE_BACKENDS = ("onnxruntime", "tensorrt")  # the ones that run an engine directory


def open_engine_backend(
    engine_dir: Path | str,
    backend: str = "onnxruntime",
    expected_config: ArmorConfig | None = None,
    threads: int | None = None,
    providers: list[str] | None = None,
) -> GraphBackend:
    """Verify an engine directory (manifest, config, hashes, shapes, tokenizer) and open it; errors are
    ``EngineError``. The engine's tokenizer is ``backend.tokenizer``."""
    directory = Path(engine_dir)
    be: GraphBackend
    if backend == "onnxruntime":
        from .backends.onnxruntime import OnnxRuntimeBackend

        manifest, config = verify_engine_dir(directory, expected_config, backend="onnx")
        tokenizer = load_engine_tokenizer(directory, manifest, config)
        be = OnnxRuntimeBackend(manifest, config, directory, threads=threads, providers=providers)
    elif backend == "tensorrt":
        from .backends.tensorrt import TensorRTBackend, require_tensorrt

        require_tensorrt()
        manifest, config = verify_engine_dir(directory, expected_config, backend="tensorrt")
        tokenizer = load_engine_tokenizer(directory, manifest, config)
        be = TensorRTBackend(manifest, config, directory)
    else:
        raise ValueError(f"unknown engine backend {backend!r} (engines: {', '.join(ENGINE_BACKENDS)})")
    be.tokenizer = tokenizer
    return be


def open_engine_generator(
    engine_dir: Path | str,
    backend: str = "onnxruntime",
    expected_config: ArmorConfig | None = None,
    threads: int | None = None,
) -> InterleavedGenerator:
    """An ``InterleavedGenerator`` over an engine; its ``generate(prompts, ...)`` batches several prompts."""
    from armor_ab.model.generate import InterleavedGenerator

    be = open_engine_backend(engine_dir, backend, expected_config, threads=threads)
    # Content metadata names the model as the PyTorch path does: the named config or directory it came from.
    return InterleavedGenerator(be, be.tokenizer, be.manifest.model.get("source") or be.config.model_name)
