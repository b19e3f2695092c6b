"""Open an engine directory: pick a backend by name, verify the directory, build the generator.

    open_engine_backend(DIR, "onnxruntime" | "tensorrt")    -> a ``GraphBackend`` (the bare ``StepBackend``)
    open_engine_generator(DIR, "onnxruntime" | "tensorrt")  -> an ``InterleavedGenerator`` over it
    open_torch_cuda_generator(model, tokenizer)             -> one over ``TorchCudaBackend`` (no engine)

Every load verifies the manifest against the files first (``manifest.verify_engine_dir``: hashes, config,
shapes) and loads the engine's own tokenizer (``manifest.load_engine_tokenizer``: byte or Hugging Face, as the
config says, with the config's special ids) into ``backend.tokenizer``; errors are ``EngineError`` (a bad
file, named) or ``BackendUnavailable`` (no CUDA / TensorRT).
``tensorrt`` is imported only when the TensorRT backend is asked for. The PyTorch paths need no engine:
``--backend torch`` is ``InterleavedGenerator.from_model`` (eager), ``--backend torch-cuda`` the same model
under ``TorchCudaBackend`` (static KV cache, compiled decode step, CUDA graphs on a GPU;
``backends/torch_cuda.py``); ``armor_ab.content.generate.load_generator`` picks either by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from armor_ab.model.configuration import ArmorConfig

from .backends.base import GraphBackend
from .manifest import load_engine_tokenizer, verify_engine_dir

if TYPE_CHECKING:
    import torch

    from armor_ab.model.generate import InterleavedGenerator
    from armor_ab.model.modeling import ArmorForInterleavedGeneration
    from armor_ab.model.tokenizer import TextTokenizer

RUNTIME_BACKENDS = ("torch", "torch-cuda", "onnxruntime", "tensorrt")  # what `armor-ab generate --backend` accepts
ENGINE_BACKENDS = ("onnxruntime", "tensorrt")  # the ones that run an engine directory
MODEL_BACKENDS = ("torch", "torch-cuda")  # the ones that run the PyTorch model itself (--model, no --engine)


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


def torch_cuda_placement() -> tuple[torch.device, torch.dtype]:
    """Where ``--backend torch-cuda`` runs a model: the GPU in bfloat16 when CUDA is there, else the CPU in
    float32 (compiled, without CUDA graphs)."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda"), torch.bfloat16
    return torch.device("cpu"), torch.float32


def open_torch_cuda_generator(
    model: ArmorForInterleavedGeneration,
    tokenizer: TextTokenizer,
    model_name: str | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    compile: bool = True,  # noqa: A002 - TorchCudaBackend's keyword
    cuda_graphs: bool | None = None,
) -> InterleavedGenerator:
    """An ``InterleavedGenerator`` over ``TorchCudaBackend``: the model is moved to ``device`` and converted to
    ``dtype`` in place (defaults: ``torch_cuda_placement()``), then served with a static KV cache and compiled
    one-token steps (CUDA graphs on CUDA unless ``cuda_graphs=False``)."""
    import torch

    from armor_ab.model.generate import InterleavedGenerator

    from .backends.torch_cuda import TorchCudaBackend

    device = torch.device(device) if device is not None else torch_cuda_placement()[0]
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = model.to(device=device, dtype=dtype)
    be = TorchCudaBackend(model, dtype=dtype, compile=compile, cuda_graphs=cuda_graphs)
    return InterleavedGenerator(be, tokenizer, model_name)
