"""ARMOR engines: export to ONNX / TensorRT, and one step runtime over PyTorch, ONNX Runtime and TensorRT.

    graphs.py            the exportable graphs (explicit KV-cache I/O) and their I/O specs
    build.py             build_onnx / build_tensorrt: export, check, parity, manifest
    errors.py            EngineError (bad engine files), BackendUnavailable (no CUDA / TensorRT)
    manifest.py          manifest.json and the load-time checks (hashes, config, shapes)
    runtime.py           GraphBackend (the step protocol over graphs), OnnxRuntimeBackend, load_backend
    tensorrt_backend.py  TensorRT builder and backend (imports tensorrt lazily: CUDA only)
    parity.py            step-by-step and greedy-generation parity against PyTorch eager
    recipe.py            engine/recipes/*.yaml

Nothing heavy is imported here: ``import armor_ab.engine`` works without onnxruntime or tensorrt.
"""

from .errors import BackendUnavailable, EngineError

__all__ = ["BackendUnavailable", "EngineError"]
