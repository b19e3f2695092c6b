"""ARMOR engines: export to ONNX / TensorRT, and one step runtime over PyTorch, ONNX Runtime and TensorRT.

    graphs.py             the exportable graphs (explicit KV-cache I/O) and their I/O specs
    build.py              build_onnx / build_tensorrt: export, check, parity, manifest
    build_recipe.py       BuildRecipe: a build recipe (armor_ab/assets/recipes/build/*.yaml)
    errors.py             EngineError (bad engine files), BackendUnavailable (no CUDA / TensorRT),
                          UnsupportedModel (a model the graphs cannot reproduce)
    manifest.py           manifest.json and the load-time checks (hashes, config, shapes, tokenizer)
    backends/             one module per runtime over the exported graphs:
      base.py             GraphBackend: the step protocol over graphs, shared by every backend
      onnxruntime.py      OnnxRuntimeBackend, ort_session_options
      tensorrt.py         TensorRT builder and backend (imports tensorrt lazily: CUDA only)
      torch_cuda.py       TorchCudaBackend: the PyTorch model with static KV caches and compiled steps
    loader.py             open_engine_backend / open_engine_generator: pick a backend by name, verify, open
    parity.py             step-by-step and greedy-generation parity against PyTorch eager
    gpu_check.py          the GPU check behind engine/gpu_check.sh (run from a checkout)

Imports go one way: loader -> backends.{onnxruntime,tensorrt} -> backends.base -> graphs, manifest, errors;
build -> backends, build_recipe, parity. No module imports one that imports it back.

Nothing heavy is imported here: ``import armor_ab.engine`` works without onnxruntime or tensorrt.
"""

from .errors import BackendUnavailable, EngineError, UnsupportedModel

__all__ = ["BackendUnavailable", "EngineError", "UnsupportedModel"]
